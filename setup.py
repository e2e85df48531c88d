"""Build hook: the wheel carries the active weights, the migrations and the example studies.

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
    for entry in _shipped_manifest().get("models", []):
        weight_file = ROOT / "weights" / entry["file"]
        if weight_file.is_file():
            files.append((weight_file, f"weights/{entry['file']}"))
    for source in sorted((ROOT / "db" / "migrations").rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            files.append((source, f"migrations/{source.relative_to(ROOT / 'db' / 'migrations')}"))
    for source in sorted((ROOT / "examples").glob("case_*")):
        files.append((source, f"examples/{source.name}"))
    return files


def _shipped_manifest() -> dict:
    """The checkout's manifest reduced to the active version of each model: what a user runs.

    Earlier versions stay in the repository (their recipes and metrics are the history) but
    would only make the wheel heavier.
    """
    manifest = ROOT / "weights" / "manifest.json"
    if not manifest.is_file():
        return {}
    data = json.loads(manifest.read_text())
    active = data.get("active", {})
    data["models"] = [m for m in data.get("models", []) if active.get(m["name"]) == m["version"]]
    return data


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        target_root = Path(self.build_lib) / "echomeasure" / "_bundled"
        shutil.rmtree(target_root, ignore_errors=True)  # a reused build folder keeps no older weights
        shipped = _shipped_manifest()
        if shipped:
            (target_root / "weights").mkdir(parents=True, exist_ok=True)
            (target_root / "weights" / "manifest.json").write_text(json.dumps(shipped, indent=1) + "\n")
        for source, relative in _bundle_files():
            target = target_root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


setup(cmdclass={"build_py": BuildPyWithBundle})
