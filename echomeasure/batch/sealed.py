"""One file's batch result as plain columns, sealed with the site secret.

A batch worker de-identifies a file through the gate (:func:`echomeasure.ingest.load`) and
runs the models; what it hands back to the single writer (the driver, or a Parquet file for a
later ``echomeasure ingest --from-parquet``) is a row of plain values: JSON text and the raw
de-identified frame bytes.  No pickles: a row read from disk can never run code.

The gate's :class:`~echomeasure.ingest.DeidentifiedClip` cannot cross a process boundary as
itself, so the row carries its content and a *seal*: an HMAC-SHA256 over every column, keyed
with the site secret.  Only a process holding the site secret, i.e. a worker that ran the gate,
can produce a row whose seal verifies; :func:`open_row` refuses any other row (edited,
truncated, or made with another site's secret) before anything reaches the store, and checks
that the frames still hash to the gate's ``pixel_sha256``.  Only then is the gate's output
rebuilt, exactly as the worker held it.

Nothing here identifies a patient: ``file`` is the base file name (shown, never stored) and
``source_key`` a keyed hash of the original file's path and bytes (see :func:`source_key`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from echomeasure.errors import DeidentificationError
from echomeasure.plain_json import json_default

SEAL_VERSION = b"echomeasure-batch-row-v1"
_SECRET_CHECK = b"echomeasure-batch-secret-check"
_READ_CHUNK = 1 << 20

#: Column names and Arrow types of a row (see :func:`arrow_schema`).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("index", "int64"),
    ("file", "string"),
    ("source_key", "string"),
    ("status", "string"),  # "ok" or "error"
    ("error", "string"),
    ("secret_check", "string"),
    ("clip", "string"),  # JSON: UIDs, pixel hash, frame geometry, regions, de-identification record
    ("frames", "large_binary"),  # the gate-checked (N, H, W, 3) uint8 frames, C order
    ("proposals", "string"),  # JSON of ClipProposals, null when the models did not run
    ("warnings", "string"),  # JSON list
    ("seal", "string"),
    ("worker_pid", "int64"),
    ("worker_peak_rss_mb", "float64"),
    ("worker_cpu_s", "float64"),  # CPU time the worker process has used so far (all its threads)
)


def arrow_schema() -> Any:
    """The pyarrow schema of a batch row (pyarrow comes with ``echomeasure[ray]``)."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "string": pa.string(), "large_binary": pa.large_binary(), "float64": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS])


def secret_check(secret: bytes) -> str:
    """A short keyed fingerprint of the site secret: equal secrets give equal checks.

    Lets the driver tell "the workers have another ECHOMEASURE_SECRET" apart from a damaged
    row without the secret itself ever leaving a process.
    """
    return hmac.new(secret, _SECRET_CHECK, hashlib.sha256).hexdigest()[:16]


def source_key(path: str | os.PathLike[str], secret: bytes) -> str:
    """Keyed name of one input: HMAC-SHA256(site secret, the file's absolute path and its bytes).

    Keys the resume ledger and the Parquet output.  Every input gets its own key: two files of
    different folders, even with the same name and the same bytes, are two inputs (each gets its
    result and its line; the store keeps one clip for equal content).  The key does not depend on
    how the path was typed, on the other inputs or on their order, so an earlier run's key is found
    again by ``--resume``; a file whose bytes changed gets a new key (it is processed again).
    Keyed, so a key reveals nothing about a file or its folder to someone without the secret; and
    a new secret (which gives new pseudonymous UIDs) gives new keys, so nothing is skipped that
    would come out different.

    Raises OSError when the file cannot be read.
    """
    where = os.fsencode(os.path.realpath(path))
    mac = hmac.new(secret, b"echomeasure-source-file-v2\0", hashlib.sha256)
    mac.update(len(where).to_bytes(8, "little"))
    mac.update(where)
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            mac.update(chunk)
    return mac.hexdigest()


@dataclass(frozen=True)
class OpenedRow:
    """A verified ok row: the gate's output rebuilt, the proposals (None when none were made)."""

    file: str
    source_key: str
    dclip: Any  # echomeasure.ingest.DeidentifiedClip
    proposals: Any  # echomeasure.propose.ClipProposals | None
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------- worker side


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=json_default, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _seal(secret: bytes, row: dict[str, Any]) -> str:
    mac = hmac.new(secret, SEAL_VERSION, hashlib.sha256)
    for name in ("file", "source_key", "clip", "proposals", "warnings"):
        value = row.get(name)
        data = b"\xff" if value is None else value.encode("utf-8")
        mac.update(len(data).to_bytes(8, "little"))
        mac.update(data)
    frames = row.get("frames") or b""
    mac.update(len(frames).to_bytes(8, "little"))
    mac.update(frames)
    return mac.hexdigest()


def clip_json(dclip: Any) -> str:
    """The de-identified clip's content (all but the frame bytes) as canonical JSON."""
    c = dclip.clip
    return _dumps({
        "study_uid": dclip.study_uid,
        "series_uid": dclip.series_uid,
        "instance_uid": dclip.instance_uid,
        "pixel_sha256": dclip.pixel_sha256,
        "deid_record": dclip.deid_record,
        "display_name": dclip.display_name,
        "shape": list(c.frames.shape),
        "frame_time_ms": c.frame_time_ms,
        "regions": [dataclasses.asdict(r) for r in c.regions],
        "source_kind": c.source_kind,
        "source_name": c.source_name,
        "sop_class_uid": c.sop_class_uid,
        "modality": c.modality,
        "burned_in_annotation": c.burned_in_annotation,
        "user_cm_per_px": c.user_cm_per_px,
        "extra": c.extra,
    })


def proposals_json(proposals: Any) -> str:
    """A :class:`~echomeasure.propose.ClipProposals` as canonical JSON (floats round-trip exactly)."""
    return _dumps(dataclasses.asdict(proposals))


def ok_row(index: int, file: str, key: str, dclip: Any, proposals: Any, warnings: list[str], secret: bytes) -> dict:
    """The sealed row of a file that passed the gate (``proposals`` None when none were made)."""
    frames = np.ascontiguousarray(dclip.clip.frames)
    row = {
        "index": index,
        "file": file,
        "source_key": key,
        "status": "ok",
        "error": None,
        "secret_check": secret_check(secret),
        "clip": clip_json(dclip),
        "frames": frames.tobytes(),
        "proposals": None if proposals is None else proposals_json(proposals),
        "warnings": _dumps(list(warnings)),
    }
    row["seal"] = _seal(secret, row)
    return row


def error_row(index: int, file: str, key: str, message: str, secret: bytes) -> dict:
    """The row of a file that failed (the message is the user error's, never a value read)."""
    return {
        "index": index, "file": file, "source_key": key, "status": "error", "error": message,
        "secret_check": secret_check(secret), "clip": None, "frames": None, "proposals": None,
        "warnings": "[]", "seal": None,
    }


# --------------------------------------------------------------------------- writer side


def open_row(row: dict[str, Any], secret: bytes) -> OpenedRow:
    """Verify an ok row's seal and pixel hash and rebuild the gate's output from it.

    Raises
    ------
    DeidentificationError
        The row was made with another site secret, was changed after the worker sealed it, or
        its frames do not hash to the de-identified pixel hash.  Nothing is rebuilt then.
    """
    if row.get("status") != "ok":
        raise ValueError("only ok rows can be opened")
    if row.get("secret_check") != secret_check(secret):
        raise DeidentificationError(
            "the batch result was made with another site secret (ECHOMEASURE_SECRET); set the same "
            "secret for the workers and for the writer"
        )
    if not hmac.compare_digest(str(row.get("seal") or ""), _seal(secret, row)):
        raise DeidentificationError("the batch result's seal does not verify (changed or damaged); re-run the batch for it")
    meta = json.loads(row["clip"])
    shape = tuple(int(n) for n in meta["shape"])
    data = row["frames"]
    if len(shape) != 4 or shape[-1] != 3 or len(data) != int(np.prod(shape)):
        raise DeidentificationError("the batch result's frames do not have the recorded size")
    if hashlib.sha256(data).hexdigest() != meta["pixel_sha256"]:
        raise DeidentificationError("the batch result's frames do not match the de-identified pixel hash")
    frames = np.frombuffer(data, dtype=np.uint8).reshape(shape)
    frames.setflags(write=False)
    dclip = _rebuild_gate_output(meta, frames)
    props = None if row.get("proposals") is None else _clip_proposals(json.loads(row["proposals"]))
    return OpenedRow(
        file=str(row["file"]), source_key=str(row["source_key"]), dclip=dclip, proposals=props,
        warnings=tuple(json.loads(row.get("warnings") or "[]")),
    )


def _rebuild_gate_output(meta: dict, frames: np.ndarray) -> Any:
    """The gate's output as the sealing worker held it.

    The gate's constructor is reserved to the gate; a verified seal stands in for it here (the
    same bytes a worker's gate admitted), so the object is restored the way unpickling would.
    """
    from echomeasure.ingest import Clip, DeidentifiedClip, Region

    clip = Clip(
        frames=frames,
        frame_time_ms=meta["frame_time_ms"],
        regions=tuple(Region(**r) for r in meta["regions"]),
        source_kind=meta["source_kind"],
        source_name=meta["source_name"],
        sop_class_uid=meta["sop_class_uid"],
        modality=meta["modality"],
        burned_in_annotation=meta["burned_in_annotation"],
        user_cm_per_px=meta["user_cm_per_px"],
        extra=dict(meta.get("extra") or {}),
    )
    dclip = object.__new__(DeidentifiedClip)
    values = {
        "clip": clip, "study_uid": meta["study_uid"], "series_uid": meta["series_uid"],
        "instance_uid": meta["instance_uid"], "pixel_sha256": meta["pixel_sha256"],
        "deid_record": meta["deid_record"], "display_name": meta["display_name"],
    }
    for slot in DeidentifiedClip.__slots__:
        object.__setattr__(dclip, slot, values[slot])
    return dclip


def _clip_proposals(d: dict) -> Any:
    from echomeasure.propose import ClipProposals, ModelInfo, Proposal

    def model(m: dict | None) -> ModelInfo | None:
        return None if m is None else ModelInfo(**m)

    def pts(seq: list) -> tuple:
        return tuple(tuple(float(v) for v in p) for p in seq)

    measurements = [
        Proposal(**{**p, "points": pts(p["points"]), "beat_points": pts(p.get("beat_points") or []),
                    "model": model(p.get("model"))})
        for p in d["measurements"]
    ]
    return ClipProposals(**{**d, "model": model(d["model"]), "measurements": measurements,
                            "segmentation_model": model(d.get("segmentation_model"))})
