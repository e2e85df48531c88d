"""No value read from a file in any message: warnings, logs and errors of the ingest stage.

pydicom reports what it finds odd by a warning *and* a log record whose text quotes the raw
value (a mangled header can put a name, an ID and a birth date into one "invalid UID" warning).
:func:`silence_pydicom` drops both, process-wide, once.  :func:`named_errors` gives every user
error of an entry point one prefix: the input path exactly as the user gave it (quoted when it
holds a newline or another control character), and turns a decoder running out of memory into
a user error.  Error texts below this layer name the failure class only, never a value.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from echomeasure.errors import EchomeasureError, InvalidInputError

_installed = False


class _DropRecords(logging.Filter):
    """Drop pydicom's log records: their text quotes values read from the file."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging API
        return False


def silence_pydicom() -> None:
    """Ignore pydicom's warnings and drop its log records (idempotent, process-wide)."""
    global _installed
    if _installed:
        return
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").addFilter(_DropRecords())
    _installed = True


def quote_path(path: str | os.PathLike[str] | bytes) -> str:
    """The path as the user gave it; JSON-quoted when it holds control characters (newlines)."""
    text = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    if all(ch.isprintable() for ch in text):
        return text
    return json.dumps(text)


@contextmanager
def named_errors(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Prefix user errors raised inside with the quoted input path; map MemoryError to one."""
    silence_pydicom()
    label = quote_path(path) if path is not None else None
    try:
        yield
    except EchomeasureError as exc:
        if label is None:
            raise
        raise type(exc)(f"{label}: {exc}") from None
    except MemoryError:
        prefix = f"{label}: " if label else ""
        raise InvalidInputError(f"{prefix}decoding would need more memory than is available; "
                                "the image header or compressed data is implausible") from None
