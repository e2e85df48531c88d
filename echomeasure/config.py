"""Configuration from the environment, with defaults that work from any working directory.

``ECHOMEASURE_DB``       SQLAlchemy URL (default: SQLite at ``<project>/db/echomeasure.sqlite``)
``ECHOMEASURE_SECRET``   secret for the HMAC UID remap (default: a local secret kept in ``db/.secret``)
``ECHOMEASURE_WEIGHTS``  weights folder (default: ``<project>/weights``)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DB_DIR = PROJECT_ROOT / "db"
EXAMPLES_DIR = PROJECT_ROOT / "examples"


def weights_dir() -> Path:
    """Folder holding the weight files and ``manifest.json``."""
    return Path(os.environ.get("ECHOMEASURE_WEIGHTS") or PROJECT_ROOT / "weights")


def db_url(explicit: str | None = None) -> str:
    """SQLAlchemy URL of the review store: ``--db`` beats ``ECHOMEASURE_DB`` beats the default."""
    if explicit:
        return explicit
    env = os.environ.get("ECHOMEASURE_DB")
    if env:
        return env
    return f"sqlite:///{DB_DIR / 'echomeasure.sqlite'}"


def secret(explicit: str | None = None) -> bytes:
    """Site secret for the HMAC-based UID remap.

    ``--secret`` beats ``ECHOMEASURE_SECRET``; otherwise a random secret is generated once and
    kept in ``db/.secret`` (mode 0600) so UIDs stay stable across runs on this workstation.
    """
    value = explicit or os.environ.get("ECHOMEASURE_SECRET")
    if value:
        return value.encode("utf-8")
    path = DB_DIR / ".secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a complete file under a temporary name, then link it into place: a second
        # process racing us either wins (we read its secret) or loses (it reads ours).
        tmp = path.with_name(f".secret.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode("utf-8")
