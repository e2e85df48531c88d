"""Quarantine: the only place where echomeasure keeps a second name for an original file.

Each run works in a private folder (mode 0700) under the quarantine root
(``$ECHOMEASURE_QUARANTINE``, else ``quarantine/`` beside the review store's data: see
:func:`quarantine_root`; the system temp folder when that is not writable) that holds a
hard link to the original while it is read and de-identified; the folder is removed in
``finally``.  An input on another file system is not copied: it is read where it lies (a plain
copy would put a second readable original on disk).

A run killed with SIGKILL cannot clean up, so every run first sweeps the root: each folder
belongs to a lock file that its process holds with ``fcntl.flock`` for as long as it lives; a
lock that can be taken belongs to a dead process, and its folder and lock are removed.  A
root-wide lock (``.sweep.lock``) is held while a folder and its lock are created and while
sweeping, so a sweep never takes a folder that is being set up; concurrent ingests never
delete each other's work.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from echomeasure import config

log = logging.getLogger(__name__)

FOLDER_PREFIX = "echomeasure-q-"
LOCK_SUFFIX = ".lock"
SWEEP_LOCK = ".sweep.lock"


def quarantine_root() -> Path:
    """Where originals wait while they are read: ``$ECHOMEASURE_QUARANTINE``; else ``quarantine/``
    beside the review store's frame images (the folder holding ``$ECHOMEASURE_IMAGES``, or a
    SQLite ``$ECHOMEASURE_DB``'s folder, else ``<project>/db``), so that originals stay on the
    volume the site chose for patient data; the temp folder when that is not writable."""
    env = os.environ.get("ECHOMEASURE_QUARANTINE")
    root = Path(env) if env else config.images_dir(config.db_url()).parent / "quarantine"
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / "echomeasure-quarantine"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


@contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    fd = os.open(root / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _remove(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return not path.exists() and not path.is_symlink()


def sweep(root: Path | None = None) -> int:
    """Remove what runs that are no longer alive left in the quarantine; return how many folders.

    A folder whose lock file can be locked (or has none) belongs to a dead process.  Takes the
    root lock, so it never races a run that is setting up its folder.
    """
    root = root or quarantine_root()
    removed = 0
    with _root_lock(root):
        for entry in sorted(root.iterdir()):
            name = entry.name
            if not name.startswith(FOLDER_PREFIX) or name.endswith(LOCK_SUFFIX):
                continue
            lock = entry.with_name(name + LOCK_SUFFIX)
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                fd = None  # no lock: its owner died before it could take it
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        continue  # a live run holds it
                    raise
            try:
                if _remove(entry):
                    removed += 1
                else:  # pragma: no cover - a file system that refuses deletion
                    log.error("a quarantine folder of a dead run could not be removed")
                lock.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        # Lock files whose folder is gone (the run died between removing the two).
        for entry in root.iterdir():
            if entry.name.startswith(FOLDER_PREFIX) and entry.name.endswith(LOCK_SUFFIX):
                folder = entry.with_name(entry.name[: -len(LOCK_SUFFIX)])
                if folder.exists():
                    continue
                fd = os.open(entry, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    entry.unlink(missing_ok=True)
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return removed


def leftovers(root: Path | None = None) -> list[Path]:
    """Folders and lock files in the quarantine (for tests and the health check)."""
    root = root or quarantine_root()
    return sorted(p for p in root.iterdir() if p.name.startswith(FOLDER_PREFIX))


@contextmanager
def quarantined(path: Path) -> Iterator[Path]:
    """Yield the path to read the original from; nothing of it outlives the run.

    Same file system: a hard link in a private, locked quarantine folder (no bytes copied).
    Another file system: the original path itself (no plain copy is made).  Leftovers of dead
    runs are swept first.
    """
    root = quarantine_root()
    sweep(root)
    with _root_lock(root):
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=root))
        lock_fd = os.open(folder.with_name(folder.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        os.chmod(folder, 0o700)
        # The link keeps the input's own name, so an error about it names the file as given.
        target = folder / (Path(path).name or "original")
        try:
            os.link(path, target)  # same file system: no bytes copied
        except OSError:
            target = path  # another file system (or no hard links): read in place, no copy
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():  # pragma: no cover - e.g. a file system that refuses deletion
            log.error("a quarantine folder could not be removed")
        folder.with_name(folder.name + LOCK_SUFFIX).unlink(missing_ok=True)
        os.close(lock_fd)
