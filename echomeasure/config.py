"""Configuration from the environment, with defaults that work from any working directory.

``ECHOMEASURE_DB``       SQLAlchemy URL (default: SQLite at ``<project>/db/echomeasure.sqlite``, or
                         ``~/.local/share/echomeasure/`` for an installed wheel)
``ECHOMEASURE_SECRET``   secret for the HMAC UID remap (default: a local secret kept beside the database)
``ECHOMEASURE_WEIGHTS``  weights folder (default: ``<project>/weights``, or the weights in the wheel)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# A source checkout keeps weights, migrations and examples at the top of the repository; an
# installed wheel carries copies of them in ``echomeasure/_bundled`` (see setup.py) and keeps
# its database under the user's data folder.
SOURCE_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "weights").is_dir()
BUNDLED_DIR = PACKAGE_DIR / "_bundled"


def _user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "echomeasure"


DB_DIR = PROJECT_ROOT / "db" if SOURCE_CHECKOUT else _user_data_dir()
EXAMPLES_DIR = PROJECT_ROOT / "examples" if SOURCE_CHECKOUT else BUNDLED_DIR / "examples"
MIGRATIONS_DIR = PROJECT_ROOT / "db" / "migrations" if SOURCE_CHECKOUT else BUNDLED_DIR / "migrations"


def weights_dir() -> Path:
    """Folder holding the weight files and ``manifest.json``.

    ``ECHOMEASURE_WEIGHTS`` when set; else the checkout's ``weights/``; else the weights the
    wheel carries (read-only in a system install: point ``ECHOMEASURE_WEIGHTS`` at a writable
    copy to train or fine-tune).
    """
    env = os.environ.get("ECHOMEASURE_WEIGHTS")
    if env:
        return Path(env)
    return PROJECT_ROOT / "weights" if SOURCE_CHECKOUT else BUNDLED_DIR / "weights"


def db_url(explicit: str | None = None) -> str:
    """SQLAlchemy URL of the review store: ``--db`` beats ``ECHOMEASURE_DB`` beats the default."""
    if explicit:
        return explicit
    env = os.environ.get("ECHOMEASURE_DB")
    if env:
        return env
    return f"sqlite:///{DB_DIR / 'echomeasure.sqlite'}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (``sqlite[+driver]:///path[?query]``), None for an
    in-memory or another database.  Read without SQLAlchemy: measuring a clip must not pay the
    ~25 MB of importing it just to learn where the store keeps its data."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return None
    return sqlite_database_file(unquote(rest.split("?", 1)[0]))


def sqlite_database_file(database: str | None) -> Path | None:
    """The file of a SQLite URL's database part (None for in-memory)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().resolve()


def images_dir(url: str) -> Path:
    """The frame-image folder of the review store at ``url``: ``ECHOMEASURE_IMAGES``; else
    ``images/`` beside a SQLite file; else ``<db folder>/images`` for other databases."""
    env = os.environ.get("ECHOMEASURE_IMAGES")
    if env:
        return Path(env).expanduser().resolve()
    path = sqlite_file(url)
    return path.parent / "images" if path is not None else DB_DIR / "images"


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
