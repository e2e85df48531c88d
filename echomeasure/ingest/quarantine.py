"""Quarantine: the only place where echomeasure keeps a copy of an original (identifiable) file.

A private folder (mode 0700) under ``db/quarantine`` (or the system temp folder when that is not
writable) holds the original while it is read and de-identified; it is removed in ``finally``,
whatever happens.  Nothing downstream ever sees a path inside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from echomeasure import config

log = logging.getLogger(__name__)


def quarantine_root() -> Path:
    """``<project>/db/quarantine`` when writable, else the system temp folder."""
    root = config.DB_DIR / "quarantine"
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return Path(tempfile.gettempdir())


@contextmanager
def quarantined(path: Path) -> Iterator[Path]:
    """Yield a private copy of ``path`` (hard link when possible, else a copy); always cleaned up."""
    folder = Path(tempfile.mkdtemp(prefix="echomeasure-q-", dir=quarantine_root()))
    os.chmod(folder, 0o700)
    try:
        target = folder / "original"
        try:
            os.link(path, target)  # same file system: no bytes copied
        except OSError:
            shutil.copyfile(path, target)
        if target.stat().st_nlink == 1:  # our own copy (never chmod a hard link: it is the user's file)
            os.chmod(target, 0o600)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():  # pragma: no cover - e.g. a file system that refuses deletion
            log.error("quarantine folder %s could not be removed", folder)
