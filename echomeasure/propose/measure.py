"""``echomeasure measure``: one file in, the contract JSON out (docs/architecture.md section 3).

The file always passes through de-identification first (:func:`echomeasure.ingest.load`); the
models only ever see de-identified pixels, and the JSON names the file by its base name only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from echomeasure import catalog
from echomeasure.errors import InvalidInputError
from echomeasure.ingest.clip import Clip, display_name
from echomeasure.propose.engine import Progress, propose, to_contract_json

log = logging.getLogger(__name__)

#: Clips with at least this many frames get a progress bar (when stderr is a terminal).
PROGRESS_MIN_FRAMES = 32


def parse_model_versions(spec: str | None) -> dict[str, str]:
    """``--model-version``: ``V`` (applies to whichever model runs) or ``name=V[,name=V]``.

    Returns a mapping registry name -> version; a bare version maps both models.
    """
    if not spec:
        return {}
    out: dict[str, str] = {}
    models = {m.model for m in catalog.CATALOG.values() if m.model}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" in part:
            name, version = (s.strip() for s in part.split("=", 1))
            if name not in models:
                raise InvalidInputError(f"unknown model {name!r} in --model-version; use one of {', '.join(sorted(models))}")
            out[name] = version
        else:
            out.update({m: part for m in models})
    return out


@contextmanager
def terminal_progress(enabled: bool, desc: str = "measure") -> Iterator[Progress | None]:
    """A tqdm bar on stderr as a ``progress(done, total)`` callback (None when disabled).

    tqdm's ``disable=None`` turns the bar off by itself when stderr is not a terminal.
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if total < PROGRESS_MIN_FRAMES:
            return
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=None, leave=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def load_deidentified(path: str | os.PathLike[str], *, secret: bytes, user_cm_per_px: float | None = None) -> Clip:
    """Read and de-identify a file (:func:`echomeasure.ingest.load`); return the clip the models may see."""
    from echomeasure.ingest import load

    result = load(path, secret=secret, user_cm_per_px=user_cm_per_px)
    clip = result if isinstance(result, Clip) else getattr(result, "clip", None)
    if not isinstance(clip, Clip):  # pragma: no cover - a contract violation by ingest
        raise TypeError(f"ingest.load returned {type(result).__name__}, expected a clip")
    return clip


def measure_file(
    path: str | Path,
    *,
    only: str | Iterable[str] | None = None,
    per_frame: bool = False,
    scale_cm_per_px: float | None = None,
    model_version: str | None = None,
    secret: bytes | None = None,
    progress: Progress | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """De-identify a file, propose its measurements, and return the contract JSON.

    Parameters
    ----------
    path
        DICOM, AVI/MP4 or image file.
    only
        Measurement names to restrict to (see :func:`echomeasure.propose.propose`).
    per_frame
        Include per-frame points (``"frames"``).
    scale_cm_per_px
        User calibration for sources without DICOM calibration (videos, screenshots).  Ignored,
        with a warning, when the file carries DICOM calibration.
    model_version
        ``--model-version`` text (:func:`parse_model_versions`).
    secret
        Site secret for de-identification (default :func:`echomeasure.config.secret`).
    progress
        ``progress(done, total)`` callback.
    backend
        Inference backend (``"auto"``, ``"onnx"``, ``"torch"``).

    Returns
    -------
    dict
        ``{"file", "kind", "calibration", "model", "measurements"[, "frames"]}``.
    """
    from echomeasure import config
    from echomeasure.ingest.calibration import check_user_cm_per_px

    scale_cm_per_px = check_user_cm_per_px(scale_cm_per_px, label="--scale")
    versions = parse_model_versions(model_version)
    clip = load_deidentified(
        path, secret=secret if secret is not None else config.secret(), user_cm_per_px=scale_cm_per_px
    )
    if scale_cm_per_px is not None and clip.calibration_source == "dicom":
        log.warning("%s carries DICOM calibration; --scale ignored", display_name(path))
    proposals = propose(
        clip, only=only, per_frame=per_frame, progress=progress, model_versions=versions, backend=backend
    )
    log.info("timings (s): %s", {k: round(v, 3) for k, v in proposals.timings_s.items()})
    return to_contract_json(proposals, display_name(path))

