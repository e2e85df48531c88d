"""``echomeasure export -o PATH`` never overwrites without ``--force`` and never leaves a partial output.

Every format: csv, json, coco (a file), masks and dicom-sr (a folder).  An existing output is
refused in one ``error:`` line naming the path as given (exit 2) and left byte for byte as it
was; ``--force`` replaces it.  A folder export is built under a hidden ``.NAME.*.part`` name and
renamed into place when complete, so a failure half-way leaves neither the folder nor the
staging folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_fixtures import lvidd_proposals, write_us_dicom

from echomeasure import config
from echomeasure.cli import main
from echomeasure.errors import InvalidInputError
from echomeasure.export import export, export_masks, output_folder
from echomeasure.pipeline import ingest_path
from echomeasure.store import open_store
from echomeasure.store.contours import add_contour_review, add_contours

LV = [[16.0, 8.0], [34.0, 8.0], [34.0, 26.0], [16.0, 26.0]]


@pytest.fixture
def url(tmp_path: Path, monkeypatch) -> str:
    """A SQLite store with one calibrated, reviewed clip (a caliper and an LV contour)."""
    images = tmp_path / "images"
    monkeypatch.setenv("ECHOMEASURE_IMAGES", str(images))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    with open_store(url, images_dir=images) as store:
        cid = ingest_path(write_us_dicom(tmp_path / "a.dcm", seed=1), store, secret=config.secret(),
                          run_models=False).clip.id
        store.add_proposals(cid, lvidd_proposals())
        store.add_review(cid, "lvidd", "accepted", "Dr A")
        (lv,) = add_contours(store, cid, [{"frame": 1, "structure": "lv", "polygon": LV, "area_cm2": None,
                                           "confidence": 0.9}], model=lvidd_proposals().model)
        add_contour_review(store, cid, "accepted", "Dr A", contour_proposal_id=lv.id)
    return url


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


@pytest.mark.parametrize("fmt", ["csv", "json", "coco"])
def test_an_existing_output_file_is_refused_without_force(url, tmp_path, capsys, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"the user's earlier work\n")
    capsys.readouterr()
    assert main(["export", "--db", url, "--format", fmt, "-o", f"out.{fmt}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: out.{fmt}: already exists") and err.count("\n") == 1 and "--force" in err
    assert target.read_bytes() == b"the user's earlier work\n"
    assert main(["export", "--db", url, "--format", fmt, "-o", f"out.{fmt}", "--force"]) == 0
    assert target.read_bytes() != b"the user's earlier work\n"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["masks", "dicom-sr"])
def test_an_existing_output_folder_is_refused_without_force(url, tmp_path, capsys, fmt):
    if fmt == "dicom-sr":
        pytest.importorskip("highdicom")
    target = tmp_path / "out"
    assert main(["export", "--db", url, "--format", fmt, "-o", str(target)]) == 0
    first = _tree(target)
    assert first and _leftovers(tmp_path) == []
    (target / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", "--db", url, "--format", fmt, "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target}: already exists; nothing was written (add --force to replace it)\n"
    assert _tree(target) == {**first, "notes.txt": b"mine"}
    assert main(["export", "--db", url, "--format", fmt, "-o", str(target), "--force"]) == 0
    assert set(_tree(target)) == set(first) | {"notes.txt"}  # replaced in place; the user's file kept
    assert _leftovers(tmp_path) == []


def test_an_empty_existing_folder_is_used(url, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["export", "--db", url, "--format", "masks", "-o", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "masks.json").is_file() and _leftovers(tmp_path) == []


def test_a_failed_folder_export_leaves_nothing(url, tmp_path, monkeypatch):
    """Half-way through (one mask written, then a failure): no folder under the name, no staging."""
    import echomeasure.export as ex

    real = ex.atomic.write_text

    def fail_on_manifest(target, *a, **k):
        if Path(target).name == "masks.json":
            raise OSError(28, "No space left on device")
        return real(target, *a, **k)

    monkeypatch.setattr(ex.atomic, "write_text", fail_on_manifest)
    before = sorted(os.listdir(tmp_path))
    with open_store(url) as store, pytest.raises(OSError):
        export_masks(store, tmp_path / "masks")
    assert sorted(os.listdir(tmp_path)) == before and "masks" not in before


def test_a_failed_file_export_keeps_the_old_file(url, tmp_path, monkeypatch):
    import echomeasure.export as ex

    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def boom(*a, **k):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(ex, "render", boom)
    with open_store(url) as store, pytest.raises(RuntimeError):
        export(store, "csv", target, force=True)
    assert target.read_text() == "old\n" and _leftovers(tmp_path) == []


def test_output_folder_refuses_a_file_a_link_and_a_missing_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for given, words in ((tmp_path / "f", "is a file"), (tmp_path / "link", "symbolic link"),
                         (tmp_path / "no" / "out", "parent folder does not exist")):
        with pytest.raises(InvalidInputError, match=words), output_folder(given, force=True):
            pass
    assert (tmp_path / "f").read_text() == "x" and not (tmp_path / "no").exists()
