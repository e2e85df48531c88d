"""The weights registry attacked: manifests edited by hand, versions registered twice, a file a
registered version uses, a manifest write that fails.  Every error is one line (exit 2) and the
weights folder is never left half-written."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from echomeasure.cli import main
from echomeasure.errors import WeightsError
from echomeasure.models import registry


def _entry(folder: Path, version: str = "1.0", seed: int = 0) -> registry.WeightsEntry:
    """A registered-looking view entry whose file holds ``seed``'s bytes."""
    file = f"view-{version}.pt"
    (folder / file).write_bytes(f"weights {seed}".encode())
    return registry.WeightsEntry(name="view", version=version, arch="view_cnn", input_size=(64, 64),
                                 channels=("plax", "a4c", "a2c", "doppler", "other"), file=file,
                                 sha256=registry.sha256_file(folder / file))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "weights"
    out.mkdir()
    registry.register(_entry(out), weights_dir=out)
    return out


def _edit(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest, manifest["models"][0])
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m, e: e.update(arch="nope"), "unknown arch 'nope'"),
    (lambda m, e: (e.update(version="../../evil"), m["active"].update(view="../../evil")), "version '../../evil'"),
    (lambda m, e: e.update(file="../elsewhere/view-1.0.pt"), "must be a path inside the weights folder"),
    (lambda m, e: e.update(file="/etc/hostname"), "must be a path inside the weights folder"),
    (lambda m, e: e.pop("sha256"), "'sha256'"),
    (lambda m, e: e.update(input_size="x"), "models[0] ('view' '1.0')"),
    (lambda m, e: m.update(active=["view"]), "'active' must map model names to versions"),
    (lambda m, e: m["models"].append(dict(e)), "models[1] ('view' '1.0') is registered twice"),
    (lambda m, e: m["models"].append(1), "models[1] is not an entry"),
    (lambda m, e: m.update(format=3), "format-3 manifest, written by a newer echomeasure"),
    (lambda m, e: m.update(format="2"), "'format' must be a whole number"),
], ids=["arch", "dotdot-version", "dotdot-file", "absolute-file", "no-sha256", "bad-size", "active-list",
        "duplicate", "not-an-entry", "newer-format", "format-text"])
def test_a_manifest_edited_by_hand_is_refused_in_one_line(folder, capsys, edit, expected):
    _edit(folder, edit)
    rc = main(["weights", "list", "--out", str(folder)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith(f"error: {folder / 'manifest.json'}") and expected in err and "\n" not in err
    with pytest.raises(WeightsError, match="manifest"):
        registry.get_entry("view", None, folder)


def test_unknown_keys_are_kept_and_a_file_in_a_subfolder_still_loads(folder, capsys):
    (folder / "sub").mkdir()
    os.replace(folder / "view-1.0.pt", folder / "sub" / "view-1.0.pt")
    _edit(folder, lambda m, e: (e.update(file="sub/view-1.0.pt", note="site copy"), m.update(comment="x")))
    assert main(["weights", "list", "--out", str(folder)]) == 0
    entry = registry.get_entry("view", None, folder)
    assert entry.extra["note"] == "site copy" and registry.verify_file(entry, folder).is_file()
    _edit(folder, lambda m, e: e.update(version="1.0/../../x"))
    assert main(["weights", "list", "--out", str(folder)]) == 2


def test_registering_a_version_again_is_a_one_line_weights_error(folder):
    again = _entry(folder, "1.0", seed=1)  # rewrites view-1.0.pt: the registered file is now wrong too
    with pytest.raises(WeightsError, match="already registered") as caught:
        registry.register(again, weights_dir=folder)
    assert isinstance(caught.value, ValueError)  # still what callers caught before
    assert "\n" not in str(caught.value)


def test_publish_never_replaces_a_file_a_registered_version_uses(folder, tmp_path):
    registered = registry.get_entry("view", "1.0", folder)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = _entry(scratch, "1.0", seed=2)
    # same version: refused
    with pytest.raises(registry.VersionExistsError):
        registry.publish(child, scratch / child.file, weights_dir=folder)
    # another version but the registered version's file name: refused
    with pytest.raises(WeightsError, match="is the file of view 1.0"):
        registry.publish(registry.WeightsEntry.from_json({**child.to_json(), "version": "1.1"}), scratch / child.file,
                         weights_dir=folder)
    assert registry.verify_file(registered, folder)
    # a version chosen under the lock gets its own file
    done = registry.publish(child, scratch / child.file, weights_dir=folder,
                            version_for=lambda taken: f"1.{len(taken)}")
    assert (done.version, done.file) == ("1.1", "view-1.1.pt")
    assert [registry.verify_file(e, folder).name for e in registry.list_entries(folder)] == ["view-1.0.pt", "view-1.1.pt"]
    assert registry.active_version("view", folder) == "1.1"


def test_a_publish_whose_manifest_cannot_be_written_leaves_no_file_and_the_old_manifest(folder, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = _entry(scratch, "2.0", seed=3)
    manifest = (folder / "manifest.json").read_bytes()
    real_write_text = registry.atomic.write_text

    def full_disk(target, *args, **kwargs):
        if Path(target).name == "manifest.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(target, *args, **kwargs)

    monkeypatch.setattr(registry.atomic, "write_text", full_disk)
    with pytest.raises(WeightsError, match="is not writable") as caught:
        registry.publish(child, scratch / child.file, weights_dir=folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)
    assert not (folder / child.file).exists()
    assert (folder / "manifest.json").read_bytes() == manifest
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["manifest.json", "view-1.0.pt"]


def test_rolling_back_to_a_version_whose_file_is_gone_or_altered_is_refused(folder, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = _entry(scratch, "1.1", seed=4)
    registry.publish(child, scratch / child.file, weights_dir=folder)
    manifest = (folder / "manifest.json").read_bytes()
    (folder / "view-1.0.pt").write_bytes(b"altered")
    with pytest.raises(WeightsError, match="has sha256"):
        registry.set_active("view", "1.0", weights_dir=folder)
    (folder / "view-1.0.pt").unlink()
    with pytest.raises(WeightsError, match="is missing"):
        registry.set_active("view", "1.0", weights_dir=folder)
    assert (folder / "manifest.json").read_bytes() == manifest
    assert registry.active_version("view", folder) == "1.1"
    registry.set_active("view", "1.1", weights_dir=folder)  # an intact version still can be chosen


def test_cli_weights_activate_rolls_back_and_refuses_a_broken_or_unknown_version(folder, capsys):
    registry.register(_entry(folder, "1.1", seed=1), weights_dir=folder)
    assert registry.active_version("view", folder) == "1.1"
    assert main(["weights", "activate", "view", "1.0", "--out", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "view", "active": "1.0", "was": "1.1"}
    assert registry.active_version("view", folder) == "1.0"
    (folder / "view-1.1.pt").write_bytes(b"altered")
    for version in ("1.1", "9.9"):  # a damaged file, an unknown version: refused, nothing changed
        assert main(["weights", "activate", "view", version, "--out", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert registry.active_version("view", folder) == "1.0"


def test_weights_list_shows_a_fine_tuned_versions_review_hold_out_error():
    from echomeasure.cli import _metrics_summary

    assert _metrics_summary({"reviews": {"endpoint_mae_mm": 1.234}}) == "reviews: endpoint MAE 1.23 mm"
    assert _metrics_summary({}) == "not measured here"
