"""The review store: de-identified clips, proposals, reviews, model versions and audit events.

Open it with :func:`open_store`; the database is created or upgraded by the Alembic migrations
in ``db/migrations`` on open.  SQLite (default ``db/echomeasure.sqlite``) or any SQLAlchemy URL
(``postgresql+psycopg://user@host/db``) from ``--db`` / ``ECHOMEASURE_DB``.

Example
-------
>>> from echomeasure.store import open_store
>>> store = open_store("sqlite:///reviews.sqlite")           # doctest: +SKIP
>>> rec = store.add_clip(deidentified_clip)                   # doctest: +SKIP
>>> store.save_frames(rec.id, deidentified_clip.clip.frames)  # doctest: +SKIP
>>> store.add_proposals(rec.id, clip_proposals)               # doctest: +SKIP
>>> store.add_review(rec.id, "lvidd", "accepted", "sonographer-1")  # doctest: +SKIP
>>> store.current_measurements(rec.id)                        # doctest: +SKIP

Guarantees
----------
- Only :class:`echomeasure.ingest.DeidentifiedClip` (the gate's output) can become a clip row;
  frames saved are the gate-checked pixels.  Nothing identifying is stored.
- One transaction per logical change, with its audit event in the same transaction.
- ``study``, ``clip``, ``frame_image``, ``proposal``, ``review`` and ``audit_event`` are
  insert-only in the database (triggers refuse UPDATE/DELETE/TRUNCATE and, on SQLite, an INSERT
  that would replace a row); ``model_version`` rows are never deleted (migration 0002).
- Audit events form a SHA-256 hash chain covering the reviews, clips and proposals they record
  (:mod:`echomeasure.store.chain`; ``echomeasure audit verify``).
- Reviewer names follow one rule (:mod:`echomeasure.store.reviewer`).
- Concurrent reviewers never lose a review (SQLite WAL + ``BEGIN IMMEDIATE`` + busy timeout +
  retry; PostgreSQL transactions + retry on serialization failures).
- Records returned are frozen dataclasses (:mod:`echomeasure.store.records`), never ORM objects.

Frame images are PNG files in a content-addressed folder (see :mod:`echomeasure.store.images`):
beside a SQLite database file (``<db folder>/images``); for other URLs ``images_dir``,
``ECHOMEASURE_IMAGES`` or ``<project>/db/images``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alembic.util.exc import CommandError
from sqlalchemy.exc import DatabaseError, ProgrammingError

from echomeasure import config
from echomeasure.errors import StoreError
from echomeasure.store.engine import (
    create_store_engine,
    current_revision,
    head_revision,
    parse_url,
    upgrade,
)
from echomeasure.store.images import ImageStore
from echomeasure.store.operations import Store
from echomeasure.store.records import (
    KEEPING_ACTIONS,
    REVIEW_ACTIONS,
    AuditEventRecord,
    ClipRecord,
    ClipSummary,
    FrameImageRecord,
    MeasurementState,
    ModelVersionRecord,
    ProposalRecord,
    ReviewAction,
    ReviewRecord,
    TrainingFrame,
)

log = logging.getLogger(__name__)

__all__ = [
    "KEEPING_ACTIONS",
    "REVIEW_ACTIONS",
    "AuditEventRecord",
    "ClipRecord",
    "ClipSummary",
    "FrameImageRecord",
    "MeasurementState",
    "ModelVersionRecord",
    "ProposalRecord",
    "ReviewAction",
    "ReviewRecord",
    "Store",
    "TrainingFrame",
    "images_dir_for",
    "open_store",
]


def images_dir_for(url: str, images_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where frame images of the store at ``url`` live.

    ``images_dir`` beats ``ECHOMEASURE_IMAGES``; otherwise ``images/`` beside a SQLite file, or
    ``<project>/db/images`` for other databases.
    """
    if images_dir is not None:
        return Path(images_dir).expanduser().resolve()
    parse_url(url)  # a malformed URL is refused here, as when the store opens
    return config.images_dir(url)


def open_store(
    url: str | None = None,
    *,
    images_dir: str | os.PathLike[str] | None = None,
    migrate: bool = True,
) -> Store:
    """Open (creating or upgrading) the review store.

    Parameters
    ----------
    url
        SQLAlchemy URL; default ``ECHOMEASURE_DB`` or SQLite ``db/echomeasure.sqlite``.
    images_dir
        Folder of the frame image store (see :func:`images_dir_for`).
    migrate
        Run the Alembic migrations up to the latest revision (default).  Without it, a database
        that is not at the latest revision is refused.

    Raises
    ------
    StoreError
        Bad URL, unreachable server, or a database from a newer echomeasure.
    """
    resolved = config.db_url(url)
    engine = create_store_engine(resolved)
    try:
        at = current_revision(engine)
        head = head_revision()
        if at != head:
            if not migrate:
                raise StoreError(f"the database is at schema {at or 'empty'}, not {head}; open it with migrations on")
            log.info("migrating %s from %s to %s", engine.url.render_as_string(hide_password=True), at, head)
            try:
                upgrade(engine)
            except CommandError:  # the database names a revision this version does not ship
                raise StoreError(
                    f"the database schema {at} is unknown to this echomeasure (made by a newer "
                    "version?); upgrade echomeasure or use another --db"
                ) from None
            except ProgrammingError as exc:  # e.g. the least-privilege app role may not create tables
                if getattr(getattr(exc, "orig", None), "sqlstate", None) != "42501":
                    raise
                raise StoreError(
                    f"the database is at schema {at or 'empty'}, not {head}, and this login may not "
                    "change the schema; upgrade it as the owner: echomeasure db init --db OWNER_URL"
                ) from None
    except DatabaseError as exc:  # unreachable server, bad login, a file that is not a database, ...
        engine.dispose()
        orig = getattr(exc, "orig", None)
        msg = " ".join(str(orig if orig is not None else exc).split())[:200]
        raise StoreError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {msg}"
        ) from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, ImageStore(images_dir_for(resolved, images_dir)))
