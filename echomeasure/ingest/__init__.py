"""Ingest: read DICOM / video / still files, de-identify them, gate the result, calibrate.

Public API (other stages code against these names)::

    read_clip(path, *, user_cm_per_px=None, allow_non_us=False) -> Clip        # raw read, no de-id
    load(path, *, secret, user_cm_per_px=None, allow_non_us=False) -> DeidentifiedClip
    deidentify_file(in_path, out_path, *, secret) -> dict                       # atomic write
    deidentify_dataset(ds, *, secret) -> pydicom.Dataset
    inspect_file(path) -> dict
    passes_gate(candidate_path_or_bytes, original_path) -> bool
    physical_value(clip, name, points) -> (value, unit, signed_value)
    distance_cm(regions, p1, p2), velocity_m_s(regions, x, y), spectral_region(regions)

``load`` is the only way to get a :class:`DeidentifiedClip`: quarantine -> read -> de-identify ->
gate.  The original is held only in the quarantine folder, which is removed in ``finally``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from echomeasure import atomic
from echomeasure.errors import DeidentificationError, InvalidInputError
from echomeasure.ingest.calibration import (
    calibration_record,
    check_region_calibration,
    check_user_cm_per_px,
    distance_cm,
    physical_value,
    spectral_region,
    velocity_m_s,
)
from echomeasure.ingest.clip import Clip, Region
from echomeasure.ingest.deid import deidentify_dataset
from echomeasure.ingest.gate import DeidentifiedClip, passes_gate
from echomeasure.ingest.hygiene import named_errors
from echomeasure.ingest.profile import DEFAULT_DEID_OPTIONS, DeidOptions

log = logging.getLogger(__name__)

__all__ = [
    "Clip", "DeidOptions", "DeidentifiedClip", "Region", "calibration_record", "deidentify_dataset",
    "deidentify_file", "distance_cm", "inspect_file", "load", "passes_gate", "physical_value",
    "read_clip", "spectral_region", "velocity_m_s",
]


def _kind(path: Path) -> tuple[str, str | None]:
    from echomeasure.ingest.video_io import sniff

    kind, fmt = sniff(path)
    return ("dicom", None) if kind == "unknown" else (kind, fmt)


def read_clip(path: str | os.PathLike[str], *, user_cm_per_px: float | None = None, allow_non_us: bool = False) -> Clip:
    """Read and validate a file into a :class:`Clip` of uint8 RGB frames.  No de-identification.

    Parameters
    ----------
    path : path-like
        DICOM (any supported transfer syntax), AVI/MP4/MOV/MKV video, or PNG/JPEG still.
    user_cm_per_px : float, optional
        Scale for uncalibrated sources (videos, stills); recorded as calibration ``user``.
    allow_non_us : bool
        Read DICOM objects that are not ultrasound (refused by default).

    Raises
    ------
    InputNotFoundError, InvalidInputError, UnsupportedEncodingError
        Missing path or directory; unreadable, truncated or implausible file; undecodable encoding;
        an implausible ``user_cm_per_px``.
    CalibrationError
        The file's regions calibrate with a zero, non-finite or implausible pixel size
        (:func:`echomeasure.ingest.calibration.check_region_calibration`).
    """
    from echomeasure.ingest import dicom_io, video_io

    with named_errors(path):
        p = dicom_io.check_path(path)
        scale = check_user_cm_per_px(user_cm_per_px)
        kind, _ = _kind(p)
        if kind == "video":
            return video_io.read_video(p, user_cm_per_px=scale)
        if kind == "image":
            return video_io.read_image(p, user_cm_per_px=scale)
        ds = dicom_io.read_dataset(p)
        dicom_io.check_sop_class(ds, p.name, allow_non_us)
        check_region_calibration(dicom_io.regions_from_dataset(ds))  # before decoding the pixels
        clip = dicom_io.clip_from_dataset(ds, source_name=p.name, user_cm_per_px=scale, allow_non_us=allow_non_us)
    if clip.regions and scale is not None:
        log.info("%s: DICOM regions present; the user scale is kept but DICOM calibration takes precedence", p.name)
    return clip


@dataclass
class _Outcome:
    data: bytes | memoryview
    clip: DeidentifiedClip
    source_kind: str
    container: str | None


def _deidentify_path(path: Path, *, secret: bytes, user_cm_per_px: float | None, allow_non_us: bool,
                     options: DeidOptions, to_measure: bool = True) -> _Outcome:
    """Quarantine -> read -> de-identify -> gate; returns the output bytes and the gated clip.

    ``to_measure``: the clip will be measured, so a DICOM file whose regions cannot calibrate is
    refused before de-identification (:func:`check_region_calibration`); a de-identified copy
    (:func:`deidentify_file`) keeps the regions as they are.
    """
    from echomeasure.ingest import deid, dicom_io, gate, video_io
    from echomeasure.ingest.quarantine import quarantined

    if not secret:
        raise DeidentificationError("the de-identification secret is empty; set ECHOMEASURE_SECRET or pass --secret")
    kind, fmt = _kind(path)
    with quarantined(path) as original:
        if kind == "dicom":
            ds = dicom_io.read_dataset(original)
            dicom_io.check_sop_class(ds, "file", allow_non_us)
            regions = dicom_io.regions_from_dataset(ds)
            if to_measure:
                check_region_calibration(regions)  # before decoding the pixels
            geometry = dicom_io.check_geometry(ds)
            # decoded straight into the buffer that becomes the de-identified file, cleaned there in
            # place: the clip's pixels exist once (a 300-frame 600x800 clip is 432 MB)
            output = deid.OutputBuffer.for_shape((geometry.n_frames, geometry.rows, geometry.columns, 3))
            frames = dicom_io.decode_frames(ds, geometry, out=output.frames)
            identifiers = gate.collect_dicom_identifiers(ds, secret=secret)
            result = deid.deidentify_dicom(ds, frames, regions, secret=secret, options=options, attach_pixels=False,
                                           identifiers=identifiers, output=output)
            del frames, ds
            data = deid.dicom_bytes(result.dataset, result.frames, result.output)
            del result.frames
            dc = gate.admit_dicom(identifiers, data, result.record, user_cm_per_px=user_cm_per_px, secret=secret)
            return _Outcome(data, dc, "dicom", None)
        if kind == "video":
            identifiers = gate.collect_container_identifiers(video_io.container_metadata(original))
            clip = video_io.read_video(original, user_cm_per_px=user_cm_per_px)
        else:
            identifiers = gate.collect_container_identifiers(video_io.image_metadata(original.read_bytes()))
            clip = video_io.read_image(original, user_cm_per_px=user_cm_per_px)
        cleaned = deid.clean_pixels(clip.frames, (), find_text=options.find_text)
        frames = cleaned.frames
        pixels = cleaned.as_record()
        if kind == "video":
            data = video_io.encode_video(frames, fmt or "mp4", clip.frame_time_ms)  # type: ignore[arg-type]
        else:
            data = video_io.encode_image(frames[0], fmt or "png")  # type: ignore[arg-type]
        record = {
            "profile": "container re-encode: decoded and written into a new container without metadata",
            "options": {"container": fmt},
            "cid7050_codes": [],
            "metadata": "dropped (only muxer-written technical keys remain)",
            "pixels": pixels,
            "output": {"container": fmt, "codec": ("libx264" if fmt in ("mp4", "mov") else "ffv1") if kind == "video" else fmt},
        }
        dc = gate.admit_frames(identifiers, data, "video" if kind == "video" else "image", frames, record,
                               frame_time_ms=clip.frame_time_ms, source_kind=kind, secret=secret,
                               user_cm_per_px=user_cm_per_px)
        return _Outcome(data, dc, kind, fmt)


def load(path: str | os.PathLike[str], *, secret: bytes, user_cm_per_px: float | None = None,
         allow_non_us: bool = False, options: DeidOptions = DEFAULT_DEID_OPTIONS) -> DeidentifiedClip:
    """Quarantine, read, de-identify and gate a file: the only source of :class:`DeidentifiedClip`.

    Parameters
    ----------
    path : path-like
        DICOM, video or still.
    secret : bytes
        Site secret for the HMAC UID remap, pseudonyms and date offsets (``config.secret()``).
    user_cm_per_px : float, optional
        Scale for uncalibrated sources.
    allow_non_us : bool
        Accept non-ultrasound DICOM objects.
    options : DeidOptions
        Profile options (dates shifted by default).

    Returns
    -------
    DeidentifiedClip
        De-identified frames (read-only), pseudonymous UIDs, ``pixel_sha256`` and ``deid_record``.

    Raises
    ------
    EchomeasureError subclasses
        Bad input (see :func:`read_clip`) or :class:`DeidentificationError` when the gate refuses.
    """
    from echomeasure.ingest.dicom_io import check_path

    with named_errors(None):  # callers name the file themselves (ingest prints its base name)
        p = check_path(path)
        return _deidentify_path(p, secret=secret, user_cm_per_px=check_user_cm_per_px(user_cm_per_px),
                                allow_non_us=allow_non_us, options=options).clip


def _check_output_path(dst: Path) -> None:
    """Refuse an output path that exists and is not a regular file (device, FIFO, folder) or
    whose folder does not exist: renaming over a device would replace it."""
    import stat

    for probe in (os.lstat, os.stat):
        try:
            mode = probe(dst).st_mode
        except FileNotFoundError:
            continue
        except OSError:
            raise InvalidInputError("the output path cannot be examined") from None
        if stat.S_ISDIR(mode):
            raise InvalidInputError("is a directory; give an output file name")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise InvalidInputError("exists and is not a regular file (a device, FIFO or socket); give a file name")
    if not dst.parent.is_dir():
        raise InvalidInputError("the output folder does not exist")


def _write_atomically(dst: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``dst`` atomically, readable by the owner only (a de-identified copy)."""
    try:
        with atomic.atomic_path(dst, mode=0o600) as tmp, open(tmp, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise InvalidInputError(f"the output cannot be written ({type(exc).__name__})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: File name extensions of each container a de-identified copy is written in (the input's own:
#: DICOM stays DICOM, an AVI stays AVI/FFV1, an MP4 or MOV becomes H.264 in the same container).
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "dicom": (".dcm", ".dicom"), "mp4": (".mp4", ".m4v"), "mov": (".mov",), "avi": (".avi",), "matroska": (".mkv",),
    "png": (".png",), "jpeg": (".jpg", ".jpeg"),
}
_CONTAINER_TITLES = {"dicom": "a DICOM file", "mp4": "an MP4 video", "mov": "a QuickTime (MOV) video",
                     "avi": "an AVI video", "matroska": "a Matroska (MKV) video", "png": "a PNG image",
                     "jpeg": "a JPEG image"}


def _check_output_suffix(outcome: _Outcome, dst: Path) -> None:
    """Refuse an output name whose extension says another container than the one written (the
    input's): ``clip.avi -> OUT.mp4`` wrote an AVI file named .mp4.  A DICOM copy may also have no
    extension or one no container uses (``IM.0001``), as DICOM files often do."""
    container = "dicom" if outcome.source_kind == "dicom" else str(outcome.container)
    allowed = OUTPUT_SUFFIXES.get(container)
    if allowed is None:
        return
    suffix = dst.suffix.lower()
    if suffix in allowed:
        return
    if container == "dicom" and not any(suffix in s for s in OUTPUT_SUFFIXES.values()):
        return
    title = _CONTAINER_TITLES.get(container, container)
    raise InvalidInputError(f"the de-identified copy is {title}, like the input (the container is kept); give the "
                            f"output the extension {' or '.join(allowed)}; nothing was written")


def deidentify_file(in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, secret: bytes,
                    allow_non_us: bool = False, options: DeidOptions = DEFAULT_DEID_OPTIONS,
                    force: bool = False) -> dict:
    """Write a de-identified copy of ``in_path`` at ``out_path`` (DICOM to DICOM, video to video).

    The output is written to a temporary file in the output folder and renamed into place only
    after the gate passed it (:mod:`echomeasure.atomic`), so nothing partial is ever left at
    ``out_path``.  Refuses to overwrite the input; refuses an existing ``out_path`` unless
    ``force`` (``deid --force``; before anything is read), and an ``out_path`` whose extension
    names another container than the one written (:data:`OUTPUT_SUFFIXES`).

    Returns
    -------
    dict
        JSON-able summary: output path, kind, pseudonymous UIDs, frames, size, pixel sha256 and
        the de-identification record.
    """
    from echomeasure.ingest.dicom_io import check_path

    with named_errors(in_path):
        src = check_path(in_path)
    dst = Path(out_path)
    with named_errors(out_path):
        if _same_file(src, dst) or src.resolve() == dst.resolve():
            raise InvalidInputError("the output path is the input file; write the de-identified copy elsewhere")
        _check_output_path(dst)
        if not force and os.path.lexists(dst):
            raise InvalidInputError("already exists; nothing was written (add --force to replace it)")
    with named_errors(in_path):
        outcome = _deidentify_path(src, secret=secret, user_cm_per_px=None, allow_non_us=allow_non_us,
                                   options=options, to_measure=False)
    with named_errors(out_path):
        _check_output_suffix(outcome, dst)  # after reading: a bad input is named first
        _check_output_path(dst)
        if not force and os.path.lexists(dst):  # appeared while the input was de-identified
            raise InvalidInputError("already exists; nothing was written (add --force to replace it)")
        _write_atomically(dst, outcome.data)
    dc = outcome.clip
    return {
        "output": str(dst),
        "source_kind": outcome.source_kind,
        "container": outcome.container,
        "kind": dc.kind,
        "display_name": dc.display_name,
        "study_uid": dc.study_uid,
        "series_uid": dc.series_uid,
        "instance_uid": dc.instance_uid,
        "frames": dc.clip.n_frames,
        "rows": dc.clip.height,
        "columns": dc.clip.width,
        "frame_time_ms": dc.frame_time_ms,
        "bytes": len(outcome.data),
        "pixel_sha256": dc.pixel_sha256,
        "deid_record": dc.deid_record,
    }


def inspect_file(path: str | os.PathLike[str]) -> dict:
    """Describe a file as JSON without decoding its pixels (DICOM) or with one pass (video).

    Keys: ``source_kind``, ``kind``, ``frames``, ``rows``, ``columns``, ``frame_time_ms``,
    ``regions`` (with unit and data-type names), ``calibration``, ``burned_in_annotation``,
    ``deidentification`` (PatientIdentityRemoved, method, codes), ``transfer_syntax``,
    ``sop_class`` and ``ultrasound``.
    """
    from echomeasure.ingest.inspect import inspect_path

    with named_errors(path):
        return inspect_path(path)
