"""Exports of the review store: CSV (long format), JSON (full history), COCO keypoints and polygons, masks.

Nothing identifying is exported: clips are known by their pseudonymous UIDs and store id, and
the store holds nothing else.  Files are written atomically (a temporary file in the same
folder, then renamed), so an interrupted export never leaves a partial file behind.

CSV (docs/domain.md section 6): one row per measurement of a clip (every proposed measurement, plus
those a reviewer added), with the final and the proposed points and values, the UCUM unit
(``cm``, ``m/s``, ``{ratio}``; ``{px}`` for uncalibrated pixel lengths), the LOINC code, the
calibration source, the review status, the model name and version, the reviewer and ISO 8601
UTC times.  ``.`` is the decimal separator whatever the locale; empty cells mean "none".
Text cells that begin with ``=``, ``+``, ``-``, ``@``, tab or carriage return get a leading
``'`` so a spreadsheet shows them instead of running them as formulas (OWASP CSV injection);
numeric columns (``CSV_NUMERIC_COLUMNS``, e.g. a negative Doppler value) are left as numbers.
JSON and COCO keep every value exactly as stored.

COCO keypoints: ``images`` are the reviewed frames (``file_name`` relative to the store's image
folder), one annotation per frame with ``catalog.KEYPOINTS_2D`` (category ``plax_linear``) or
``catalog.DOPPLER_CHANNELS`` (category ``doppler_peaks``) in that order, visibility 2 for
reviewed points and 0 (with x = y = 0) for the rest.  Reviewed contours (accepted, corrected,
added) are COCO polygon annotations (``segmentation``), one category per structure from id
``COCO_CONTOUR_FIRST_ID``.  CSV rows of LV volumes, EF, LA volume and LV length carry the
``method`` (single-plane A4C/A2C, biplane, area-length).  ``export_masks`` writes per-frame PNG
label masks in CAMUS values (0 background, 1 LV, 2 myocardium, 3 LA).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from echomeasure import __version__, atomic, catalog
from echomeasure.errors import InvalidInputError, StoreError
from echomeasure.ingest.calibration import pixel_length
from echomeasure.store import MeasurementState, Store

log = logging.getLogger(__name__)

ExportFormat = Literal["csv", "json", "coco"]  # and "masks" (a folder of PNGs: export_masks)
FORMATS: tuple[str, ...] = ("csv", "json", "coco")
JSON_SCHEMA = "echomeasure.export/1"

UCUM_UNITS = {"cm": "cm", "m/s": "m/s", "ratio": "{ratio}", "px": "{px}", "ml": "mL", "%": "%"}

CSV_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "series_uid",
    "instance_uid",
    "clip_id",
    "clip_kind",
    "measurement",
    "loinc",
    "status",
    "frame",
    "value",
    "unit",
    "x1_px",
    "y1_px",
    "x2_px",
    "y2_px",
    "proposed_frame",
    "proposed_value",
    "proposed_unit",
    "proposed_x1_px",
    "proposed_y1_px",
    "proposed_x2_px",
    "proposed_y2_px",
    "pixel_length_px",
    "confidence",
    "calibration_source",
    "model_name",
    "model_version",
    "reviewer",
    "n_reviews",
    "seconds_spent",
    "proposed_at",
    "reviewed_at",
    "method",
)

#: Columns holding numbers written by the exporter itself (never neutralised: ``-0.8`` stays a number).
CSV_NUMERIC_COLUMNS = frozenset(
    {
        "clip_id", "frame", "value", "x1_px", "y1_px", "x2_px", "y2_px", "proposed_frame", "proposed_value",
        "proposed_x1_px", "proposed_y1_px", "proposed_x2_px", "proposed_y2_px", "pixel_length_px",
        "confidence", "n_reviews", "seconds_spent",
    }
)
#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

COCO_CATEGORIES = (
    {"id": 1, "name": "plax_linear", "supercategory": "echo_2d", "keypoints": list(catalog.KEYPOINTS_2D)},
    {"id": 2, "name": "doppler_peaks", "supercategory": "echo_doppler", "keypoints": list(catalog.DOPPLER_CHANNELS)},
)


def iso_utc(ts: datetime | None) -> str:
    """ISO 8601 in UTC with a ``Z`` (``2025-03-01T08:15:02.123Z``); empty for None."""
    if ts is None:
        return ""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ucum(unit: str | None) -> str:
    """The UCUM code of a store unit (``ratio`` -> ``{ratio}``); empty for None."""
    if unit is None:
        return ""
    return UCUM_UNITS.get(unit, unit)


def _num(value: float | None, digits: int = 4) -> str:
    # repr of a rounded float: locale-independent, "." decimal separator, no trailing noise.
    return "" if value is None else repr(round(float(value), digits))


#: A ``;`` (the list separator of many locales, where spreadsheets split unquoted CSV lines on
#: it) followed, after spaces, by a formula trigger.
_TRIGGER_AFTER_SEMICOLON = re.compile(r";(\s*)(?=[=+\-@\t\r])")


def neutralise_cell(text: str) -> str:
    """A text cell a spreadsheet will not run: a leading ``'`` before a formula trigger, also
    where a ``;`` starts a new cell for a spreadsheet that splits on it (``Dr X;=1+1``: the
    csv module quotes only cells with a comma, so ``;`` reaches the spreadsheet unquoted)."""
    text = "'" + text if text.startswith(FORMULA_TRIGGERS) else text
    return _TRIGGER_AFTER_SEMICOLON.sub(r";\1'", text) if ";" in text else text


def _points_cells(points: Sequence[tuple[float, float]] | None) -> list[str]:
    cells = ["", "", "", ""]
    for i, (x, y) in enumerate((points or ())[:2]):
        cells[2 * i], cells[2 * i + 1] = _num(x, 2), _num(y, 2)
    return cells


def _clip_ids(store: Store, clip_ids: Iterable[int] | None) -> list[int]:
    known = [c.id for c in store.clips()]
    if clip_ids is None:
        return known
    wanted = list(dict.fromkeys(int(c) for c in clip_ids))
    missing = [c for c in wanted if c not in set(known)]
    if missing:
        raise StoreError(f"no clip {missing[0]} in the store; run the export without --clip to see all")
    return wanted


# --------------------------------------------------------------------------- CSV


def csv_rows(store: Store, clip_ids: Iterable[int] | None = None) -> list[dict[str, str]]:
    """The CSV export as a list of rows (column name -> cell text), in ``CSV_COLUMNS`` order."""
    rows: list[dict[str, str]] = []
    for clip_id in _clip_ids(store, clip_ids):
        clip = store.clip(clip_id)
        for st in store.current_measurements(clip_id):
            rows.append(_csv_row(clip, st))
        rows.extend(_volume_csv_rows(store, clip))
    return rows


#: Which reviewed-contour figure (:func:`echomeasure.contour_volumes.reviewed_figures`) replaces a
#: single-plane volume row's value, and the figure's frame (None: EF keeps the proposed row's frame).
_REVIEWED_FIGURE: dict[str, tuple[str, str | None]] = {
    "lvedv": ("edv_ml", "ed_frame"), "lvesv": ("esv_ml", "es_frame"), "lvef": ("ef_percent", None)}


@dataclass(frozen=True)
class VolumeState:
    """Where one stored volume, EF or LV length stands for the exports (CSV and DICOM SR).

    ``record`` is the model's stored figure (``store.contours.VolumeRecord``, its proposed value
    and frame).  ``status``, ``value`` and ``frame`` are the exported ones; ``reviewer`` and
    ``reviewed_at`` the latest review of the ED/ES apical contours behind a reviewed figure, and
    ``n_reviews`` the number of reviews of those contours (None / 0 for a proposed figure).
    """

    record: Any
    status: str
    value: float | None
    frame: int | None
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    n_reviews: int = 0


def volume_states(store: Store, clip: Any) -> list[VolumeState]:
    """The stored volumes, EFs and lengths of a clip as the exports give them.

    The model's figure is the proposed value.  Once the reviewer has reviewed an apical clip's
    end-diastolic LV contour, the single-plane EDV carries the figure of the reviewed contours
    as its value (status accepted or corrected); ESV likewise with the end-systolic contour, and
    EF once both are reviewed (:func:`echomeasure.contour_volumes.reviewed_figures`: the same rule
    as the proposal's, so contours left as proposed give exactly the proposed figures).  Each
    carries the reviewer and time of the latest review of its frame's apical contours.
    """
    from echomeasure.contour_volumes import APICAL_LABELS, reviewed_figures
    from echomeasure.store.contours import contour_reviews, volumes

    stored = volumes(store, clip.id)
    reviewed = reviewed_figures(store, clip, stored) if stored else None
    reviews = []
    if reviewed is not None:
        reviews = sorted((r for r in contour_reviews(store, clip.id) if r.structure in APICAL_LABELS),
                         key=lambda r: (r.created_at, r.id))
    out = []
    for v in stored:
        status = None
        if reviewed is not None and catalog.view_of_method(v.method) and v.measurement in _REVIEWED_FIGURE:
            key, frame_key = _REVIEWED_FIGURE[v.measurement]
            status = reviewed["statuses"][key]
        if status is None:
            out.append(VolumeState(v, "proposed", v.value, v.frame_index))
            continue
        assert reviewed is not None
        phases = {reviewed[frame_key]} if frame_key is not None else {reviewed["ed_frame"], reviewed["es_frame"]}
        own = [r for r in reviews if r.frame_index in phases]
        out.append(VolumeState(
            v, status, reviewed[key], v.frame_index if frame_key is None else reviewed[frame_key],
            reviewer=own[-1].reviewer if own else None, reviewed_at=own[-1].created_at if own else None,
            n_reviews=len(own)))
    return out


def _volume_csv_rows(store: Store, clip: Any) -> list[dict[str, str]]:
    """One row per stored volume, EF or LV length of a clip (:func:`volume_states`), with the
    method that gave it."""
    models = {m.id: m for m in store.model_versions()}
    rows = []
    for vs in volume_states(store, clip):
        v, status, value, frame = vs.record, vs.status, vs.value, vs.frame
        mv = models.get(v.model_version_id) if v.model_version_id is not None else None
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update({
            "study_uid": clip.study_uid, "series_uid": clip.series_uid, "instance_uid": clip.instance_uid,
            "clip_id": str(clip.id), "clip_kind": clip.kind, "measurement": v.measurement, "status": status,
            "loinc": catalog.volume_loinc(v.measurement, v.method) or "",  # the code the DICOM SR gives it
            "frame": "" if frame is None else str(frame),
            "value": _num(value), "unit": ucum(v.unit) if value is not None else "",
            "proposed_frame": "" if v.frame_index is None else str(v.frame_index),
            "proposed_value": _num(v.value), "proposed_unit": ucum(v.unit) if v.value is not None else "",
            "confidence": _num(v.confidence, 3), "calibration_source": clip.calibration_source,
            "model_name": mv.name if mv else "", "model_version": mv.version if mv else "",
            "reviewer": vs.reviewer or "", "n_reviews": str(vs.n_reviews), "reviewed_at": iso_utc(vs.reviewed_at),
            "proposed_at": iso_utc(v.created_at), "method": v.method,
        })
        rows.append({k: val if k in CSV_NUMERIC_COLUMNS else neutralise_cell(val) for k, val in row.items()})
    return rows


def _pixel_length(st: MeasurementState) -> float | None:
    """The pixel length of the row's own caliper (its reviewed points when it has two), so that it
    goes with ``value`` and ``x1_px``..``y2_px``; the proposal's otherwise."""
    if st.points is not None and len(st.points) == 2:
        return pixel_length(st.points[0], st.points[1])
    return st.pixel_length_px


def _csv_row(clip: Any, st: MeasurementState) -> dict[str, str]:
    spec = catalog.get(st.measurement)
    final = _points_cells(st.points)
    proposed = _points_cells(st.proposed_points)
    row = {
        "study_uid": clip.study_uid,
        "series_uid": clip.series_uid,
        "instance_uid": clip.instance_uid,
        "clip_id": str(clip.id),
        "clip_kind": clip.kind,
        "measurement": st.measurement,
        "loinc": spec.loinc or "",
        "status": st.status,
        "frame": "" if st.frame_index is None else str(st.frame_index),
        "value": _num(st.value),
        "unit": ucum(st.unit) if st.value is not None else "",
        "x1_px": final[0],
        "y1_px": final[1],
        "x2_px": final[2],
        "y2_px": final[3],
        "proposed_frame": "" if st.proposed_frame_index is None else str(st.proposed_frame_index),
        "proposed_value": _num(st.proposed_value),
        "proposed_unit": ucum(st.proposed_unit) if st.proposed_value is not None else "",
        "proposed_x1_px": proposed[0],
        "proposed_y1_px": proposed[1],
        "proposed_x2_px": proposed[2],
        "proposed_y2_px": proposed[3],
        "pixel_length_px": _num(_pixel_length(st), 2),
        "confidence": _num(st.confidence, 3),
        "calibration_source": clip.calibration_source,
        "model_name": st.model_name or "",
        "model_version": st.model_version or "",
        "reviewer": st.reviewer or "",
        "n_reviews": str(st.n_reviews),
        "seconds_spent": _num(st.seconds_spent, 1),
        "proposed_at": iso_utc(st.proposed_at),
        "reviewed_at": iso_utc(st.reviewed_at),
        "method": "",
    }
    return {k: v if k in CSV_NUMERIC_COLUMNS else neutralise_cell(v) for k, v in row.items()}


def export_csv(store: Store, clip_ids: Iterable[int] | None = None) -> str:
    """The CSV export as text (header + one row per measurement)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(store, clip_ids))
    return buf.getvalue()


# --------------------------------------------------------------------------- JSON


def export_json(store: Store, clip_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """Full history as a JSON-ready dict: clips with their proposals, reviews, current
    measurements and audit events, plus the model versions and store-wide audit events."""
    from echomeasure.store import clip_views, contours

    ids = _clip_ids(store, clip_ids)
    views = clip_views.latest_views(store, ids)
    clips = []
    for clip_id in ids:
        c = store.clip(clip_id)
        view = views.get(clip_id)
        clips.append(
            {
                "clip_id": c.id,
                "study_uid": c.study_uid,
                "series_uid": c.series_uid,
                "instance_uid": c.instance_uid,
                "kind": c.kind,
                "n_frames": c.n_frames,
                "frame_time_ms": c.frame_time_ms,
                "width_px": c.width_px,
                "height_px": c.height_px,
                "calibration_source": c.calibration_source,
                "user_cm_per_px": c.user_cm_per_px,
                # the view classifier's view and the notices given when the models ran (None: not kept)
                "view": None if view is None else {"name": view.view, "confidence": view.confidence,
                                                   "notices": list(view.notices)},
                "regions": list(c.regions),
                "pixel_sha256": c.pixel_sha256,
                "deidentification": c.deid_record,
                "created_at": iso_utc(c.created_at),
                "frames_saved": [f.frame_index for f in store.frame_images(c.id)],
                "measurements": [_state_json(st) for st in store.current_measurements(c.id)],
                "proposals": [_record_json(p) for p in store.proposals(c.id)],
                "reviews": [_record_json(r) for r in store.reviews(c.id)],
                "contour_proposals": [_record_json(r) for r in contours.contour_proposals(store, c.id)],
                "contour_reviews": [_record_json(r) for r in contours.contour_reviews(store, c.id)],
                "volumes": [_record_json(r) for r in contours.volumes(store, c.id)],
                "audit": [_record_json(a) for a in store.audit_events(c.id)],
            }
        )
    return {
        "schema": JSON_SCHEMA,
        "echomeasure_version": __version__,
        "exported_at": iso_utc(datetime.now(UTC)),
        "model_versions": [_record_json(m) for m in store.model_versions()],
        "audit": [_record_json(a) for a in store.audit_events() if a.clip_id is None],
        "clips": clips,
    }


def _state_json(st: MeasurementState) -> dict[str, Any]:
    out = _record_json(st)
    spec = catalog.get(st.measurement)
    out["loinc"] = spec.loinc
    out["ucum"] = ucum(st.unit) if st.unit else None
    return out


def _record_json(rec: Any) -> dict[str, Any]:
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, datetime):
            v = iso_utc(v)
        elif isinstance(v, tuple):
            v = [list(p) if isinstance(p, tuple) else p for p in v]
        out[f.name] = v
    return out


# --------------------------------------------------------------------------- COCO


def export_coco(store: Store, clip_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """COCO keypoints for retraining: one image per reviewed frame, one annotation each."""
    ids = _clip_ids(store, clip_ids)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for frame in store.reviews_for_training(clip_ids=ids, require_image=False):
        names = catalog.KEYPOINTS_2D if frame.kind == "2d" else catalog.DOPPLER_CHANNELS
        category_id = 1 if frame.kind == "2d" else 2
        image_id = len(images) + 1
        file_name = (
            str(frame.image_path.relative_to(store.images_dir)) if frame.image_path is not None else None
        )
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": frame.width_px,
                "height": frame.height_px,
                "clip_id": frame.clip_id,
                "frame_index": frame.frame_index,
                "study_uid": frame.study_uid,
                "instance_uid": frame.instance_uid,
                "date_captured": iso_utc(frame.reviewed_at),
            }
        )
        keypoints: list[float] = []
        visible: list[tuple[float, float]] = []
        for name in names:
            point = frame.keypoints.get(name)
            if point is None:
                keypoints += [0.0, 0.0, 0]
            else:
                keypoints += [round(point[0], 2), round(point[1], 2), 2]
                visible.append(point)
        if not visible:
            images.pop()
            continue
        xs, ys = [p[0] for p in visible], [p[1] for p in visible]
        bbox = [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "keypoints": keypoints,
                "num_keypoints": len(visible),
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 2),
                "iscrowd": 0,
                "measurements": {k: [list(p) for p in v] for k, v in frame.measurements.items()},
                "statuses": frame.statuses,
                "model_version_ids": list(frame.model_version_ids),
            }
        )
    contour_categories = _add_contour_annotations(store, ids, images, annotations)
    categories = []
    for cat in COCO_CATEGORIES:
        c: dict[str, Any] = dict(cat)
        index = {n: i + 1 for i, n in enumerate(c["keypoints"])}
        c["skeleton"] = (
            [[index[a], index[b]] for a, b in dict.fromkeys(catalog.LINEAR_ENDPOINTS.values())]
            if cat["id"] == 1
            else []
        )
        categories.append(c)
    categories += contour_categories
    return {
        "info": {
            "description": "echomeasure reviewed keypoints (synthetic or de-identified frames)",
            "version": JSON_SCHEMA,
            "date_created": iso_utc(datetime.now(UTC)),
            "file_names_relative_to": "the store's image folder",
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


#: First COCO category id of the contour structures (one category per structure name).
COCO_CONTOUR_FIRST_ID = 10
#: CAMUS label values of the apical structures in the PNG masks (0 is background).
CAMUS_LABELS = catalog.APICAL_SEG_LABELS


def _add_contour_annotations(
    store: Store, clip_ids: list[int], images: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """COCO polygon annotations of the reviewed contours (accepted, corrected, added); returns their categories.

    A frame that already has a keypoint image reuses it; others get a new image entry.
    """
    from echomeasure.contour_volumes import polygon_area_px
    from echomeasure.store.contours import current_contours
    from echomeasure.store.records import KEEPING_ACTIONS

    structures: dict[str, int] = {}
    image_ids = {(im["clip_id"], im["frame_index"]): im["id"] for im in images}
    for clip_id in clip_ids:
        states = [st for st in current_contours(store, clip_id) if st.status in KEEPING_ACTIONS]
        if not states:
            continue
        clip = store.clip(clip_id)
        frames = {f.frame_index: f for f in store.frame_images(clip_id)}
        for st in states:
            assert st.polygon is not None
            key = (clip_id, st.frame_index)
            if key not in image_ids:
                f = frames.get(st.frame_index)
                image_ids[key] = len(images) + 1
                images.append({
                    "id": image_ids[key],
                    "file_name": None if f is None else str(f.path.relative_to(store.images_dir)),
                    "width": clip.width_px, "height": clip.height_px, "clip_id": clip_id,
                    "frame_index": st.frame_index, "study_uid": clip.study_uid, "instance_uid": clip.instance_uid,
                    "date_captured": iso_utc(st.review.created_at if st.review else None),
                })
            category_id = structures.setdefault(st.structure, COCO_CONTOUR_FIRST_ID + len(structures))
            xs, ys = [p[0] for p in st.polygon], [p[1] for p in st.polygon]
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_ids[key],
                "category_id": category_id,
                "segmentation": [[round(c, 2) for p in st.polygon for c in p]],
                "bbox": [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
                "area": round(polygon_area_px(st.polygon), 2),
                "iscrowd": 0,
                "status": st.status,
                "contour_proposal_id": None if st.proposal is None else st.proposal.id,
            })
    return [{"id": cid, "name": name, "supercategory": "echo_contour", **_COCO_OUTLINE_NOTES.get(name, {})}
            for name, cid in structures.items()]


#: What a structure's COCO polygon outlines where that is not the structure's own area: the
#: myocardium is stored and reviewed as its epicardial outline, which encloses the LV cavity
#: (the PNG masks paint the LV over it, giving the CAMUS ring).
_COCO_OUTLINE_NOTES: dict[str, dict[str, Any]] = {
    "myocardium": {"outline": "epicardial", "encloses": ["lv"],
                   "note": "the polygon is the epicardial outline; the myocardium is this region minus the lv "
                           "annotation of the same image (the PNG masks' label 2)"},
}


def export_masks(
    store: Store, folder: str | os.PathLike[str], clip_ids: Iterable[int] | None = None, *, force: bool = False
) -> dict[str, Any]:
    """Per-frame PNG label masks in CAMUS values (0 background, 1 LV, 2 myocardium, 3 LA).

    One ``clip<id>_frame<index>.png`` (frame counted from 0) per frame with a current, not
    rejected LV, myocardium or LA contour (reviewed, else proposed), plus ``masks.json``
    listing each file with its clip, frame and the structures' statuses.  ``folder`` must not
    exist (or be empty); it is built beside its final name and renamed into place at the end
    (:func:`output_folder`), so an interrupted export leaves no folder.  An existing folder is
    refused unless ``force``: then the export replaces the earlier one in it, each file written
    atomically: the masks the earlier ``masks.json`` listed that this one does not (a contour
    rejected since) are removed, and nothing else in the folder is touched.
    """
    with output_folder(folder, force=force) as out:
        return _write_masks(store, out, clip_ids)


def _write_masks(store: Store, out: Path, clip_ids: Iterable[int] | None) -> dict[str, Any]:
    import cv2

    from echomeasure.contour_volumes import label_map
    from echomeasure.store.contours import current_contours

    earlier = _earlier_mask_files(out)
    manifest: list[dict[str, Any]] = []
    for clip_id in _clip_ids(store, clip_ids):
        clip = store.clip(clip_id)
        by_frame: dict[int, dict[str, Any]] = {}
        for st in current_contours(store, clip_id):
            if st.polygon is not None and st.structure in CAMUS_LABELS:
                by_frame.setdefault(st.frame_index, {})[st.structure] = st
        for frame, states in sorted(by_frame.items()):
            items = [{"frame": frame, "structure": name, "polygon": st.polygon} for name, st in states.items()]
            mask = label_map(items, frame, clip.width_px, clip.height_px)
            ok, png = cv2.imencode(".png", mask)
            if not ok:
                raise StoreError(f"could not encode the mask of clip {clip_id} frame {frame}")
            name = f"clip{clip_id}_frame{frame:04d}.png"
            atomic.write_bytes(out / name, png.tobytes(), mode=0o644)
            manifest.append({"file": name, "clip_id": clip_id, "frame_index": frame,
                             "instance_uid": clip.instance_uid,
                             "statuses": {k: v.status for k, v in states.items()}})
    summary = {"labels": {"background": 0, **CAMUS_LABELS}, "masks": manifest}
    atomic.write_text(out / "masks.json", json.dumps(summary, indent=1) + "\n", mode=0o644)
    for name in earlier - {m["file"] for m in manifest}:
        (out / name).unlink(missing_ok=True)
    return summary


#: The name of a mask file :func:`export_masks` writes.
_MASK_FILE = re.compile(r"clip\d+_frame\d{4,}\.png")


def _earlier_mask_files(folder: Path) -> set[str]:
    """The mask files an earlier :func:`export_masks` listed in ``folder``'s ``masks.json`` (only
    names of its own pattern, directly in the folder; none when there is no readable listing)."""
    try:
        listed = json.loads((folder / "masks.json").read_text(encoding="utf-8")).get("masks") or []
        names = {str(m.get("file")) for m in listed if isinstance(m, dict)}
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if _MASK_FILE.fullmatch(n) and (folder / n).is_file() and not (folder / n).is_symlink()}


# --------------------------------------------------------------------------- writing


def render(store: Store, fmt: str, clip_ids: Iterable[int] | None = None) -> str:
    """The export in ``fmt`` (csv, json or coco) as text."""
    if fmt == "csv":
        return export_csv(store, clip_ids)
    if fmt == "json":
        return json.dumps(export_json(store, clip_ids), indent=1, allow_nan=False) + "\n"
    if fmt == "coco":
        return json.dumps(export_coco(store, clip_ids), allow_nan=False) + "\n"
    raise StoreError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def _exists_message(given: str | os.PathLike[str]) -> str:
    from echomeasure.ingest.hygiene import quote_path

    return f"{quote_path(given)}: already exists; nothing was written (add --force to replace it)"


def check_output_file(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The export file ``path`` (``~`` expanded), refused when it exists unless ``force``.

    Messages name the path as given.  A folder, link, device or FIFO is refused even with
    ``force`` (:func:`echomeasure.atomic.check_output_path`); so is a missing parent folder.
    """
    from echomeasure.ingest.hygiene import quote_path

    target = Path(path).expanduser()
    if not force and os.path.lexists(target):
        raise InvalidInputError(_exists_message(path))
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(f"{quote_path(path)}: its folder does not exist; nothing was written")
    if target.is_dir() and not target.is_symlink():
        raise InvalidInputError(f"{quote_path(path)}: is a folder; give a file name")
    try:
        atomic.check_output_path(target)
    except InvalidInputError:
        raise InvalidInputError(f"{quote_path(path)}: is not a regular file (a link, device or FIFO); "
                                "give a file name") from None
    return target


def write_atomic(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (:mod:`echomeasure.atomic`); an existing ``path`` is
    refused unless ``force`` (:func:`check_output_file`)."""
    target = check_output_file(path, force=force)
    atomic.write_text(target, text, mode=0o644)
    return target


@contextmanager
def output_folder(given: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """The folder an export of many files (masks, DICOM SR) writes into; yields where to write.

    A new folder (or an existing empty one) is built as a hidden ``.NAME.*.part`` folder beside
    it and renamed into place only when the export has finished, so an interrupted or failed
    export leaves nothing under the name (the same rule as :func:`echomeasure.atomic.atomic_path`
    for one file).  An existing folder with anything in it is refused unless ``force``; with
    ``force`` the export writes into it, each file atomically.  A file, link or missing parent
    folder is refused.  Messages name the folder as given.
    """
    from echomeasure.ingest.hygiene import quote_path

    label = quote_path(given)
    out = Path(given).expanduser()
    if out.is_symlink():
        raise InvalidInputError(f"{label}: is a symbolic link; give a folder")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{label}: is a file; give a folder")
    if not out.parent.is_dir():
        raise InvalidInputError(f"{label}: its parent folder does not exist; nothing was written")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InvalidInputError(_exists_message(given))
        yield out
        return
    staging = out.parent / f".{out.name}.{secrets.token_hex(6)}.part"
    staging.mkdir()  # the mode a plain mkdir gives under the umask (mkdtemp would give 0700)
    try:
        yield staging
        try:
            os.replace(staging, out)  # also over an empty folder; refused if one appeared meanwhile
        except OSError:
            raise InvalidInputError(_exists_message(given)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic.fsync_dir(out.parent)


def export(
    store: Store,
    fmt: str = "csv",
    output: str | os.PathLike[str] | None = None,
    clip_ids: Iterable[int] | None = None,
    *,
    force: bool = False,
) -> str:
    """Render the export and write it to ``output`` atomically (returns the text).

    With ``output`` None nothing is written; the caller prints the text.  An existing ``output``
    is refused (before anything is rendered) unless ``force``.
    """
    if output is not None:
        check_output_file(output, force=force)
    text = render(store, fmt, clip_ids)
    if output is not None:
        write_atomic(output, text, force=force)
        log.info("wrote %s export to %s", fmt, output)
    return text
