"""The de-identification gate: an independent re-check of every output, and the only maker of
:class:`DeidentifiedClip`.

The gate does not trust the de-identifier.  Before de-identification it collects, from the
*original*, every value that could identify someone (:func:`collect_dicom_identifiers`,
:func:`collect_container_identifiers`); afterwards it re-reads the output *bytes* and refuses
them if any of these remain:

* DICOM: a non-zero 128-byte preamble; any private attribute (nested sequences included); any
  original identifying string (length >= 3), original UID or original date anywhere in the bytes
  outside the pixel data value; a missing PatientIdentityRemoved=YES / CID 7050 basic code;
* videos and stills: any metadata key other than what muxers write themselves; any original
  metadata value in the parsed metadata, or (length >= 6) anywhere in the file bytes.

Numeric identifiers and UIDs only match as whole numbers (not inside a longer digit run), so a
study ID "1234" does not match inside a random ``2.25`` UID.  Pixel data is not searched for text:
it was produced from decoded arrays and holds image samples, not strings (burned-in text is
handled by pixel masking and recorded for human confirmation).

Only :func:`admit_dicom` / :func:`admit_frames` construct a :class:`DeidentifiedClip`; its
constructor refuses any caller that does not hold this module's private token.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from echomeasure.errors import DeidentificationError
from echomeasure.ingest.clip import Clip
from echomeasure.ingest.profile import annex_e, row_for

_GATE_TOKEN = object()

MIN_IDENTIFIER_LEN = 3
MIN_BYTE_SEARCH_LEN_CONTAINER = 6
# Values the de-identifier itself writes; an original equal to one of these is not a leak signal.
_WRITER_CONSTANTS = frozenset({
    "YES", "NO", "RGB", "MODIFIED", "REMOVED", "DCM", "ANONYMIZED", "ANONYMOUS", "UNKNOWN", "NONE",
    "19000101", "000000", "MONOCHROME2", "ISO_IR 100", "ISO_IR 192",
})
_REGISTERED_ROOT = "1.2.840.10008."
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
# Elements whose values describe software, not people.
_NOT_IDENTIFYING_META = {0x00020012, 0x00020013, 0x00020010, 0x00020002, 0x00020001}


@dataclass
class OriginalIdentifiers:
    """What the gate must not find again: ``{value: label}`` maps (labels name the element only)."""

    strings: dict[str, str] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.strings) + len(self.uids) + len(self.dates)


def _label(elem: pydicom.dataelem.DataElement) -> str:
    kw = elem.keyword or ("private" if elem.tag.is_private else "element")
    return f"({elem.tag.group:04X},{elem.tag.element:04X}) {kw}"


def _add_string(ids: OriginalIdentifiers, value: str, label: str) -> None:
    v = value.strip().strip("\x00").strip()
    if len(v) < MIN_IDENTIFIER_LEN or v.upper() in _WRITER_CONSTANTS:
        return
    if not any(ch.isalnum() for ch in v):
        return
    ids.strings.setdefault(v, label)
    if "^" in v or "=" in v:  # person names: each component on its own
        for part in re.split(r"[\^=]", v):
            part = part.strip()
            # A short all-digit component ("0001" in "DOE^JOHN^0001") identifies nobody on its
            # own and collides with legitimate coded values (ImageType "0001" = 2D imaging);
            # the whole name is still searched for.
            if part.isdigit() and len(part) < MIN_BYTE_SEARCH_LEN_CONTAINER:
                continue
            if len(part) >= MIN_IDENTIFIER_LEN and part.upper() not in _WRITER_CONSTANTS:
                ids.strings.setdefault(part, label)


def _printable_runs(data: bytes, min_len: int = 6) -> list[str]:
    return [m.decode("latin-1") for m in re.findall(rb"[\x20-\x7e]{%d,}" % min_len, data)]


def _values(elem: pydicom.dataelem.DataElement) -> list:
    v = elem.value
    if v is None:
        return []
    if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
        return list(v)
    return [v]


def collect_dicom_identifiers(ds: Dataset, *, secret: bytes | None = None) -> OriginalIdentifiers:
    """Collect identifying values from an original dataset (all levels, file meta included).

    Identifying: every element the Annex E table does not keep (X, Z, D, C, U rows), person
    names anywhere, free text not in the table, private attributes (their strings and printable
    runs), non-registered UIDs and every date.

    With ``secret``, values that verifiably came from a previous echomeasure de-identification
    under the same secret are not identifiers: UIDs whose embedded MAC verifies, a verified
    Patient ID pseudonym, and the (already shifted) dates of a verified de-identified object.
    This is what makes re-de-identifying an output possible (idempotence).
    """
    from echomeasure.ingest.deid import UidRemapper, _is_pseudonym, already_deidentified

    ids = OriginalIdentifiers()
    annex_e()  # fail early if the table is missing
    remap = UidRemapper(secret) if secret else None
    prior = bool(secret) and already_deidentified(ds, secret)  # type: ignore[arg-type]

    def visit(d: Dataset) -> None:
        for elem in d:
            tag = int(elem.tag)
            if tag in _NOT_IDENTIFYING_META or tag == 0x7FE00010:
                continue
            vr = elem.VR
            if vr == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            label = _label(elem)
            if vr == "UI":
                for u in _values(elem):
                    u = str(u).strip().rstrip("\x00")
                    if u and not u.startswith(_REGISTERED_ROOT) and not (remap and remap.is_remapped(u)):
                        ids.uids.setdefault(u, label)
                continue
            if vr == "TM" or tag == 0x00080201:
                continue  # a time of day (or a UTC offset) without its date does not identify
            if vr in ("DA", "DT"):
                if prior:
                    continue
                for v in _values(elem):
                    s = str(v).strip()
                    if len(s) >= 8 and s[:8].isdigit() and s[:8] not in _WRITER_CONSTANTS:
                        ids.dates.setdefault(s[:8], label)
                continue
            if elem.tag.is_private:
                for v in _values(elem):
                    if isinstance(v, bytes):
                        for run in _printable_runs(v):
                            _add_string(ids, run, label)
                    elif isinstance(v, str) or hasattr(v, "original_string"):
                        _add_string(ids, str(v), label)
                continue
            row = row_for(tag)
            identifying = (
                (row is not None and row["basic"] != "K")
                or vr == "PN"
                or (row is None and vr in ("LT", "ST", "UT"))
            )
            if not identifying:
                continue
            if tag == 0x00100020 and secret and _is_pseudonym(secret, str(elem.value or "")):
                continue
            for v in _values(elem):
                if isinstance(v, bytes):
                    for run in _printable_runs(v):
                        _add_string(ids, run, label)
                elif isinstance(v, (str, pydicom.valuerep.PersonName)):
                    _add_string(ids, str(v), label)

    visit(ds)
    if hasattr(ds, "file_meta"):
        visit(ds.file_meta)
    return ids


def collect_container_identifiers(metadata: dict[str, str]) -> OriginalIdentifiers:
    """Identifying values of a video/image container: every non-technical metadata value."""
    from echomeasure.ingest.video_io import TECHNICAL_METADATA_KEYS

    ids = OriginalIdentifiers()
    for scoped_key, value in metadata.items():
        key = scoped_key.split(":", 1)[-1].lower()
        if key in TECHNICAL_METADATA_KEYS:
            continue
        _add_string(ids, value, f"metadata {scoped_key}")
        if key in ("creation_time", "date"):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 8:
                ids.dates.setdefault(digits[:8], f"metadata {scoped_key}")
    return ids


# --------------------------------------------------------------------------- searching


def _encodings(value: str) -> list[bytes]:
    out = [value.encode("utf-8", "ignore")]
    try:
        latin = value.encode("latin-1")
        if latin not in out:
            out.append(latin)
    except UnicodeEncodeError:
        pass
    return [b for b in out if b]


def _find_leaks(ids: OriginalIdentifiers, haystack: bytes, *, min_len: int = MIN_IDENTIFIER_LEN) -> list[str]:
    """Labels of identifiers found in ``haystack`` (case-sensitive; numbers and UIDs as whole numbers)."""
    leaks: list[str] = []
    for table, numeric in ((ids.strings, None), (ids.uids, True), (ids.dates, True)):
        for value, label in table.items():
            if len(value) < min_len:
                continue
            whole = numeric if numeric is not None else bool(re.fullmatch(r"[0-9.]+", value))
            for enc in _encodings(value):
                if whole:
                    hit = re.search(rb"(?<![0-9.])" + re.escape(enc) + rb"(?![0-9])", haystack) is not None
                else:
                    hit = enc in haystack
                if hit:
                    leaks.append(label)
                    break
    return leaks


def _text_values(ds: Dataset) -> bytes:
    """Every string value of a parsed dataset (nested items and file meta too), NUL-separated."""
    parts: list[str] = []

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.tag == 0x7FE00010:
                continue
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
            elif elem.VR in _TEXT_VRS:
                parts.extend(str(v) for v in _values(elem))
            elif isinstance(elem.value, bytes):
                parts.extend(_printable_runs(elem.value, 3))

    visit(ds)
    visit(ds.file_meta)
    return "\x00".join(parts).encode("utf-8", "ignore")


def _mask_marks(ds: Dataset, header: bytes) -> bytes:
    """Blank the de-identification marks the gate has validated, so their fixed wording
    ("Basic Application Confidentiality Profile", ...) cannot collide with an original value."""
    from echomeasure.ingest.deid import CID_7050, METHOD_MARKER

    texts: list[str] = []
    method = str(ds.get("DeidentificationMethod", ""))
    if method.startswith(METHOD_MARKER):
        texts.append(method)
    for item in ds.get("DeidentificationMethodCodeSequence", []):
        code, meaning = str(item.get("CodeValue", "")), str(item.get("CodeMeaning", ""))
        if CID_7050.get(code) == meaning:
            texts.append(meaning)
    version = str(ds.file_meta.get("ImplementationVersionName", ""))
    if version.startswith("ECHOMEASURE"):
        texts.append(version)
    for t in texts:
        b = t.encode("ascii", "ignore")
        if b:
            header = header.replace(b, b" " * len(b))
    return header


# --------------------------------------------------------------------------- DICOM checks


@dataclass(frozen=True)
class GateReport:
    """What the gate checked on one output (all passed, or the output was refused)."""

    checks: tuple[str, ...]
    identifiers_checked: int

    def as_dict(self) -> dict:
        return {"passed": True, "checks": list(self.checks), "identifiers_checked": self.identifiers_checked}


def _refuse(reason: str) -> DeidentificationError:
    return DeidentificationError(f"de-identification gate refused the output: {reason}; nothing was written")


def check_dicom_bytes(original: OriginalIdentifiers, data: bytes) -> tuple[GateReport, Dataset, tuple[int, int] | None]:
    """Re-read a de-identified DICOM from its bytes and refuse it if anything identifying remains.

    Returns the report, the parsed dataset (pixel value deferred) and the (offset, length) of
    the native pixel data value in ``data`` (None when absent).  Raises
    :class:`DeidentificationError` on any failed check.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _refuse("the output is not a DICOM file with a preamble")
    if any(data[:128]):
        raise _refuse("the 128-byte preamble is not zeroed")
    fp = BytesIO(data)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a refusal
        raise _refuse(f"the output cannot be parsed ({type(exc).__name__})") from exc
    pixel_span = None
    start = fp.tell()
    if start < len(data):
        if data[start : start + 4] != b"\xe0\x7f\x10\x00" or data[start + 4 : start + 6] not in (b"OB", b"OW"):
            raise _refuse("unexpected data where the pixel data should start")
        length = int.from_bytes(data[start + 8 : start + 12], "little")
        if length == 0xFFFFFFFF or start + 12 + length != len(data):
            raise _refuse("the pixel data is not native or is followed by further elements")
        pixel_span = (start + 12, length)

    def walk(d: Dataset) -> None:
        for tag in list(d.keys()):
            if tag.is_private:
                raise _refuse(f"private attribute ({tag.group:04X},{tag.element:04X}) remains")
            if tag == 0x7FE00010:
                continue
            elem = d[tag]
            if elem.VR == "SQ":
                for item in elem.value or []:
                    walk(item)

    walk(ds)
    walk(ds.file_meta)
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise _refuse("PatientIdentityRemoved is not YES")
    codes = {str(it.get("CodeValue", "")) for it in ds.get("DeidentificationMethodCodeSequence", [])}
    if "113100" not in codes:
        raise _refuse("the CID 7050 basic profile code 113100 is missing")
    header = data if pixel_span is None else data[: pixel_span[0]]
    # Parsed text values at every level: all identifiers; raw bytes outside the pixel data: the
    # longer ones (short numbers collide with binary fields by chance).
    leaks = _find_leaks(original, _mask_marks(ds, _text_values(ds)))
    leaks += _find_leaks(original, _mask_marks(ds, header), min_len=MIN_BYTE_SEARCH_LEN_CONTAINER)
    if leaks:
        raise _refuse(f"original identifying values remain in {', '.join(sorted(set(leaks))[:5])}")
    return (
        GateReport(
            checks=("preamble zeroed", "no private attributes", "PatientIdentityRemoved=YES and CID 7050 codes",
                    "no original identifying value, UID or date outside the pixel data"),
            identifiers_checked=len(original),
        ),
        ds,
        pixel_span,
    )


def check_container_bytes(original: OriginalIdentifiers, data: bytes, kind: str) -> GateReport:
    """Refuse a de-identified video/still whose metadata or bytes still carry original values."""
    from echomeasure.ingest.video_io import TECHNICAL_METADATA_KEYS, container_metadata, image_metadata

    meta = image_metadata(data) if kind == "image" else container_metadata(data)
    extra = sorted(k for k in meta if k.split(":", 1)[-1].lower() not in TECHNICAL_METADATA_KEYS)
    if extra:
        raise _refuse(f"metadata remains ({', '.join(extra[:5])})")
    meta_text = "\n".join(meta.values()).encode("utf-8", "ignore")
    leaks = _find_leaks(original, meta_text)
    leaks += _find_leaks(original, data, min_len=MIN_BYTE_SEARCH_LEN_CONTAINER)
    if leaks:
        raise _refuse(f"original identifying values remain in {', '.join(sorted(set(leaks))[:5])}")
    return GateReport(
        checks=("new container, no metadata but what the muxer writes",
                "no original metadata value in the metadata or the file bytes"),
        identifiers_checked=len(original),
    )


# --------------------------------------------------------------------------- the gated type


class DeidentifiedClip:
    """A clip whose source passed the de-identification gate.  Only the gate constructs these.

    Attributes
    ----------
    clip : Clip
        De-identified frames (read-only array) with regions and frame time.
    study_uid, series_uid, instance_uid : str
        Pseudonymous UIDs (``2.25.``); for videos/stills they are derived from the pixels.
    pixel_sha256 : str
        Hex SHA-256 of the de-identified frame bytes.
    deid_record : dict
        JSON-serialisable record: profile, options, CID 7050 codes, pixel actions, gate checks.
    display_name : str
        Pseudonymous name to show (never the original file name).
    """

    __slots__ = ("clip", "study_uid", "series_uid", "instance_uid", "pixel_sha256", "deid_record", "display_name")

    def __init__(self, *, _token: object, clip: Clip, study_uid: str, series_uid: str, instance_uid: str,
                 pixel_sha256: str, deid_record: dict, display_name: str) -> None:
        if _token is not _GATE_TOKEN:
            raise TypeError("DeidentifiedClip is produced only by the de-identification gate (echomeasure.ingest.load)")
        self.clip = clip
        self.study_uid = study_uid
        self.series_uid = series_uid
        self.instance_uid = instance_uid
        self.pixel_sha256 = pixel_sha256
        self.deid_record = deid_record
        self.display_name = display_name

    @property
    def kind(self) -> str:
        """"2d" or "doppler" (a spectral region makes it Doppler)."""
        return self.clip.kind

    @property
    def frame_time_ms(self) -> float | None:
        """Time between frames in ms (None for stills)."""
        return self.clip.frame_time_ms

    @property
    def n_frames(self) -> int:
        return self.clip.n_frames

    def __repr__(self) -> str:
        return (f"DeidentifiedClip({self.display_name!r}, kind={self.kind}, frames={self.clip.n_frames}, "
                f"{self.clip.width}x{self.clip.height})")


def _sha256(buf: memoryview | bytes | np.ndarray) -> str:
    return hashlib.sha256(buf).hexdigest()


def admit_dicom(original: OriginalIdentifiers, data: bytes, record: dict, *, user_cm_per_px: float | None = None) -> DeidentifiedClip:
    """Gate a de-identified DICOM (bytes) and build the clip from what passed.

    The frames are a read-only view of the pixel data inside ``data``: what passed the gate is
    exactly what is handed on, with no second decode and no copy.
    """
    from echomeasure.ingest.dicom_io import frame_time_ms, regions_from_dataset

    report, ds, span = check_dicom_bytes(original, data)
    if span is None:
        raise _refuse("the pixel data is missing or not native")
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    start, length = span
    if length < n * rows * cols * 3 or int(ds.SamplesPerPixel) != 3 or int(ds.BitsAllocated) != 8:
        raise _refuse("the pixel data is not 8-bit RGB of the declared size")
    pixels = memoryview(data)[start : start + n * rows * cols * 3]
    frames = np.frombuffer(pixels, dtype=np.uint8).reshape(n, rows, cols, 3)
    clip = Clip(
        frames=frames,
        frame_time_ms=frame_time_ms(ds),
        regions=regions_from_dataset(ds),
        source_kind="dicom",
        source_name="",
        sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")) or None,
        user_cm_per_px=user_cm_per_px,
    )
    instance_uid = str(ds.SOPInstanceUID)
    full_record = dict(record, gate=report.as_dict())
    dc = DeidentifiedClip(
        _token=_GATE_TOKEN, clip=clip, study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
        instance_uid=instance_uid, pixel_sha256=_sha256(pixels), deid_record=full_record,
        display_name=f"US {instance_uid}",
    )
    clip.source_name = dc.display_name
    return dc


def admit_frames(original: OriginalIdentifiers, data: bytes, kind: str, frames: np.ndarray, record: dict, *,
                 frame_time_ms: float | None, source_kind: str, secret: bytes,
                 user_cm_per_px: float | None = None) -> DeidentifiedClip:
    """Gate a de-identified video/still (bytes) and hand on the cleaned frames that were encoded.

    Videos carry no UIDs: pseudonymous ``2.25`` UIDs are derived from the de-identified pixels
    with the site secret (the same clip gives the same UIDs).
    """
    from echomeasure.ingest.deid import UidRemapper

    report = check_container_bytes(original, data, kind)
    frames = np.ascontiguousarray(frames)
    frames.setflags(write=False)
    digest = _sha256(memoryview(frames).cast("B"))
    remap = UidRemapper(secret)
    instance_uid = remap(f"echomeasure-pixels-{digest}")
    clip = Clip(frames=frames, frame_time_ms=frame_time_ms, regions=(), source_kind=source_kind,  # type: ignore[arg-type]
                source_name="", user_cm_per_px=user_cm_per_px)
    dc = DeidentifiedClip(
        _token=_GATE_TOKEN, clip=clip, study_uid=remap(f"echomeasure-study-{digest}"),
        series_uid=remap(f"echomeasure-series-{digest}"), instance_uid=instance_uid, pixel_sha256=digest,
        deid_record=dict(record, gate=report.as_dict()),
        display_name=f"{'Video' if source_kind == 'video' else 'Image'} {instance_uid}",
    )
    clip.source_name = dc.display_name
    return dc


def passes_gate(candidate: str | Path | bytes, original_path: str | Path, *, secret: bytes | None = None) -> bool:
    """True when ``candidate`` (a de-identified file or its bytes) passes the gate for ``original_path``.

    For DICOM: identifiers are collected from the original file and the candidate's bytes are
    checked (preamble, private tags, identifying values, UIDs, dates, de-identification marks).
    For videos/stills: the original's container metadata against the candidate's.  Give
    ``secret`` when the original is itself an echomeasure output (re-de-identification).  Never
    raises for a refusal (returns False); raises for unreadable originals.
    """
    from echomeasure.ingest.dicom_io import read_dataset
    from echomeasure.ingest.video_io import container_metadata, image_metadata, sniff

    data = candidate if isinstance(candidate, (bytes, bytearray)) else Path(candidate).read_bytes()
    kind, _ = sniff(Path(original_path))
    try:
        if kind in ("dicom", "unknown"):
            ids = collect_dicom_identifiers(read_dataset(original_path, stop_before_pixels=True), secret=secret)
            check_dicom_bytes(ids, bytes(data))
        elif kind == "video":
            check_container_bytes(collect_container_identifiers(container_metadata(original_path)), bytes(data), "video")
        else:
            check_container_bytes(collect_container_identifiers(image_metadata(Path(original_path).read_bytes())),
                                  bytes(data), "image")
    except DeidentificationError:
        return False
    return True
