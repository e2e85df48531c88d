"""``echomeasure inspect``: what a file is, without decoding DICOM pixels."""

from __future__ import annotations

import os
from pathlib import Path

from echomeasure.ingest import dicom_io, video_io
from echomeasure.ingest.calibration import region_record


def _dicom(p: Path) -> dict:
    ds = dicom_io.read_dataset(p)
    geometry = dicom_io.check_geometry(ds)
    regions = dicom_io.regions_from_dataset(ds)
    # Same rules as Clip.kind / Clip.calibration_source, without decoding any frame.
    kind = "doppler" if any(r.is_spectral for r in regions) else "2d"
    calibration = "dicom" if any(r.is_2d_cm or r.is_spectral for r in regions) else "none"
    sop = str(ds.get("SOPClassUID", "")) or None
    ts = dicom_io.transfer_syntax(ds)
    codes = [
        {"value": str(it.get("CodeValue", "")), "meaning": str(it.get("CodeMeaning", ""))}
        for it in ds.get("DeidentificationMethodCodeSequence", [])
    ]
    return {
        "source_kind": "dicom",
        "kind": kind,
        "ultrasound": dicom_io.is_ultrasound(ds),
        "sop_class": sop,
        "sop_class_name": dicom_io.sop_class_name(sop),
        "modality": str(ds.get("Modality", "")) or None,
        "transfer_syntax": str(ts),
        "transfer_syntax_name": ts.name,
        "photometric_interpretation": geometry.photometric,
        "bits_allocated": geometry.bits_allocated,
        "frames": geometry.n_frames,
        "rows": geometry.rows,
        "columns": geometry.columns,
        "frame_time_ms": dicom_io.frame_time_ms(ds),
        "calibration": calibration,
        "regions": [region_record(r) for r in regions],
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "")) or None,
        "deidentification": {
            "patient_identity_removed": str(ds.get("PatientIdentityRemoved", "")) or None,
            "method": str(ds.get("DeidentificationMethod", "")) or None,
            "codes": codes,
            "longitudinal_temporal_information_modified": str(ds.get("LongitudinalTemporalInformationModified", "")) or None,
            "private_attributes": sum(1 for e in ds.iterall() if e.tag.is_private),
            "preamble_zeroed": not any(ds.preamble or b"") if getattr(ds, "preamble", None) is not None else None,
        },
    }


def _container(p: Path, kind: str, fmt: str | None) -> dict:
    clip = video_io.read_video(p) if kind == "video" else video_io.read_image(p)
    meta = video_io.container_metadata(p) if kind == "video" else video_io.image_metadata(p.read_bytes())
    user_keys = sorted(k for k in meta if k.split(":", 1)[-1].lower() not in video_io.TECHNICAL_METADATA_KEYS)
    return {
        "source_kind": kind,
        "kind": clip.kind,
        "ultrasound": None,
        "container": fmt,
        "codec": clip.extra.get("codec"),
        "frames": clip.n_frames,
        "rows": clip.height,
        "columns": clip.width,
        "frame_time_ms": clip.frame_time_ms,
        "calibration": "none",
        "regions": [],
        "burned_in_annotation": None,
        "deidentification": {"metadata_keys": user_keys, "metadata_free": not user_keys},
        "transfer_syntax": None,
        "sop_class": None,
    }


def inspect_path(path: str | os.PathLike[str]) -> dict:
    """JSON-able description of a DICOM, video or still (see :func:`echomeasure.ingest.inspect_file`)."""
    p = dicom_io.check_path(path)
    kind, fmt = video_io.sniff(p)
    out = _container(p, kind, fmt) if kind in ("video", "image") else _dicom(p)
    out["file"] = p.name
    return out
