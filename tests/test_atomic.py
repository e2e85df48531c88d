"""The atomic-write helper: complete content or nothing, refuses non-regular targets."""

from __future__ import annotations

import os
import stat

import pytest

from echomeasure import atomic
from echomeasure.errors import InvalidInputError


def test_write_bytes_replaces_whole_file_with_umask_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content that is longer")
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == atomic.default_file_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_explicit_mode_is_applied(tmp_path):
    target = atomic.write_text(tmp_path / "secret.txt", "x", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failure_leaves_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("kind", ["dir", "fifo", "symlink"])
def test_non_regular_targets_are_refused(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "dir":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "real").write_text("keep")
        target.symlink_to(tmp_path / "real")
    with pytest.raises(InvalidInputError) as err:
        atomic.write_bytes(target, b"x")
    assert "'" + str(target) + "'" in str(err.value)
    if kind == "symlink":
        assert (tmp_path / "real").read_text() == "keep"
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_character_device_is_refused_and_left_alone():
    with pytest.raises(InvalidInputError):
        atomic.write_bytes("/dev/null", b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_missing_folder_is_a_user_error_unless_asked_to_create(tmp_path):
    with pytest.raises(InvalidInputError):
        atomic.write_bytes(tmp_path / "no" / "such" / "f.txt", b"x")
    out = atomic.write_bytes(tmp_path / "made" / "f.txt", b"x", make_parents=True)
    assert out.read_bytes() == b"x"


def test_copy_file(tmp_path):
    src = tmp_path / "a.pt"
    src.write_bytes(os.urandom(1000))
    dst = atomic.copy_file(src, tmp_path / "b.pt")
    assert dst.read_bytes() == src.read_bytes()
