"""Build hook: the wheel carries the shipped weights, the migrations and the example studies.

They live at the top of the repository (``weights/``, ``db/migrations/``, ``examples/``) so that a
source checkout uses them in place; ``build_py`` copies them into ``echomeasure/_bundled/`` of
the built package, where :mod:`echomeasure.config` finds them when there is no checkout.
Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _bundle_files() -> list[tuple[Path, str]]:
    """(source, path under _bundled/) of every file the wheel must carry."""
    files: list[tuple[Path, str]] = []
    manifest = ROOT / "weights" / "manifest.json"
    if manifest.is_file():
        files.append((manifest, "weights/manifest.json"))
        for entry in json.loads(manifest.read_text()).get("models", []):
            weight_file = ROOT / "weights" / entry["file"]
            if weight_file.is_file():
                files.append((weight_file, f"weights/{entry['file']}"))
    for source in sorted((ROOT / "db" / "migrations").rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            files.append((source, f"migrations/{source.relative_to(ROOT / 'db' / 'migrations')}"))
    for source in sorted((ROOT / "examples").glob("case_*")):
        files.append((source, f"examples/{source.name}"))
    return files


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        target_root = Path(self.build_lib) / "echomeasure" / "_bundled"
        for source, relative in _bundle_files():
            target = target_root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


setup(cmdclass={"build_py": BuildPyWithBundle})
