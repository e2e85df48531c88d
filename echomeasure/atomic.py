"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

Every file the project writes (de-identified copies, exports, weights, manifests, reports) goes
through :func:`atomic_path`: the content is written to a temporary file in the target's own
folder (so the final rename never crosses a filesystem), flushed and fsync'ed, given its mode,
renamed over the target, and the folder is fsync'ed so the rename survives a power cut.  On any
failure the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InvalidInputError


def default_file_mode() -> int:
    """Permissions of a new file under the current umask (``mkstemp`` alone would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_path(target: str | Path) -> Path:
    """Refuse an output path that exists and is not a regular file (device, FIFO, folder, socket).

    Renaming over ``/dev/full`` as root would replace the device with a regular file; writing
    into a FIFO would block.  The message names the path as the user gave it.
    """
    path = Path(target)
    try:
        st = path.lstat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise InvalidInputError(f"{str(target)!r}: output folder does not exist") from None
        return path
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"{str(target)!r}: is a directory; give an output file name")
    if stat.S_ISLNK(st.st_mode):
        raise InvalidInputError(f"{str(target)!r}: is a symbolic link; give a regular output file")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{str(target)!r}: is not a regular file (device, FIFO or socket)")
    return path


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | Path, *, mode: int | None = None, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on normal exit it replaces ``target`` atomically.

    The caller writes the complete content to the yielded path (any library that takes a file
    name works).  ``mode`` defaults to what a plain ``open`` would give under the umask.
    """
    path = check_output_path(target) if not make_parents else Path(target)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
        path = check_output_path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(target: str | Path, data: bytes, *, mode: int | None = None, make_parents: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target, mode=mode, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(
    target: str | Path, text: str, *, mode: int | None = None, make_parents: bool = False, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``target`` atomically."""
    return write_bytes(target, text.encode(encoding), mode=mode, make_parents=make_parents)


def copy_file(source: str | Path, target: str | Path, *, mode: int | None = None, make_parents: bool = False) -> Path:
    """Copy ``source`` to ``target`` atomically (content only; the mode is set, not copied)."""
    with atomic_path(target, mode=mode, make_parents=make_parents) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)
