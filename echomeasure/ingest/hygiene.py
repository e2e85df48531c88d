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

from echomeasure.errors import EchomeasureError, InvalidInputError, WeightsError

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


def _names(message: str, label: str) -> bool:
    """True when ``message`` already names the path ``label`` as a path of its own: at the start
    or after a space, quote or bracket, and followed by the end, ``:``, ``/`` (a file inside it),
    ``;``, ``,``, ``)`` or a quote -- not a word of the sentence that happens to be spelt alike."""
    i = message.find(label)
    while i >= 0:
        before = message[i - 1] if i else " "
        j = i + len(label)
        after = message[j] if j < len(message) else ""
        if before in " ('\"" and (after == "" or after in ":/;,)'\"" or (after == "." and j + 1 == len(message))):
            return True
        i = message.find(label, i + 1)
    return False


def named_message(path: str | os.PathLike[str], exc: EchomeasureError) -> str:
    """The message of a user error about the input ``path``, naming it as the user gave it.

    The one rule every command that reads a path follows (the same ``PATH: message`` as
    ``inspect`` and ``deid``, ingest.hygiene): the path exactly as typed, JSON-quoted when it
    holds control characters, put first.  Left as it is: a message that already names the path,
    one about an option (it starts with ``--``) and one about the installation (missing weights).
    """
    text = str(exc)
    label = quote_path(path)
    if isinstance(exc, WeightsError) or text.startswith("--") or _names(text, label):
        return text
    return f"{label}: {text}"


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
