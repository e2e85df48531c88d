"""Transactions of the review store: one per logical change, retried while the database is busy.

SQLite writers take the write lock up front (``BEGIN IMMEDIATE``, see
:data:`echomeasure.store.engine.WRITE_OPTION`) and wait on it (busy timeout); a writer that
still finds the database locked is retried with back-off, so two reviewers saving at once never
lose a review.  PostgreSQL writers are retried on serialization failures, deadlocks and
unique-key races.  A refusal that retrying cannot cure becomes a :class:`StoreError`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from echomeasure.errors import StoreError
from echomeasure.store.engine import WRITE_OPTION

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_ATTEMPTS = 8
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def write_engine(engine: Engine) -> Engine:
    """The engine whose transactions take the write lock at their start."""
    return engine.execution_options(**{WRITE_OPTION: True})


def read(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in one read transaction."""
    with Session(engine) as session, session.begin():
        return fn(session)


def write(engine: Engine, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in one write transaction on a :func:`write_engine`, retrying while the
    database is busy; a lasting refusal raises :class:`StoreError`."""
    delay_s = _FIRST_DELAY_S
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                return fn(session)
        except (OperationalError, IntegrityError, DBAPIError) as exc:
            if attempt == WRITE_ATTEMPTS or not is_transient(exc):
                raise store_error(exc) from None
            log.info("store busy (%s), retry %d", _short(exc), attempt)
            time.sleep(delay_s * (1 + random.random()))
            delay_s = min(delay_s * 2, _MAX_DELAY_S)
    raise AssertionError("unreachable")  # pragma: no cover


def is_transient(exc: Exception) -> bool:
    """Errors worth retrying: SQLite busy/locked, PostgreSQL serialization/deadlock, key races."""
    if isinstance(exc, IntegrityError):
        # Two writers creating the same study/clip/model version at once: the retry finds it.
        return "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower()
    msg = str(getattr(exc, "orig", exc)).lower()
    if "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in ("40001", "40P01")


def store_error(exc: Exception) -> StoreError:
    """The user-facing error of a change the database refused."""
    return StoreError(f"the database refused the change: {_short(exc)}")


def _short(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]


__all__ = ["WRITE_ATTEMPTS", "is_transient", "read", "store_error", "write", "write_engine"]
