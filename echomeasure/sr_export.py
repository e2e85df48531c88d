"""DICOM Structured Report export: one TID 1500 Measurement Report per study, built with highdicom.

What a PACS receives, per study, in ``DIR/<study UID>/``:

* ``sr.dcm`` - a Comprehensive SR (TID 1500 "Imaging Measurement Report"), procedure reported
  "Transthoracic echocardiography" (SCT 433236007).  One measurement group (TID 1501) per clip,
  whose source image is the clip's de-identified instance with the frame numbers measured on.
  Each measurement (TID 300) carries its LOINC code (``catalog.Measurement.loinc``, meaning from
  pydicom's ``codes.LN`` dictionary, CID 12300 where it lists the code), its value and UCUM unit,
  and the caliper endpoints as a SCOORD (POLYLINE for two endpoints, POINT for a Doppler peak)
  on the referenced frame.  A value the model made and nobody changed (``proposed``/``accepted``)
  names the algorithm (TID 4019: model name and version); a value a reviewer drew
  (``corrected``/``added``) names the reviewer as person observer (HAS OBS CONTEXT, TID 1002).
  The document-level observer is the echomeasure device.
* ``us_<instance UID>.dcm`` - the de-identified source instance each group references, rebuilt
  from the store (the gate-checked frames, regions, frame time and pseudonymous UIDs) and
  checked against the stored pixel SHA-256, so SR and image always form a consistent pair.
  The store keeps nothing identifying, so neither file can carry more: Patient ID is a keyed
  pseudonym of the study, names and dates are empty.

UIDs: the image UIDs are the store's (the keyed HMAC remap of de-identification, which maps its
own output to itself).  The SR's series UID is the same remap of the study UID; its instance UID
is the remap of the study UID and a digest of the exported content, and its content date is the
latest review time: exporting an unchanged store again gives byte-identical files, a changed
review gives a new SR instance in the same series.

Coordinates: the store keeps pixel-index points (the centre of the top-left pixel is (0, 0));
DICOM SCOORD puts the top-left corner of that pixel at (0, 0), so SR points are store + 0.5.

Values in pixels (a clip without calibration) are not allowed in the SR: those measurements are
left out and a notice names them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from echomeasure import __version__, catalog
from echomeasure.atomic import write_bytes
from echomeasure.errors import InvalidInputError, StoreError
from echomeasure.store import ClipRecord, MeasurementState, Store

if TYPE_CHECKING:
    import highdicom as hd

    from echomeasure.ingest.deid import UidRemapper

log = logging.getLogger(__name__)

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
FRAME_TIME_TAG = 0x00181063

SR_STATUSES: tuple[str, ...] = ("proposed", "accepted", "corrected", "added")
DEFAULT_SR_STATUSES: tuple[str, ...] = ("accepted", "corrected", "added")
ALGORITHM_STATUSES = ("proposed", "accepted")  # the value is the model's
HUMAN_STATUSES = ("corrected", "added")  # the value is the reviewer's

SR_FILE_NAME = "sr.dcm"
DEVICE_NAME = "echomeasure"

# Finding sites for measurements whose LOINC code does not name the site (catalog docstring).
_FINDING_SITES = {"lvot_vmax": ("13418002", "SCT", "Left ventricle outflow tract")}


@dataclass
class SrExportResult:
    """What an SR export wrote: per study the SR and the source images, plus notices."""

    reports: list[Path] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    n_measurements: int = 0

    def as_json(self) -> dict:
        return {
            "reports": [str(p) for p in self.reports],
            "sources": [str(p) for p in self.sources],
            "measurements": self.n_measurements,
            "notices": list(self.notices),
        }


@dataclass
class _ClipContent:
    clip: ClipRecord
    source: Dataset  # the rebuilt de-identified instance
    states: list[MeasurementState]
    volumes: list[Any] = field(default_factory=list)  # export.VolumeState with a LOINC code
    algorithms: dict[int, tuple[str, str]] = field(default_factory=dict)  # model_version id -> (name, version)


def parse_statuses(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"accepted,corrected"`` (or a list) as a tuple of statuses; a user error for unknown ones."""
    if spec is None:
        return DEFAULT_SR_STATUSES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    bad = [s for s in wanted if s not in SR_STATUSES]
    if bad or not wanted:
        raise InvalidInputError(
            f"--status {bad[0] if bad else '(empty)'} cannot be exported as SR; use some of {','.join(SR_STATUSES)}"
        )
    return wanted


# --------------------------------------------------------------------------- codes


@functools.cache
def _ln_meanings() -> dict[str, str]:
    from pydicom.sr._concepts_dict import concepts

    out: dict[str, str] = {}
    for entry in concepts["LN"].values():
        for code, (meaning, _cids) in entry.items():  # type: ignore[attr-defined]
            out.setdefault(code, meaning)
    return out


def measurement_code(name: str):
    """The LOINC ``Code`` of a catalogue measurement (meaning from pydicom's LN dictionary)."""
    from pydicom.sr.coding import Code

    spec = catalog.get(name)
    if not spec.loinc:
        raise StoreError(f"{name} has no LOINC code in the catalogue; it cannot go into an SR")
    return Code(spec.loinc, "LN", _ln_meanings().get(spec.loinc, spec.title))


def unit_code(ucum: str):
    """The UCUM ``Code`` of a catalogue unit (``cm``, ``m/s``, ``{ratio}``)."""
    from pydicom.sr.coding import Code

    meanings = {"cm": "centimeter", "m/s": "meter per second", "{ratio}": "ratio", "ml": "milliliter", "%": "percent"}
    return Code(ucum, "UCUM", meanings.get(ucum, ucum))


# --------------------------------------------------------------------------- source image


def _stored_frames(store: Store, clip: ClipRecord) -> np.ndarray:
    """Every frame of the clip from the image store, checked against the gate's pixel SHA-256."""
    saved = {f.frame_index for f in store.frame_images(clip.id)}
    missing = [i for i in range(clip.n_frames) if i not in saved]
    if missing:
        raise StoreError(f"clip {clip.id}: {len(missing)} of its {clip.n_frames} frames are not in the image store")
    frames = np.stack([store.frame(clip.id, i) for i in range(clip.n_frames)])
    if hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest() != clip.pixel_sha256:
        raise StoreError(f"clip {clip.id}: the stored frames do not match the de-identified pixels' hash")
    return frames


def _set_deidentification(ds: Dataset, clip: ClipRecord) -> None:
    """The de-identification attributes: method, the CID 7050 options recorded at ingest, burned-in text."""
    from pydicom.sequence import Sequence as DicomSequence

    from echomeasure.ingest.deid import CID_7050

    ds.PatientIdentityRemoved = "YES"
    record = clip.deid_record or {}
    method = f"echomeasure {__version__}; rebuilt from the review store"
    ds.DeidentificationMethod = method[:64]
    recorded = [c.get("value") if isinstance(c, dict) else c for c in record.get("cid7050_codes", []) or []]
    items = []
    for c in [c for c in recorded if c in CID_7050] or ["113100"]:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = c, "DCM", CID_7050[c]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    burned = ((record.get("pixels") or {}).get("burned_in_annotation_output")) if isinstance(record, dict) else None
    if burned in ("YES", "NO"):
        ds.BurnedInAnnotation = burned


def source_dataset(store: Store, clip: ClipRecord, *, secret: bytes) -> Dataset:
    """The clip's de-identified instance rebuilt from the store (frames, regions, UIDs).

    Raises
    ------
    StoreError
        Frames of the clip are missing from the image store, or the frames read back do not
        hash to the pixel SHA-256 the gate recorded.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from echomeasure.ingest.deid import patient_pseudonym, set_rgb_pixels

    frames = _stored_frames(store, clip)
    n = frames.shape[0]
    sop_class = US_MULTIFRAME_IMAGE_STORAGE if n > 1 else US_IMAGE_STORAGE
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = clip.instance_uid
    ds.StudyInstanceUID = clip.study_uid
    ds.SeriesInstanceUID = clip.series_uid
    ds.PatientName = ""
    ds.PatientID = patient_pseudonym(secret, f"echomeasure-study|{clip.study_uid}")
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.Modality = "US"
    ds.BodyPartExamined = "HEART"  # unpaired: no Laterality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = ""
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    if n > 1:
        ds.FrameIncrementPointer = FRAME_TIME_TAG
        ds.FrameTime = f"{clip.frame_time_ms or 33.3:.4g}"
    if clip.regions:
        ds.SequenceOfUltrasoundRegions = DicomSequence([r.to_dicom_item() for r in clip.region_objects])
    _set_deidentification(ds, clip)
    set_rgb_pixels(ds, frames)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(clip.instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ECHOMEASURE{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


# --------------------------------------------------------------------------- the report


def _frames(source: Dataset, frame_indices: Iterable[int]) -> list[int] | None:
    """DICOM frame numbers (1-based) of ``source``; None for a single-frame instance, whose
    references must not carry frame numbers."""
    if "NumberOfFrames" not in source:
        return None
    return sorted({int(i) + 1 for i in frame_indices}) or None


def _measurement_item(st: MeasurementState, source: Dataset) -> hd.sr.Measurement:
    import highdicom as hd
    from pydicom.sr.coding import Code

    spec = catalog.get(st.measurement)
    sop_class, sop_uid = str(source.SOPClassUID), str(source.SOPInstanceUID)
    coordinates = None
    if st.points and st.frame_index is not None:
        graphic = np.asarray(st.points, dtype=float) + 0.5
        frame = hd.sr.SourceImageForRegion(sop_class, sop_uid, referenced_frame_numbers=_frames(source, [st.frame_index]))
        coordinates = [
            hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE if len(graphic) > 1 else hd.sr.GraphicTypeValues.POINT,
                graphic_data=graphic,
                source_image=frame,
            )
        ]
    algorithm = None
    if st.status in ALGORITHM_STATUSES and st.model_name:
        algorithm = hd.sr.AlgorithmIdentification(name=st.model_name, version=st.model_version or "unknown")
    sites = None
    if st.measurement in _FINDING_SITES:
        sites = [hd.sr.FindingSite(Code(*_FINDING_SITES[st.measurement]))]
    item = hd.sr.Measurement(
        name=measurement_code(st.measurement),
        value=float(st.value),  # type: ignore[arg-type]  # only states with a value are exported
        unit=unit_code(spec.ucum),
        algorithm_id=algorithm,
        finding_sites=sites,
        referenced_coordinates=coordinates,
    )
    if st.status in HUMAN_STATUSES and st.reviewer:
        _add_person_observer(item, st.reviewer)
    return item


def _volume_item(vs: Any, source: Dataset, algorithms: dict[int, tuple[str, str]]) -> hd.sr.Measurement:
    """A segmentation-derived volume, EF or length (an :class:`echomeasure.export.VolumeState`):
    its method is in its LOINC code (CID 12300).  The model's figure (proposed, or its contours
    accepted unchanged) names the algorithm; a figure of corrected contours names the reviewer."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    v = vs.record
    code = catalog.volume_loinc(v.measurement, v.method)
    assert code is not None, "only volumes with a LOINC code are exported"
    algorithm = None
    if vs.status in ALGORITHM_STATUSES:
        name, version = algorithms.get(v.model_version_id or -1, ("echomeasure", "unknown"))
        algorithm = hd.sr.AlgorithmIdentification(name=name, version=version)
    item = hd.sr.Measurement(
        name=Code(code, "LN", _ln_meanings().get(code, v.measurement)),
        value=float(vs.value),
        unit=unit_code(v.unit),
        algorithm_id=algorithm,
    )
    if vs.status in HUMAN_STATUSES and vs.reviewer:
        _add_person_observer(item, vs.reviewer)
    return item


def _add_person_observer(item: hd.sr.Measurement, reviewer: str) -> None:
    """The reviewer as the measurement's person observer (TID 1002, HAS OBS CONTEXT)."""
    import highdicom as hd

    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=person_name(reviewer)),
    )
    # Observation context items come first among the children they apply to.
    children = list(item[0].ContentSequence) if "ContentSequence" in item[0] else []
    item[0].ContentSequence = [*observer, *children]


#: Most characters of a PN component group (DICOM PS3.5 6.2).
PN_GROUP_CHARS = 64


def person_name(reviewer: str) -> str:
    """The reviewer as a DICOM PN of one value and one component group.

    A name without ``^`` becomes the family-name component.  The PN delimiters a typed name may
    hold become spaces: ``\\`` (it made the name two values) and ``=`` (it moved the name into
    the ideographic group), as do ``^`` beyond the five components; the group is cut to its 64
    characters (a longer value is invalid DICOM).
    """
    text = " ".join(reviewer.replace("\\", " ").replace("=", " ").split())
    if text.count("^") > 4:
        text = " ".join(text.replace("^", " ").split())
    if "^" not in text:
        text = text[: PN_GROUP_CHARS - 1].rstrip() + "^"
    text = text[:PN_GROUP_CHARS]
    return text if text.strip("^ ") else "reviewer^"


def _group(content: _ClipContent, remap: UidRemapper) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    import highdicom as hd

    clip, source = content.clip, content.source
    frames = _frames(source, [st.frame_index for st in content.states if st.frame_index is not None])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=remap(f"echomeasure-tracking|{clip.instance_uid}"), identifier=f"clip {clip.id}"
        ),
        measurements=[_measurement_item(st, source) for st in content.states]
        + [_volume_item(v, source, content.algorithms) for v in content.volumes],
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                str(source.SOPClassUID), str(source.SOPInstanceUID), referenced_frame_numbers=frames
            )
        ],
    )


def _content_digest(contents: Sequence[_ClipContent]) -> str:
    payload = [
        {
            "clip": c.clip.instance_uid,
            "pixels": c.clip.pixel_sha256,
            "m": [
                [st.measurement, st.status, st.frame_index, st.value, st.unit, st.points, st.reviewer,
                 st.model_name, st.model_version]
                for st in c.states
            ],
            "v": [[v.record.measurement, v.record.method, v.status, v.value, v.record.unit, v.record.model_version_id,
                   v.reviewer] for v in c.volumes],
        }
        for c in contents
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _content_time(contents: Sequence[_ClipContent]) -> datetime:
    stamps = [t for c in contents for st in c.states for t in (st.reviewed_at, st.proposed_at) if t is not None]
    stamps += [v.reviewed_at for c in contents for v in c.volumes if v.reviewed_at is not None]
    return max(stamps) if stamps else datetime(1970, 1, 1, tzinfo=UTC)


def build_report(contents: Sequence[_ClipContent], *, secret: bytes) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR (highdicom ``ComprehensiveSR``) of one study's clips."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from echomeasure.ingest.deid import UidRemapper

    remap = UidRemapper(secret)
    study_uid = contents[0].clip.study_uid
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=remap(f"echomeasure-device|{DEVICE_NAME}"), name=DEVICE_NAME, model_name=f"echomeasure {__version__}"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.TransthoracicEchocardiography,
        imaging_measurements=[_group(c, remap) for c in contents],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[c.source for c in contents],
        content=report,
        series_instance_uid=remap(f"echomeasure-sr-series|{study_uid}"),
        series_number=900,
        sop_instance_uid=remap(f"echomeasure-sr|{study_uid}|{_content_digest(contents)}"),
        instance_number=1,
        manufacturer="echomeasure",
        series_description="echomeasure measurements",
    )
    when = _content_time(contents)
    sr.ContentDate, sr.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")  # type: ignore[assignment]
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime"):
        if kw in sr:
            setattr(sr, kw, when.strftime("%Y%m%d") if kw.endswith("Date") else when.strftime("%H%M%S"))
    for item in sr.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    _declare_character_set(sr)
    return sr


def _declare_character_set(ds: Dataset) -> None:
    """UTF-8 (``ISO_IR 192``) as the Specific Character Set when any text is beyond ASCII (a
    reviewer named Müller): without it the default repertoire is ASCII, and the names were
    written as Latin-1 bytes that dciodvfy rejects and readers decode at will."""
    for elem in ds.iterall():
        values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
        if any(not str(v).isascii() for v in values if isinstance(v, str) or type(v).__name__ == "PersonName"):
            ds.SpecificCharacterSet = "ISO_IR 192"
            return


# --------------------------------------------------------------------------- export


def _clip_states(store: Store, clip: ClipRecord, reader: str | None, notices: list[str]) -> list[MeasurementState]:
    """The measurements to report: the clip's current ones, or one reader's on a reader-study clip.

    On a clip read by several readers the latest review is whichever reader saved last, which
    is no one's report: such a clip is exported only for a named reader.
    """
    from echomeasure.store import readers

    if not readers.has_readers(store, clip.id):
        return store.current_measurements(clip.id)
    if reader is None:
        notices.append(f"clip {clip.id} is a reader-study clip: left out; export one reader's reads with --reader NAME")
        return []
    if reader not in {a.reader for a in readers.assignments(store, clip_id=clip.id)}:
        notices.append(f"clip {clip.id}: not assigned to the reader given; left out")
        return []
    return list(readers.reader_view(store, clip.id, reader).measurements)


def _study_contents(
    store: Store,
    clips: Sequence[ClipRecord],
    statuses: Sequence[str],
    secret: bytes,
    notices: list[str],
    reader: str | None = None,
) -> list[_ClipContent]:
    out = []
    for clip in clips:
        states = [st for st in _clip_states(store, clip, reader, notices) if st.status in statuses]
        in_pixels = [st.measurement for st in states if st.unit == "px"]
        if in_pixels:
            notices.append(
                f"clip {clip.id}: {', '.join(in_pixels)} left out of the SR: values in pixels "
                "(the clip has no calibration; calibrate it to export them)"
            )
        kept = [st for st in states if st.value is not None and st.unit != "px" and catalog.get(st.measurement).loinc]
        vols = _exportable_volumes(store, clip, statuses, reader, notices)
        if not kept and not vols:
            if states and not in_pixels:
                notices.append(f"clip {clip.id}: nothing with a value to export")
            continue
        try:
            source = source_dataset(store, clip, secret=secret)
        except StoreError as exc:
            prefix = "" if str(exc).startswith(f"clip {clip.id}:") else f"clip {clip.id}: "
            notices.append(f"{prefix}{exc}; its measurements are left out of the SR")
            continue
        algorithms = {m.id: (m.name, m.version) for m in store.model_versions()} if vols else {}
        out.append(_ClipContent(clip, source, kept, vols, algorithms))
    return out


def _exportable_volumes(
    store: Store, clip: ClipRecord, statuses: Sequence[str], reader: str | None, notices: list[str]
) -> list[Any]:
    """The clip's segmentation-derived values that can go into an SR, as the CSV gives them
    (:func:`echomeasure.export.volume_states`).

    The single-plane EDV, ESV and EF of reviewed ED/ES contours have the review's status
    (accepted or corrected) and figures; every other volume is the model's proposal.  Those whose
    status is among ``statuses`` are exported, never on a reader-study clip (its contours are not
    reviewed there), and only those with a value in ml/%/cm and a LOINC code for their method (a
    notice names the others).
    """
    from echomeasure.export import volume_states
    from echomeasure.store import readers

    if readers.has_readers(store, clip.id):
        return []
    out, uncoded = [], []
    for vs in volume_states(store, clip):
        v = vs.record
        if vs.status not in statuses or vs.value is None or v.unit == "px":
            continue
        if catalog.volume_loinc(v.measurement, v.method) is None:
            uncoded.append(f"{v.measurement} ({v.method})")
            continue
        out.append(vs)
    if uncoded:
        notices.append(f"clip {clip.id}: {', '.join(uncoded)} left out of the SR: no LOINC code for that method")
    return out


def _dicom_bytes(ds) -> bytes:
    import pydicom

    buf = BytesIO()
    ds.preamble = b"\x00" * 128
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def export_dicom_sr(
    store: Store,
    outdir: str | os.PathLike[str],
    *,
    secret: bytes,
    clip_ids: Iterable[int] | None = None,
    statuses: Sequence[str] | str | None = None,
    reader: str | None = None,
    force: bool = False,
) -> SrExportResult:
    """Write one SR per study (plus the de-identified source instances) under ``outdir``.

    Parameters
    ----------
    store
        The review store.
    outdir
        Output folder (created if its parent exists); one sub-folder per study UID.  A new
        folder appears only once complete (:func:`echomeasure.export.output_folder`); an
        existing one that holds anything is refused unless ``force``.
    secret
        Site secret of the keyed UID remap (``config.secret()``), the one used at ingest.
    clip_ids
        Export only these clips (default: all).
    statuses
        Measurement statuses to export (default accepted, corrected, added; ``proposed`` exports
        pre-annotations).
    reader
        On clips assigned to readers (:mod:`echomeasure.store.readers`), export this reader's
        reads; without it such clips are left out with a notice.
    force
        Write into an existing, non-empty ``outdir`` (each file replaced atomically; files of
        other studies already there are left as they are).

    Raises
    ------
    InvalidInputError
        Unknown status, or an output folder that cannot be made.
    StoreError
        Unknown clip id.
    """
    from echomeasure.export import _clip_ids, output_folder

    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise InvalidInputError("the DICOM SR export needs highdicom: pip install 'echomeasure[reports]'") from None
    wanted = parse_statuses(statuses)
    ids = _clip_ids(store, clip_ids)
    with output_folder(outdir, force=force) as staging:
        result = _write_reports(store, staging, ids, wanted, secret, reader)
    final = Path(outdir).expanduser()
    # the paths under the folder's final name (it was built under a temporary one)
    result.sources = [final / p.relative_to(staging) for p in result.sources]
    result.reports = [final / p.relative_to(staging) for p in result.reports]
    return result


def _write_reports(store: Store, out: Path, ids: list[int], wanted: tuple[str, ...], secret: bytes,
                   reader: str | None) -> SrExportResult:
    """Write the SR export of the clips ``ids`` into the folder ``out`` (which exists)."""
    by_study: dict[str, list[ClipRecord]] = {}
    for cid in ids:
        clip = store.clip(cid)
        by_study.setdefault(clip.study_uid, []).append(clip)

    result = SrExportResult()
    for study_uid, clips in by_study.items():
        contents = _study_contents(store, clips, wanted, secret, result.notices, reader)
        if not contents:
            continue
        sr = build_report(contents, secret=secret)
        folder = out / study_uid
        folder.mkdir(exist_ok=True)
        # Sources first: an SR is only ever written beside the images it references.
        for c in contents:
            path = folder / f"us_{c.clip.instance_uid}.dcm"
            write_bytes(path, _dicom_bytes(c.source))
            result.sources.append(path)
        path = folder / SR_FILE_NAME
        write_bytes(path, _dicom_bytes(sr))
        result.reports.append(path)
        result.n_measurements += sum(len(c.states) + len(c.volumes) for c in contents)
        log.info("wrote SR of study …%s (%d clips)", study_uid[-6:], len(contents))
    if not result.reports:
        result.notices.append(f"no measurement with status {','.join(wanted)} and a physical value to export")
    return result


def content_tree(sr) -> str:
    """A compact, indented outline of an SR's content tree (relationship, type, concept: value)."""
    lines: list[str] = []

    def value_of(item) -> str:
        vt = item.ValueType
        if vt == "NUM":
            mv = item.MeasuredValueSequence[0]
            return f"{mv.NumericValue} [{mv.MeasurementUnitsCodeSequence[0].CodeValue}]"
        if vt == "CODE":
            c = item.ConceptCodeSequence[0]
            return f"{c.CodeMeaning} ({c.CodeValue}, {c.CodingSchemeDesignator})"
        if vt in ("TEXT", "UIDREF", "PNAME", "DATETIME"):
            return str(item.get("TextValue", item.get("UID", item.get("PersonName", item.get("DateTime", "")))))
        if vt == "SCOORD":
            return f"{item.GraphicType} {[round(float(v), 2) for v in item.GraphicData]}"
        if vt == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            frames = ref.get("ReferencedFrameNumber")
            return f"…{str(ref.ReferencedSOPInstanceUID)[-8:]}" + (f" frames {frames}" if frames is not None else "")
        return ""

    def walk(item, depth: int) -> None:
        name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
        code = f"{name.CodeMeaning} ({name.CodeValue}, {name.CodingSchemeDesignator})" if name is not None else ""
        rel = item.get("RelationshipType", "ROOT")
        value = value_of(item)
        lines.append(f"{'  ' * depth}{rel} {item.ValueType} {code}{': ' + value if value else ''}")
        for child in item.get("ContentSequence", []):
            walk(child, depth + 1)

    walk(sr, 0)
    return "\n".join(lines)
