"""De-identification of DICOM datasets (PS3.15 Annex E basic profile) and of pixels.

What is applied, in one pass over every element including nested sequences:

* the actions of ``annex_e.json`` (edition-stamped), compound codes resolved to the strongest
  removal; private attributes, curves and overlays removed;
* every non-registered UID replaced by ``2.25.<int>`` from HMAC-SHA256(secret, UID) with the UUID
  version 4 / variant bits set.  32 bits of each new UID are a MAC of the rest, so a UID this
  remap produced (with the same secret) is recognised and kept: the remap is idempotent;
* dates shifted back by a per-patient number of days derived from HMAC(secret, PatientID)
  (Retain Longitudinal Temporal Information with Modified Dates), or removed;
* Patient ID replaced by a keyed pseudonym (same patient, same pseudonym), so studies of one
  patient stay together without the original identifier;
* (0012,0062) YES, (0012,0063), (0012,0064) with CID 7050 codes, (0028,0303) set;
* pixels outside the ultrasound regions blanked (region max inclusive) with one vectorised
  multiply; BurnedInAnnotation NO only when the pixel cleaning is verified (no human
  confirmation needed), YES otherwise, whatever the original said.

No automatic method can promise that all burned-in text is gone; ``deid_record`` says exactly
what was done so that a human can confirm.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from echomeasure import __version__
from echomeasure.errors import DeidentificationError
from echomeasure.ingest import retention
from echomeasure.ingest.clip import SPATIAL_GRAPHICS, SPATIAL_NONE, Region

if TYPE_CHECKING:
    from echomeasure.ingest.gate import OriginalIdentifiers
from echomeasure.ingest.profile import DEFAULT_DEID_OPTIONS, DeidOptions, annex_e, resolve, row_for

log = logging.getLogger(__name__)

METHOD_MARKER = "echomeasure"
DUMMY_TEXT = "ANONYMIZED"
DUMMY_DATE = "19000101"
REGISTERED_UID_ROOT = "1.2.840.10008."
PSEUDONYM_PREFIX = "EM"

CID_7050 = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113105": "Clean Descriptors Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
}

_STRING_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
# Pixel-module attributes that no longer describe 8-bit RGB output.
_STALE_PIXEL_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID",
    "LargePaletteColorLookupTableUID", "ModalityLUTSequence", "VOILUTSequence", "WindowCenter",
    "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "RescaleIntercept",
    "RescaleSlope", "RescaleType", "SmallestImagePixelValue", "LargestImagePixelValue",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "FloatPixelData", "DoubleFloatPixelData", "PresentationLUTShape",
)


# --------------------------------------------------------------------------- keyed pseudonyms


def _mac(secret: bytes, label: bytes, value: bytes) -> bytes:
    return hmac.new(secret, label + b"\x00" + value, hashlib.sha256).digest()


class UidRemapper:
    """HMAC-SHA256 UID remap to ``2.25.<int>``; stable for one secret, idempotent, keyed.

    The 122 free bits of a version-4 UUID hold 90 bits of HMAC(secret, UID) and a 32-bit MAC of
    those 90 bits, so :meth:`is_remapped` recognises (with probability 1 - 2**-32) a UID that
    this remap produced under the same secret; such UIDs map to themselves.
    """

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise DeidentificationError("the UID secret is empty; set ECHOMEASURE_SECRET or pass --secret")
        self._secret = bytes(secret)
        self._cache: dict[str, str] = {}

    def _check(self, payload: int) -> int:
        return int.from_bytes(_mac(self._secret, b"uid-check", payload.to_bytes(12, "big"))[:4], "big")

    @staticmethod
    def _to_uuid_int(bits122: int) -> int:
        # UUID layout: 48 bits | version 4 bits | 12 bits | variant 2 bits | 62 bits
        hi48 = bits122 >> 74
        mid12 = (bits122 >> 62) & 0xFFF
        lo62 = bits122 & ((1 << 62) - 1)
        return (hi48 << 80) | (0x4 << 76) | (mid12 << 64) | (0b10 << 62) | lo62

    @staticmethod
    def _from_uuid_int(value: int) -> int | None:
        if value >> 128 or ((value >> 76) & 0xF) != 0x4 or ((value >> 62) & 0b11) != 0b10:
            return None
        return ((value >> 80) << 74) | (((value >> 64) & 0xFFF) << 62) | (value & ((1 << 62) - 1))

    def is_remapped(self, uid: str) -> bool:
        """True when ``uid`` is a ``2.25`` UID that this remap (same secret) produced."""
        if not uid.startswith("2.25.") or not uid[5:].isdigit():
            return False
        bits = self._from_uuid_int(int(uid[5:]))
        if bits is None:
            return False
        return (bits & 0xFFFFFFFF) == self._check(bits >> 32)

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\x00")
        if not uid or uid.startswith(REGISTERED_UID_ROOT):
            return uid
        hit = self._cache.get(uid)
        if hit is not None:
            return hit
        if self.is_remapped(uid):
            out = uid
        else:
            payload = int.from_bytes(_mac(self._secret, b"uid", uid.encode("ascii", "replace"))[:12], "big") >> 6
            payload &= (1 << 90) - 1
            bits122 = (payload << 32) | self._check(payload)
            out = f"2.25.{self._to_uuid_int(bits122)}"
        self._cache[uid] = out
        return out


def patient_pseudonym(secret: bytes, patient_id: str) -> str:
    """Keyed, idempotent pseudonym for a Patient ID: ``EM`` + 12 hex (HMAC) + 8 hex (check)."""
    pid = patient_id.strip()
    if _is_pseudonym(secret, pid):
        return pid
    body = _mac(secret, b"patient", pid.encode("utf-8")).hex()[:12]
    return PSEUDONYM_PREFIX + body + _mac(secret, b"patient-check", body.encode()).hex()[:8]


def _is_pseudonym(secret: bytes, value: str) -> bool:
    if len(value) != 22 or not value.startswith(PSEUDONYM_PREFIX):
        return False
    body, check = value[2:14], value[14:]
    return hmac.compare_digest(_mac(secret, b"patient-check", body.encode()).hex()[:8], check)


def date_offset_days(secret: bytes, patient_key: str) -> int:
    """Per-patient date shift in days (negative: 1 to 11 years back), derived from HMAC."""
    n = int.from_bytes(_mac(secret, b"date-offset", patient_key.encode("utf-8"))[:4], "big")
    return -(365 + n % 3650)


def _shift_da(value: str, days: int) -> str | None:
    v = value.strip()
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
        return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def _shift_dt(value: str, days: int) -> str | None:
    v = value.strip()
    if len(v) < 8:
        return None
    head = _shift_da(v[:8], days)
    return None if head is None else head + v[8:]


# --------------------------------------------------------------------------- the dataset walk


@dataclass
class _Context:
    secret: bytes
    options: DeidOptions
    remap: UidRemapper
    day_offset: int | None  # None: dates are not shifted (already de-identified, or removal)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def _dummy(elem: DataElement) -> object:
    vr = elem.VR
    if vr == "DA":
        return DUMMY_DATE
    if vr == "DT":
        return DUMMY_DATE + "000000"
    if vr == "TM":
        return "000000"
    if vr in ("DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        return 0 if vr not in ("DS", "IS") else "0"
    if vr == "UI":
        return None
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    return DUMMY_TEXT


def _apply_dates(elem: DataElement, ctx: _Context) -> bool:
    """Shift a DA/DT element in place; False when it cannot be shifted (caller removes it)."""
    if ctx.day_offset is None:
        return True
    shift = _shift_da if elem.VR == "DA" else _shift_dt
    values = elem.value if elem.VM > 1 else [elem.value]
    out = []
    for v in values:
        if v in (None, ""):
            out.append("")
            continue
        s = shift(str(v), ctx.day_offset)
        if s is None:
            return False
        out.append(s)
    elem.value = out if elem.VM > 1 else out[0]
    ctx.count("dates shifted")
    return True


def _remap_uids(elem: DataElement, ctx: _Context) -> None:
    if elem.VR != "UI" or elem.value in (None, ""):
        return
    if elem.VM > 1:
        elem.value = [ctx.remap(str(v)) for v in elem.value]
    else:
        elem.value = ctx.remap(str(elem.value))
    ctx.count("UIDs remapped")


def _walk(ds: Dataset, ctx: _Context, allowed: Mapping[str, str], top: bool) -> None:
    """Remove what ``allowed`` (the retention table, or a listed sequence's item table) does not
    list, private attributes first; apply the Annex E action of everything that stays."""
    for elem in list(ds):
        tag = elem.tag
        if tag.is_private:
            del ds[tag]
            ctx.count("private attributes removed")
            continue
        if top and tag == 0x7FE00010:
            continue
        if elem.keyword not in allowed:
            del ds[tag]
            group = tag.group
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                ctx.count("curve/overlay attributes removed")
            else:
                ctx.count("attributes not on the retention list removed")
            continue
        row = row_for(int(tag))
        action = resolve(row, ctx.options) if row is not None else "K"
        _apply(ds, elem, action, ctx)


def _apply(ds: Dataset, elem: DataElement, action: str, ctx: _Context) -> None:
    tag = elem.tag
    if action == "X":
        del ds[tag]
        ctx.count("attributes removed")
        return
    if elem.VR == "SQ":
        if action == "Z":
            elem.value = Sequence()
            ctx.count("attributes emptied")
            return
        items = retention.items_table(elem.keyword)
        for item in elem.value:  # K, D, C, U, U*: keep the structure, clean what is inside
            _walk(item, ctx, items, top=False)
        return
    if action == "U" or action == "U*":
        _remap_uids(elem, ctx)
        return
    if action == "Z":
        if tag == 0x00100020:  # Patient ID: a keyed pseudonym keeps one patient's studies together
            elem.value = patient_pseudonym(ctx.secret, str(elem.value or ""))
            ctx.count("pseudonyms set")
            return
        elem.value = "" if elem.VR in _STRING_VRS else b"" if elem.VR.startswith("O") or elem.VR == "UN" else None
        ctx.count("attributes emptied")
        return
    if action == "D":
        if elem.VR in ("DA", "DT") and ctx.day_offset is not None and ctx.options.dates == "shift":
            if not _apply_dates(elem, ctx):
                elem.value = _dummy(elem)
            return
        if elem.VR == "UI":
            _remap_uids(elem, ctx)
            return
        elem.value = _dummy(elem)
        ctx.count("dummy values set")
        return
    if action == "C":
        if elem.VR in ("DA", "DT"):
            if not _apply_dates(elem, ctx):
                del ds[tag]
                ctx.count("attributes removed")
            return
        if elem.VR == "TM":
            return  # a time of day without its date does not identify; kept with shifted dates
        if tag == 0x00080201:  # timezone offset: kept with the shifted dates
            return
        # Cleaning free text is not implemented: remove instead (never weaker than the table).
        del ds[tag]
        ctx.count("attributes removed")
        return
    # K
    if elem.VR == "UI":
        _remap_uids(elem, ctx)
    elif elem.VR in ("DA", "DT") and ctx.options.dates == "shift":
        if not _apply_dates(elem, ctx):
            del ds[tag]
    elif elem.VR in ("DA", "DT"):
        del ds[tag]


# --------------------------------------------------------------------------- pixels


def region_keep_mask(regions: tuple[Region, ...], rows: int, columns: int,
                     frames: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """What to keep of an image with ultrasound regions: ``(keep, fan, fans_found)``.

    ``keep`` is a boolean (rows, columns) mask: inside each 2D region only its imaging fan
    (found from ``frames``: moving pixels of a cine, non-black pixels of a still), or the whole
    rectangle when no fan is found; M-mode, spectral and waveform regions as rectangles (max
    inclusive).  Regions of spatial format "none" or "graphics" are not kept (they may hold
    annotation text).  ``fan`` marks the imaging area that is measured and never masked: the 2D
    fans and the M-mode/spectral/waveform rectangles (None when empty).  ``keep`` is None when
    there is no usable region.
    """
    from echomeasure.ingest.clip import SPATIAL_2D
    from echomeasure.ingest.sector import fan_in_region

    usable = [r for r in regions if r.spatial_format not in (SPATIAL_NONE, SPATIAL_GRAPHICS)]
    if not usable:
        return None, None, 0
    keep = np.zeros((rows, columns), dtype=bool)
    fan = np.zeros((rows, columns), dtype=bool)
    fans_found = 0
    for r in usable:
        x0, y0 = max(int(r.x0), 0), max(int(r.y0), 0)
        x1, y1 = min(int(r.x1), columns - 1), min(int(r.y1), rows - 1)
        if x1 < x0 or y1 < y0:
            continue
        sector = fan_in_region(frames, x0, y0, x1, y1) if frames is not None and r.spatial_format == SPATIAL_2D else None
        if sector is None:
            keep[y0 : y1 + 1, x0 : x1 + 1] = True
            if r.spatial_format != SPATIAL_2D:  # M-mode, spectral, waveform: measured as they are
                fan[y0 : y1 + 1, x0 : x1 + 1] = True
        else:
            keep[y0 : y1 + 1, x0 : x1 + 1] |= sector
            fan[y0 : y1 + 1, x0 : x1 + 1] |= sector
            fans_found += 1
    if not keep.any():
        return None, None, 0
    return keep, (fan if fan.any() else None), fans_found


def blank_outside(frames: np.ndarray, keep: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``frames`` with every pixel outside ``keep`` set to 0, as a new array or into ``out``.

    One vectorised AND with a 0x00/0xFF mask laid out like a frame (H, W, 3), so the inner loop
    runs over contiguous bytes and only the frame axis is broadcast.
    """
    mask = np.repeat(keep[:, :, None], 3, axis=2).astype(np.uint8) * np.uint8(255)
    return np.bitwise_and(frames, mask[None], out=out)


#: Bytes reserved in front of the pixels of an output buffer for the serialised header.
HEADER_ROOM = 1 << 20


@dataclass
class OutputBuffer:
    """One buffer that becomes the output file: header room, then the pixel data value.

    The cleaned frames are written straight into it and the header is written in front of them
    afterwards, so the largest value is never copied again.
    """

    buffer: np.ndarray  # uint8, header room + pixels (+ 1 pad byte for an odd length)
    frames: np.ndarray

    @classmethod
    def for_shape(cls, shape: tuple[int, ...]) -> OutputBuffer:
        n = int(np.prod(shape))
        buffer = np.empty(HEADER_ROOM + n + n % 2, dtype=np.uint8)  # not zero-filled: every byte is written
        buffer[HEADER_ROOM + n :] = 0
        return cls(buffer, buffer[HEADER_ROOM : HEADER_ROOM + n].reshape(shape))


@dataclass
class PixelResult:
    """Cleaned frames and a record of what was done to them."""

    frames: np.ndarray
    method: str  # "region-fan-mask", "region-mask", "motion-sector-mask", "still-sector-mask", "none"
    blanked_fraction: float
    cleaned: bool
    note: str
    text: dict = field(default_factory=dict)

    @property
    def human_confirmation_needed(self) -> bool:
        """True unless regions were masked and no text was found (or could be searched) in what remains."""
        return not (self.cleaned and self.method in ("region-fan-mask", "region-mask")
                    and self.text.get("searched") and not self.text.get("boxes_in_fan"))

    def as_record(self, original_burned_in: str | None = None, output_burned_in: str | None = None) -> dict:
        return {
            "method": self.method,
            "cleaned": self.cleaned,
            "blanked_fraction": round(self.blanked_fraction, 4),
            "note": self.note,
            "text": self.text,
            "burned_in_annotation_original": original_burned_in,
            "burned_in_annotation_output": output_burned_in,
            "human_confirmation_needed": self.human_confirmation_needed,
            "status": "human confirmation needed" if self.human_confirmation_needed else "cleaned",
        }


def _find_and_mask_text(frames: np.ndarray, keep: np.ndarray, fan: np.ndarray | None, find_text: bool) -> tuple[np.ndarray, dict]:
    """Search the kept pixels for burned-in text; blank boxes outside the imaging area (``fan``),
    report those that reach into it (they are left: masking would alter what is measured)."""
    from echomeasure.ingest import ocr

    if not find_text:
        return frames, {"searched": False, "why": "text search switched off"}
    if not ocr.available():
        return frames, {"searched": False, "why": "the OCR package (rapidocr-onnxruntime) is not installed"}
    try:
        boxes = ocr.find_text(frames, keep)
    except Exception as exc:  # noqa: BLE001 - a broken detector must not stop de-identification
        log.warning("the text detector failed (%s); the clip needs human confirmation", type(exc).__name__)
        return frames, {"searched": False, "why": f"the text detector failed ({type(exc).__name__})"}
    masked, in_fan = [], []
    blank = np.zeros(keep.shape, dtype=bool)
    for b in boxes:
        area = np.zeros(keep.shape, dtype=bool)
        area[b.y0 : b.y1 + 1, b.x0 : b.x1 + 1] = True
        if fan is not None and (area & fan).any():
            in_fan.append(b.as_list())
            blank |= area & ~fan  # the part outside the fan still goes
        else:
            masked.append(b.as_list())
            blank |= area
    blank &= keep
    if blank.any():
        frames = frames if frames.flags.writeable else frames.copy()
        frames[:, blank] = 0
    return frames, {"searched": True, "detector": ocr.describe(), "boxes_masked": masked, "boxes_in_fan": in_fan,
                    "masked_pixels": int(blank.sum()),
                    "masked_pixels_in_fan": int((blank & fan).sum()) if fan is not None else 0}


def clean_pixels(frames: np.ndarray, regions: tuple[Region, ...], *, find_text: bool = True,
                 out: np.ndarray | None = None) -> PixelResult:
    """Blank everything outside the imaging fan, then find burned-in text in what is left.

    With regions: outside the regions, and inside 2D regions outside the fan, is set to 0.
    Without regions: outside the moving sector (cines) or the non-black sector (stills).
    Text found in the kept pixels outside the fan is blanked; text inside the fan is left and
    puts the clip in "human confirmation needed" with its boxes in the record.  With ``out``
    (same shape as ``frames``) the cleaned frames are written there.
    """
    from echomeasure.ingest.sector import motion_sector_mask, still_sector_mask

    n, h, w, _ = frames.shape
    keep, fan, fans = region_keep_mask(regions, h, w, frames)
    if keep is not None:
        method = "region-fan-mask" if fans else "region-mask"
        note = ("pixels outside the ultrasound regions, and outside the imaging fan inside 2D regions, set to 0 "
                f"(fan found in {fans} region(s); max row/column kept)")
    else:
        keep = motion_sector_mask(frames) if n > 1 else still_sector_mask(frames[0])
        fan = keep
        method = "motion-sector-mask" if n > 1 else "still-sector-mask"
        note = ("no ultrasound regions: pixels outside the " + ("moving" if n > 1 else "non-black")
                + " scan sector set to 0; confirm visually")
        if keep is None:
            if out is not None:
                np.copyto(out, frames)
                frames = out
            return PixelResult(frames, "none", 0.0, False,
                               "no ultrasound regions and no sector found: pixels were NOT cleaned; "
                               "a human must confirm there is no burned-in text",
                               {"searched": False, "why": "no sector to search"})
    fraction = 1.0 - float(keep.mean())
    if fraction > 0:
        cleaned = blank_outside(frames, keep, out)
    elif out is not None:
        np.copyto(out, frames)
        cleaned = out
    else:
        cleaned = frames
    cleaned, text = _find_and_mask_text(cleaned, keep, fan, find_text)
    return PixelResult(cleaned, method, fraction, fraction > 0 or bool(text.get("masked_pixels")), note, text)


def clean_dicom_pixels(frames: np.ndarray, regions: tuple[Region, ...], *, find_text: bool = True) -> PixelResult:
    """:func:`clean_pixels` for a DICOM object (kept for callers of the earlier name)."""
    return clean_pixels(frames, regions, find_text=find_text)


def set_rgb_pixels(ds: Dataset, frames: np.ndarray, *, attach: bool = True) -> None:
    """Make the Image Pixel module describe native 8-bit RGB ``frames``; store them when ``attach``.

    With ``attach=False`` the Pixel Data element is removed: :func:`dicom_bytes` appends the
    frames straight from the array, saving two copies of the largest buffer.
    """
    n, h, w, _ = frames.shape
    for kw in _STALE_PIXEL_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.Rows = h
    ds.Columns = w
    if n > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = n
    if attach:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
        ds["PixelData"].VR = "OB"
    elif "PixelData" in ds:
        del ds.PixelData


# --------------------------------------------------------------------------- the whole dataset


@dataclass
class DicomDeidResult:
    """A de-identified dataset (pixels included), ready to serialise, with its record."""

    dataset: Dataset
    frames: np.ndarray
    record: dict
    output: OutputBuffer | None = None  # set when the frames live in the output file's buffer


def already_deidentified(ds: Dataset, secret: bytes) -> bool:
    """True when ``ds`` is marked as de-identified by echomeasure *and* its SOP Instance UID
    verifies as remapped under ``secret`` (a marker alone is not trusted)."""
    return (
        str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
        and str(ds.get("DeidentificationMethod", "")).startswith(METHOD_MARKER)
        and UidRemapper(secret).is_remapped(str(ds.get("SOPInstanceUID", "")))
    )


def _codes(options: DeidOptions, pixels: PixelResult) -> list[str]:
    codes = ["113100"]
    if not pixels.human_confirmation_needed:
        codes.append("113101")
    if options.dates == "shift":
        codes.append("113107")
    if options.retain_patient_characteristics:
        codes.append("113108")
    return codes


def method_text(options: DeidOptions) -> str:
    """The (0012,0063) value: deterministic (no time stamps), so re-runs give the same bytes."""
    dates = "dates shifted" if options.dates == "shift" else "dates removed"
    return f"{METHOD_MARKER} {__version__}; PS3.15 E.1 basic; HMAC UIDs; {dates}"[:64]


def deidentify_header(ds: Dataset, *, secret: bytes, options: DeidOptions = DEFAULT_DEID_OPTIONS) -> dict:
    """Apply the profile to the header of ``ds`` in place (pixels untouched); return counts and flags."""
    already = already_deidentified(ds, secret)
    patient_key = str(ds.get("PatientID", "") or "").strip() or str(ds.get("StudyInstanceUID", "") or "")
    day_offset = None
    if options.dates == "shift" and not already:
        day_offset = date_offset_days(secret, patient_key)
    ctx = _Context(secret=secret, options=options, remap=UidRemapper(secret), day_offset=day_offset)
    _walk(ds, ctx, retention.TOP_LEVEL, top=True)
    if "PatientID" not in ds:
        ds.PatientID = patient_pseudonym(secret, patient_key)
    if "PatientName" not in ds:
        ds.PatientName = ""
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if kw not in ds or not str(ds.get(kw) or ""):
            # Required for a usable object: derive from what identifies this file instead.
            setattr(ds, kw, ctx.remap(f"echomeasure-missing-{kw}-{patient_key}"))
    return {"already_deidentified": already, "counts": dict(sorted(ctx.counts.items())),
            "dates": ("unchanged (already shifted)" if already and options.dates == "shift"
                      else "shifted per patient (offset not recorded)" if options.dates == "shift" else "removed")}


def drop_identifying_values(ds: Dataset, identifiers: OriginalIdentifiers, *, secret: bytes) -> list[dict]:
    """Remove every kept value that carries an original identifier; say what and why.

    A kept value such as Manufacturer "Philips" for a patient named Philips is removed (the
    attribute, not the object): the record names the attribute and the kind of identifier it
    matched, never the value.  Free text with a word outside the view and stage words (ViewName,
    StageName, a view or anatomy Code Meaning) is removed too: a name typed there may match
    nothing in the header (:func:`retention.free_text_outside_vocabulary`).
    """
    from echomeasure.ingest.gate import matching_attributes

    dropped: list[dict] = []
    for holder, tag, label, source in matching_attributes(ds, identifiers, secret=secret, include_meta=False):
        if tag in holder:
            del holder[tag]
            dropped.append({"attribute": label, "reason": f"carries an identifier from the original {source}"})
    for holder, tag, label in retention.free_text_outside_vocabulary(ds):
        if tag in holder:
            del holder[tag]
            dropped.append({"attribute": label, "reason": "free text outside the view and stage words (it could name a person)"})
    _prune_code_items(ds)
    return dropped


def _prune_code_items(ds: Dataset) -> None:
    """Remove the items of the kept code sequences (:data:`retention.CODE_SEQUENCES`, nested ones
    too) whose Code Meaning was dropped: a code item without its meaning (Type 1) is invalid, and
    a local code's value means nothing without it.  The sequence stays, empty if need be."""
    for keyword in retention.CODE_SEQUENCES:
        if keyword not in ds:
            continue
        for item in ds[keyword].value:
            _prune_code_items(item)
        kept = [item for item in ds[keyword].value if "CodeMeaning" in item]
        if len(kept) != len(ds[keyword].value):
            ds[keyword].value = Sequence(kept)


def _mark(ds: Dataset, options: DeidOptions, pixels: PixelResult) -> list[dict]:
    codes = _codes(options, pixels)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_text(options)
    seq = Sequence()
    for c in codes:
        item = Dataset()
        item.CodeValue = c
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = CID_7050[c]
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = seq
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.dates == "shift" else "REMOVED"
    # NO only when the cleaning is verified; otherwise YES, whatever the original said: a vendor's
    # NO above a name banner is common, and a receiver trusts NO.
    ds.BurnedInAnnotation = "YES" if pixels.human_confirmation_needed else "NO"
    return [{"value": c, "scheme": "DCM", "meaning": CID_7050[c]} for c in codes]


def deidentify_dicom(
    ds: Dataset,
    frames: np.ndarray,
    regions: tuple[Region, ...],
    *,
    secret: bytes,
    options: DeidOptions = DEFAULT_DEID_OPTIONS,
    attach_pixels: bool = True,
    identifiers: OriginalIdentifiers | None = None,
    output: OutputBuffer | None = None,
) -> DicomDeidResult:
    """De-identify a decoded dataset: header profile, pixel cleaning, marks, fresh file meta.

    ``ds`` is modified in place: its pixel data is replaced by the cleaned 8-bit RGB frames
    (``attach_pixels``), or removed, the frames then travelling in ``result.frames`` only.
    Pixels: :func:`clean_pixels` (fan masking, then the text search unless
    ``options.find_text`` is off).  ``identifiers`` are the original's (collected from ``ds`` itself when not given): a kept
    value that carries one of them is dropped and recorded (:func:`drop_identifying_values`).
    ``output`` (without ``attach_pixels``): the buffer the frames are cleaned into; ``frames`` may
    already be its frames (decoded into it), then they are cleaned in place.
    """
    from echomeasure.ingest import gate

    if identifiers is None:
        identifiers = gate.collect_dicom_identifiers(ds, secret=secret)
    original_burned_in = str(ds.get("BurnedInAnnotation", "") or "") or None
    header = deidentify_header(ds, secret=secret, options=options)
    if attach_pixels:
        output = None
    elif output is None or output.frames.shape != frames.shape:
        output = OutputBuffer.for_shape(frames.shape)
    pixels = clean_pixels(frames, regions, find_text=options.find_text, out=None if output is None else output.frames)
    set_rgb_pixels(ds, pixels.frames, attach=attach_pixels)
    codes = _mark(ds, options, pixels)
    dropped = drop_identifying_values(ds, identifiers, secret=secret)
    sop_class = str(ds.get("SOPClassUID", "") or "1.2.840.10008.5.1.4.1.1.7")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(str(ds.SOPInstanceUID))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ECHOMEASURE{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    record = {
        "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
        "table_edition": annex_e().edition,
        "options": {"dates": options.dates, "retain_patient_characteristics": options.retain_patient_characteristics,
                    "find_text": options.find_text},
        "cid7050_codes": codes,
        "uid_remap": "HMAC-SHA256(site secret, UID) -> 2.25.<UUIDv4 int>, idempotent",
        "private_attributes": "removed",
        "retention_table": retention.TABLE_VERSION,
        "header": header,
        "dropped_values": dropped,
        "identifier_matching": {
            "short_numeric_id_digits": gate.SHORT_NUMERIC_ID_DIGITS,
            "short_numeric_ids_not_searched": identifiers.short_numeric_ids,
            "why": (f"all-digit IDs shorter than {gate.SHORT_NUMERIC_ID_DIGITS} digits are replaced where they "
                    "stand but not searched elsewhere: they collide with character sets, image-type codes, "
                    "heart rates and counts, and identify nobody on their own"),
        },
        "pixels": pixels.as_record(original_burned_in, str(ds.get("BurnedInAnnotation", "")) or None),
        "output": {"transfer_syntax": str(ExplicitVRLittleEndian), "photometric_interpretation": "RGB", "bits": 8},
    }
    return DicomDeidResult(ds, pixels.frames, record, output)


def dicom_bytes(ds: Dataset, frames: np.ndarray | None = None, output: OutputBuffer | None = None) -> bytes | memoryview:
    """Serialise a de-identified dataset: zeroed 128-byte preamble, regenerated file meta.

    With ``frames`` (and no Pixel Data in ``ds``), the native pixel data element is appended
    directly from the array (Explicit VR Little Endian, OB, padded to even length): one copy.
    With ``output`` (the buffer the frames were cleaned into) the header is written in front of
    them and a read-only view of the whole file is returned: no copy at all.
    """
    buf = BytesIO()
    ds.preamble = b"\x00" * 128
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    if frames is None and output is None:
        return buf.getvalue()
    if "PixelData" in ds or ds.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian:
        raise ValueError("dicom_bytes(frames=...) needs a dataset without Pixel Data, Explicit VR Little Endian")
    if output is not None:
        n = output.frames.size
        element = b"\xe0\x7f\x10\x00OB\x00\x00" + (n + n % 2).to_bytes(4, "little")
        header = buf.getbuffer()
        start = HEADER_ROOM - len(header) - len(element)
        if start >= 0:
            output.buffer[start:HEADER_ROOM] = np.frombuffer(bytes(header) + element, dtype=np.uint8)
            return output.buffer[start:].data.cast("B").toreadonly()
        frames = output.frames  # a header larger than the room: fall back to one copy
    pixels = np.ascontiguousarray(frames).data.cast("B")
    pad = b"\x00" if len(pixels) % 2 else b""
    element = b"\xe0\x7f\x10\x00OB\x00\x00" + (len(pixels) + len(pad)).to_bytes(4, "little")
    return b"".join((buf.getbuffer(), element, pixels, pad))


def deidentify_dataset(ds: Dataset, *, secret: bytes, options: DeidOptions = DEFAULT_DEID_OPTIONS,
                       allow_non_us: bool = True) -> Dataset:
    """A de-identified copy of ``ds`` (header and pixels); ``ds`` itself is not modified.

    The copy holds 8-bit RGB native pixel data with pixels outside the ultrasound regions
    blanked, and ``ds.deid_record`` is not set: use :func:`echomeasure.ingest.deidentify_file`
    or :func:`echomeasure.ingest.load` to get the gate's verdict and the full record.
    """
    from echomeasure.ingest.dicom_io import clip_from_dataset

    pixel_elem = ds.get((0x7FE0, 0x0010))
    work = Dataset()
    for elem in ds:
        if elem.tag != 0x7FE00010:
            work.add(copy.deepcopy(elem))
    if pixel_elem is not None:
        # A new element sharing the (immutable) bytes: no copy of the pixel data.
        work.add(DataElement(pixel_elem.tag, pixel_elem.VR, pixel_elem.value))
    work.file_meta = copy.deepcopy(getattr(ds, "file_meta", FileMetaDataset()))
    clip = clip_from_dataset(work, allow_non_us=allow_non_us)
    return deidentify_dicom(work, clip.frames, clip.regions, secret=secret, options=options).dataset
