"""Content-addressed image store for de-identified frames.

Frames are lossless PNG files named by the SHA-256 of the file's bytes:
``<root>/<sha[:2]>/<sha>.png``.  The same frame stored twice is one file; a file is written
under a temporary name and renamed into place, so a crash never leaves a half-written PNG
under a real name; reading checks the hash, so a damaged file is reported rather than shown.

Where the root is: beside a SQLite database (``<db folder>/images``), or, for other URLs
(PostgreSQL, in-memory SQLite), ``ECHOMEASURE_IMAGES`` or the ``images_dir`` given to
``open_store`` (default ``<project>/db/images``).  Only pixels that passed the
de-identification gate ever reach this folder.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from echomeasure import atomic
from echomeasure.errors import StoreError

log = logging.getLogger(__name__)

PNG_COMPRESS_LEVEL = 1  # lossless either way; on echo frames level 1 is ~3x faster than 6 at a similar size


def encode_png(frame: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 RGB frame (or (H, W) grey) as PNG bytes."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError(f"frame must be (H, W, 3) or (H, W) uint8, got {frame.shape} {frame.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def read_png(path: Path) -> np.ndarray:
    """Read a PNG as an (H, W, 3) uint8 RGB array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ImageStore:
    """PNG files addressed by their SHA-256 under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def relpath(self, sha256: str) -> str:
        """Where a file with this hash lives, relative to the root (``ab/abcdef....png``)."""
        return f"{sha256[:2]}/{sha256}.png"

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored file."""
        return self.root / relpath

    def put(self, frame: np.ndarray) -> tuple[str, str]:
        """Store a frame; returns ``(sha256, relpath)``.  Storing the same pixels again is free."""
        data = encode_png(frame)
        sha = hashlib.sha256(data).hexdigest()
        rel = self.relpath(sha)
        target = self.path(rel)
        if target.exists() and _sha256_of(target) == sha:
            return sha, rel  # already stored (a damaged copy is rewritten below)
        try:
            atomic.write_bytes(target, data, mode=0o600, make_parents=True)
        except OSError as exc:
            raise StoreError(f"cannot write frame images under {self.root}: {exc.strerror}") from None
        return sha, rel

    def get(self, relpath: str, sha256: str) -> np.ndarray:
        """Read a stored frame back, checking its hash."""
        target = self.path(relpath)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"frame image {relpath} is missing from {self.root}; re-ingest the clip to restore it"
            ) from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"frame image {relpath} is damaged (hash mismatch); re-ingest the clip")
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
