"""Reading ultrasound DICOM: validate the header against the bytes present, then decode to RGB.

Supports single and multi-frame images; RGB, YBR_FULL, YBR_FULL_422, YBR_RCT/ICT, PALETTE COLOR,
MONOCHROME1/2; 8 and 16 bit; native (little/big endian, explicit/implicit VR), RLE, JPEG
Baseline/Extended/Lossless, JPEG-LS and JPEG 2000 through pydicom 3's decoders (pylibjpeg
plugins).  Dimensions are checked against the bytes present *before* anything is decoded, so a
header that claims 100000 x 100000 pixels never allocates them.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from echomeasure.errors import EchomeasureError, InputNotFoundError, InvalidInputError, UnsupportedEncodingError
from echomeasure.ingest.clip import COLOR_DATA_PRESENT, Clip, Region
from echomeasure.ingest.hygiene import silence_pydicom

log = logging.getLogger(__name__)

_UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")

MAX_SIDE_PX = 4096
MAX_TOTAL_BYTES = 2 * 1024**3  # decoded RGB uint8, all frames
# A Deflated Explicit VR Little Endian dataset is inflated whole by the parser: refuse one that
# would inflate to more than MAX_TOTAL_BYTES, or to more than MAX_DEFLATE_RATIO times its size
# once past MAX_DEFLATE_SMALL_BYTES (deflate tops out near 1000:1 on runs of zeros).
MAX_DEFLATE_RATIO = 200
MAX_DEFLATE_SMALL_BYTES = 64 * 1024**2

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR

US_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.6.2": "Enhanced US Volume Storage",
}

# Transfer syntaxes that carry a video bitstream: pydicom cannot decode them.
_VIDEO_SYNTAXES = {
    "1.2.840.10008.1.2.4.100": "MPEG2 Main Profile / Main Level",
    "1.2.840.10008.1.2.4.100.1": "Fragmentable MPEG2 Main Profile / Main Level",
    "1.2.840.10008.1.2.4.101": "MPEG2 Main Profile / High Level",
    "1.2.840.10008.1.2.4.101.1": "Fragmentable MPEG2 Main Profile / High Level",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.102.1": "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.103.1": "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
    "1.2.840.10008.1.2.4.104": "MPEG-4 AVC/H.264 High Profile For 2D Video",
    "1.2.840.10008.1.2.4.104.1": "Fragmentable MPEG-4 AVC/H.264 High Profile For 2D Video",
    "1.2.840.10008.1.2.4.105": "MPEG-4 AVC/H.264 High Profile For 3D Video",
    "1.2.840.10008.1.2.4.105.1": "Fragmentable MPEG-4 AVC/H.264 High Profile For 3D Video",
    "1.2.840.10008.1.2.4.106": "MPEG-4 AVC/H.264 Stereo High Profile",
    "1.2.840.10008.1.2.4.106.1": "Fragmentable MPEG-4 AVC/H.264 Stereo High Profile",
    "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile / Level 5.1",
    "1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile / Level 5.1",
}


@dataclass(frozen=True)
class PixelGeometry:
    """What the header says the pixel data is, checked against the bytes present."""

    rows: int
    columns: int
    n_frames: int
    samples_per_pixel: int
    bits_allocated: int
    photometric: str
    transfer_syntax: str
    encapsulated: bool


def check_path(path: str | os.PathLike[str]) -> Path:
    """The path as a :class:`Path`, refusing missing paths, symlink loops, directories and empty files."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise InputNotFoundError("is a symbolic link to a missing file; check the link") from None
        raise InputNotFoundError("no such file; check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputNotFoundError("the path cannot be resolved (symlink loop)") from None
        if exc.errno == errno.ENOTDIR:
            raise InputNotFoundError("no such file; check the path") from None
        raise InputNotFoundError(f"the path cannot be examined ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # a NUL character in the path
        raise InputNotFoundError("the path is not valid (it holds a NUL character)") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputNotFoundError("is a directory; give a DICOM, video or image file")
    if not stat.S_ISREG(st.st_mode):
        raise InputNotFoundError("not a regular file")
    if st.st_size == 0:
        raise InvalidInputError("the file is empty")
    return p


def is_ultrasound(ds: Dataset) -> bool:
    """True for the ultrasound SOP classes (current and retired) or Modality ``US``."""
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    return sop in US_SOP_CLASSES or str(ds.get("Modality", "")).upper() == "US"


def sop_class_name(uid: str | None) -> str | None:
    """Readable name of a SOP class UID (None when unknown or absent)."""
    if not uid:
        return None
    if uid in US_SOP_CLASSES:
        return US_SOP_CLASSES[uid]
    name = UID(uid).name
    return name if name != uid else None


def _deflated_body_offset(fh) -> int | None:
    """Where the deflated dataset starts, when the file meta (read with ``fh`` at offset 0) names
    the Deflated Explicit VR Little Endian transfer syntax; None otherwise."""
    head = fh.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    offset, syntax = 132, None
    while True:
        fh.seek(offset)
        tag_vr = fh.read(8)
        if len(tag_vr) < 8 or struct.unpack_from("<H", tag_vr)[0] != 0x0002:
            break
        element = struct.unpack_from("<H", tag_vr, 2)[0]
        if tag_vr[4:6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            extra = fh.read(4)
            if len(extra) < 4:
                return None
            length, start = struct.unpack("<I", extra)[0], offset + 12
        else:
            length, start = struct.unpack_from("<H", tag_vr, 6)[0], offset + 8
        if element == 0x0010:
            syntax = fh.read(min(length, 64)).rstrip(b"\x00 ").decode("ascii", "replace")
        offset = start + length
    return offset if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian else None


def _check_deflated_size(path: Path) -> None:
    """Refuse a deflated dataset that would inflate to an implausible size (a decompression
    bomb), counting the inflated bytes in bounded chunks before the parser inflates it whole."""
    import zlib

    with open(path, "rb") as fh:
        offset = _deflated_body_offset(fh)
        if offset is None:
            return
        size = os.fstat(fh.fileno()).st_size
        limit = min(MAX_TOTAL_BYTES, max(MAX_DEFLATE_SMALL_BYTES, MAX_DEFLATE_RATIO * size))
        fh.seek(offset)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflated = 0
        pending = b""
        while inflated <= limit:
            if not pending:
                pending = fh.read(1 << 20)
                if not pending:
                    return
            try:
                inflated += len(inflater.decompress(pending, 1 << 24))
            except zlib.error:
                return  # damaged: the parser reports it
            pending = inflater.unconsumed_tail
            if inflater.eof:
                return
    raise InvalidInputError(
        f"the deflated dataset inflates to more than {limit / 2**20:.0f} MiB from a {size / 2**20:.1f} MiB "
        "file (a decompression bomb); refused"
    )


def read_dataset(path: str | os.PathLike[str], *, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file (with or without the 128-byte preamble), mapping parse errors to user errors.

    A deflated dataset is measured first (:func:`_check_deflated_size`): the parser would inflate
    a bomb whole into memory.
    """
    p = Path(path)
    silence_pydicom()
    try:
        _check_deflated_size(p)
    except OSError:
        raise InvalidInputError("the file cannot be read") from None
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=stop_before_pixels)
        return _parsed(ds)
    except InvalidDicomError:
        pass
    except EchomeasureError:
        raise
    except (struct.error, EOFError):  # fewer bytes than an element header or value needs
        raise InvalidInputError("not a readable DICOM file: it is truncated or damaged (an element is cut short)") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on a hostile file is a user error
        raise InvalidInputError(f"not a readable DICOM file ({type(exc).__name__})") from None
    # No preamble: accept only if the forced parse finds an image header.
    try:
        ds = pydicom.dcmread(p, force=True, stop_before_pixels=stop_before_pixels)
    except Exception:  # noqa: BLE001 - any parser failure means "not DICOM"
        raise InvalidInputError("not a DICOM, video or image file") from None
    if "Rows" not in ds and "SOPClassUID" not in ds:
        raise InvalidInputError("not a DICOM, video or image file")
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if ds.is_implicit_VR else pydicom.uid.ExplicitVRLittleEndian
        )
    return _parsed(ds)


def _parsed(ds: Dataset) -> Dataset:
    """Parse every element now (pydicom defers it), so a broken value (unknown VR, a length
    that runs into the next element) is a user error here rather than a crash later."""
    try:
        for elem in ds.iterall():
            _ = elem.value
        if hasattr(ds, "file_meta"):
            for elem in ds.file_meta:
                _ = elem.value
    except Exception:  # noqa: BLE001 - whatever the parser raises, the file is broken
        raise InvalidInputError("the DICOM header is corrupt (an element cannot be parsed)") from None
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and not UID(str(ts)).is_transfer_syntax:
        raise UnsupportedEncodingError("the transfer syntax UID is not a known transfer syntax")
    return ds


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax (Implicit VR Little Endian when the meta is missing)."""
    fm = getattr(ds, "file_meta", None)
    ts = fm.get("TransferSyntaxUID") if fm is not None else None
    return UID(ts) if ts else pydicom.uid.ImplicitVRLittleEndian


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    v = ds.get(keyword, None)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{keyword} has an unreadable value") from None


def check_geometry(ds: Dataset, name: str = "") -> PixelGeometry:
    """Validate the image header against the pixel bytes present, before any decoding.

    Raises :class:`InvalidInputError` for missing pixel data, zero frames, absurd dimensions,
    truncated data or a NumberOfFrames larger than the data; :class:`UnsupportedEncodingError`
    for transfer syntaxes that cannot be decoded here.
    """
    label = ""  # the entry point names the file (hygiene.named_errors); name is kept for callers
    if "PixelData" not in ds:
        raise _missing_pixel_data(ds)
    rows = _int(ds, "Rows", 0) or 0
    cols = _int(ds, "Columns", 0) or 0
    spp = _int(ds, "SamplesPerPixel", 1) or 1
    bits = _int(ds, "BitsAllocated", 8) or 8
    n_frames = _int(ds, "NumberOfFrames", 1)
    n_frames = 1 if n_frames is None else n_frames
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    ts = transfer_syntax(ds)
    if n_frames <= 0:
        raise InvalidInputError(f"{label}NumberOfFrames is {n_frames}: the file holds zero frames")
    if rows <= 0 or cols <= 0:
        raise InvalidInputError(f"{label}the image size is {rows} x {cols} pixels; the header is corrupt")
    if rows > MAX_SIDE_PX or cols > MAX_SIDE_PX:
        raise InvalidInputError(
            f"{label}the header claims {rows} x {cols} pixels per frame; more than {MAX_SIDE_PX} x {MAX_SIDE_PX} is refused"
        )
    total = n_frames * rows * cols * 3
    if total > MAX_TOTAL_BYTES:
        raise InvalidInputError(
            f"{label}{n_frames} frames of {rows} x {cols} would need {total / 2**30:.1f} GiB decoded; "
            f"the limit is {MAX_TOTAL_BYTES / 2**30:.0f} GiB: split the clip"
        )
    if spp not in (1, 3) or bits not in (1, 8, 16, 32):
        raise UnsupportedEncodingError(f"{label}{spp} samples per pixel at {bits} bits allocated are not supported")
    if ts in _VIDEO_SYNTAXES:
        raise UnsupportedEncodingError(
            f"{label}pixel data is a video bitstream ({_VIDEO_SYNTAXES[ts]}, {ts}), which is not supported; "
            "export the clip from the scanner as JPEG, RLE or uncompressed DICOM, or as an MP4 file"
        )
    encapsulated = bool(ts.is_compressed)
    raw = ds["PixelData"].value
    if raw is None:
        raise InvalidInputError(f"{label}the pixel data is empty")
    if encapsulated:
        _check_encapsulated(raw, n_frames, label)
        _check_compressed_frame_sizes(raw, n_frames, rows, cols)
        try:
            decoder = pydicom.pixels.get_decoder(ts)
        except NotImplementedError as exc:
            raise UnsupportedEncodingError(f"{label}transfer syntax {ts.name} cannot be decoded") from exc
        if not decoder.is_available:
            missing = "; ".join(str(m) for m in decoder.missing_dependencies)
            raise UnsupportedEncodingError(
                f"{label}no decoder installed for {ts.name} ({ts}); install one of the plugins ({missing})"
            )
    else:
        if photometric == "YBR_FULL_422" and spp == 3:
            frame_bytes = rows * cols * 2 * (bits // 8)
        else:
            frame_bytes = (rows * cols * spp * bits + 7) // 8
        expected = frame_bytes * n_frames
        if len(raw) < expected:
            have = len(raw) // frame_bytes if frame_bytes else 0
            raise InvalidInputError(
                f"{label}pixel data is truncated: {len(raw)} bytes present, {expected} needed for "
                f"{n_frames} frames of {rows} x {cols} (only {have} complete frames)"
            )
    return PixelGeometry(rows, cols, n_frames, spp, bits, photometric, str(ts), encapsulated)


def _file_holds_pixel_data_tag(ds: Dataset) -> bool:
    """True when the file ``ds`` was read from holds the Pixel Data tag (7FE0,0010) in its bytes
    (either byte order), although the parser found no Pixel Data: the file breaks inside it."""
    filename = getattr(ds, "filename", None)
    if not isinstance(filename, (str, os.PathLike)):
        return False
    tags = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
    try:
        with open(filename, "rb") as fh:
            tail = b""
            while chunk := fh.read(1 << 20):
                buf = tail + chunk
                if any(t in buf for t in tags):
                    return True
                tail = buf[-3:]
    except OSError:
        return False
    return False


def _missing_pixel_data(ds: Dataset) -> InvalidInputError:
    """The error for a dataset without Pixel Data: a truncated or damaged image (the parser stops
    quietly at the end of a file cut short, also inside the pixel data) or a non-image object."""
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if _file_holds_pixel_data_tag(ds):
        return InvalidInputError("the pixel data is truncated or damaged (the file ends or breaks inside it)")
    if sop in US_SOP_CLASSES or "Rows" in ds or "NumberOfFrames" in ds:
        return InvalidInputError("the file is truncated or damaged: it ends before its pixel data")
    return InvalidInputError("the DICOM file has no pixel data (not an image)")


def _check_encapsulated(raw: bytes, n_frames: int, label: str) -> None:
    """Count the fragments of encapsulated pixel data without decoding them."""
    from io import BytesIO

    from pydicom.encaps import parse_basic_offsets, parse_fragments

    try:
        fp = BytesIO(raw)
        offsets = parse_basic_offsets(fp)
        n_fragments, _ = parse_fragments(fp)
    except (ValueError, EOFError, OSError) as exc:
        raise InvalidInputError(f"{label}encapsulated pixel data is corrupt or truncated ({type(exc).__name__})") from None
    if n_fragments == 0:
        raise InvalidInputError(f"{label}encapsulated pixel data holds no fragments")
    available = len(offsets) if offsets else n_fragments
    if n_frames > max(available, n_fragments if not offsets else available):
        raise InvalidInputError(
            f"{label}NumberOfFrames is {n_frames} but the pixel data holds only {available} frames"
        )

def _declared_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) a JPEG / JPEG-LS (SOFn) or JPEG 2000 (SIZ) codestream declares, read from
    its marker segments without decoding; None when no size marker is found early on."""
    if frame[:2] == b"\xff\x4f" and frame[2:4] == b"\xff\x51" and len(frame) >= 24:  # J2K SOC + SIZ
        xsiz, ysiz, xo, yo = (int.from_bytes(frame[i : i + 4], "big") for i in (8, 12, 16, 20))
        return ysiz - yo, xsiz - xo
    jp2 = frame.find(b"\xff\x4f\xff\x51", 0, 4096)
    if jp2 > 0:
        return _declared_size(frame[jp2:])
    if frame[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(frame) and i < 1 << 16:
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        length = int.from_bytes(frame[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:  # SOFn, SOF55 (JPEG-LS)
            return int.from_bytes(frame[i + 5 : i + 7], "big"), int.from_bytes(frame[i + 7 : i + 9], "big")
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def _check_compressed_frame_sizes(raw: bytes, n_frames: int, rows: int, cols: int) -> None:
    """Refuse compressed frames that declare a larger image than Rows x Columns (a
    decompression bomb: a few bytes that would decode to gigabytes)."""
    from pydicom.encaps import generate_frames

    try:
        for i, frame in enumerate(generate_frames(raw, number_of_frames=n_frames)):
            size = _declared_size(bytes(frame[:70000]))
            if size is not None and (size[0] > rows or size[1] > cols or min(size) <= 0):
                raise InvalidInputError(
                    "a compressed frame declares a larger image than the header's Rows x Columns "
                    "(a decompression bomb); refused before decoding")
            if i + 1 >= n_frames:
                break
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fragment parsing of a hostile file
        raise InvalidInputError(f"encapsulated pixel data is corrupt ({type(exc).__name__})") from None


def _to_uint8(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
    if arr.dtype.kind == "i":
        arr = arr.astype(np.int64) - int(arr.min())
        top = max(int(arr.max()), 1)
        return (arr * 255 // top).astype(np.uint8)
    shift = max(int(bits_stored) - 8, 0)
    return (arr >> shift).astype(np.uint8) if shift else arr.astype(np.uint8)


_JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"


def _decode_jpeg_baseline_frames(ds: Dataset, g: PixelGeometry, out: np.ndarray | None = None) -> np.ndarray | None:
    """JPEG Baseline YBR colour frames decoded one at a time with OpenCV (libjpeg-turbo).

    Faster and leaner than ``pydicom.pixels.pixel_array`` (its decoders plus a float YBR->RGB
    conversion of the whole clip) because only one frame is in flight; ``echomeasure bench``
    measures both.  Pixel values agree with pydicom's within the JPEG decoders'
    IDCT/upsampling differences (``tests/test_measure_decode_path.py``).  Returns None when
    anything does not fit, and the caller falls back to pydicom.  With ``out`` ((N, H, W, 3) uint8)
    the frames are decoded straight into it.
    """
    if (
        str(g.transfer_syntax) != _JPEG_BASELINE_8BIT
        or g.samples_per_pixel != 3
        or g.bits_allocated != 8
        or g.photometric not in ("YBR_FULL_422", "YBR_FULL")
    ):
        return None
    import cv2
    from pydicom.encaps import generate_frames

    if out is None:
        out = np.empty((g.n_frames, g.rows, g.columns, 3), dtype=np.uint8)
    done = 0
    try:
        for data in generate_frames(ds.PixelData, number_of_frames=g.n_frames):
            if done >= g.n_frames:
                break
            bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            if bgr is None or bgr.shape != (g.rows, g.columns, 3):
                return None
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[done])
            done += 1
    except (ValueError, EOFError, OSError, cv2.error):
        return None
    return out if done == g.n_frames else None


def decode_frames(ds: Dataset, geometry: PixelGeometry, out: np.ndarray | None = None) -> np.ndarray:
    """Decode all frames to a contiguous (N, H, W, 3) uint8 RGB array.

    Fast path: native 8-bit RGB (planar configuration 0) is viewed straight from the bytes
    (read-only; callers that modify it must copy, e.g. by the blanking multiply).  With ``out``
    (an (N, H, W, 3) uint8 array, e.g. the de-identified file's buffer) the frames end up in it and
    it is returned: JPEG Baseline frames are decoded straight into it, so a clip never exists twice.
    """
    if out is not None:
        arr = decode_frames(ds, geometry) if _decode_jpeg_baseline_frames(ds, geometry, out) is None else out
        if arr is not out:
            np.copyto(out, arr)
        return out
    g = geometry
    pi = g.photometric
    if not g.encapsulated and g.bits_allocated == 8 and g.samples_per_pixel == 3 and pi == "RGB" \
            and int(ds.get("PlanarConfiguration", 0) or 0) == 0:
        n = g.rows * g.columns * 3 * g.n_frames
        return np.frombuffer(ds.PixelData, dtype=np.uint8, count=n).reshape(g.n_frames, g.rows, g.columns, 3)
    fast = _decode_jpeg_baseline_frames(ds, g)
    if fast is not None:
        return fast
    try:
        arr = pydicom.pixels.pixel_array(ds)
    except NotImplementedError:
        raise UnsupportedEncodingError("the pixel data cannot be decoded here (NotImplementedError)") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder failing on hostile data is a user error
        raise InvalidInputError(f"the pixel data could not be decoded ({type(exc).__name__})") from None
    if g.n_frames == 1 and arr.ndim == (3 if g.samples_per_pixel == 3 else 2):
        arr = arr[None]
    if arr.shape[0] != g.n_frames:
        raise InvalidInputError(f"decoded {arr.shape[0]} frames, the header says {g.n_frames}")
    bits_stored = int(ds.get("BitsStored", g.bits_allocated) or g.bits_allocated)
    if pi == "PALETTE COLOR":
        try:
            rgb = pydicom.pixels.apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError) as exc:
            raise InvalidInputError(f"the palette colour lookup table is missing or invalid ({type(exc).__name__})") from None
        lut_bits = 16 if rgb.dtype != np.uint8 else 8
        if lut_bits == 16:
            # Palette entries are 16-bit when the LUT descriptor says so; many 8-bit LUTs are
            # stored scaled to 16 bits: take the high byte only if values exceed 255.
            rgb = (rgb >> 8).astype(np.uint8) if int(rgb.max(initial=0)) > 255 else rgb.astype(np.uint8)
        return np.ascontiguousarray(rgb)
    if g.samples_per_pixel == 1:
        gray = arr
        if gray.dtype != np.uint8 and "WindowCenter" in ds and "WindowWidth" in ds:
            try:
                gray = pydicom.pixels.apply_voi_lut(gray.astype(np.float64), ds)
            except (ValueError, KeyError, TypeError):
                gray = arr
        gray = _to_uint8(gray, bits_stored)
        if pi == "MONOCHROME1":
            gray = 255 - gray
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    # YBR_FULL / YBR_FULL_422 are converted to RGB by pydicom while decoding (as_rgb=True);
    # YBR_RCT / YBR_ICT are undone by the JPEG 2000 decoder itself.
    return np.ascontiguousarray(_to_uint8(arr, bits_stored))


def regions_from_dataset(ds: Dataset) -> tuple[Region, ...]:
    """The Sequence of Ultrasound Regions (0018,6011) as :class:`Region` values (skips broken items).

    A physical value that is absent, NaN or infinite (PhysicalDeltaX/Y, ReferencePixelPhysical
    ValueX/Y) is read as 0, the value of an absent one: a zero delta is "no scale" to every reader,
    and the calibration rule refuses a file whose measuring region has one
    (:func:`echomeasure.ingest.calibration.check_region_calibration`), while a region that
    calibrates nothing (an ECG trace) keeps its time axis unknown instead of spreading NaN.
    """
    seq = ds.get("SequenceOfUltrasoundRegions")
    if not seq:
        return ()

    def physical(item: Dataset, keyword: str) -> float:
        v = float(item.get(keyword, 0.0) or 0.0)
        if not np.isfinite(v):
            log.info("ultrasound region: %s is not a finite number; read as 0 (no scale)", keyword)
            return 0.0
        return v

    out: list[Region] = []
    for i, item in enumerate(seq):
        try:
            out.append(Region(
                x0=int(item.RegionLocationMinX0), y0=int(item.RegionLocationMinY0),
                x1=int(item.RegionLocationMaxX1), y1=int(item.RegionLocationMaxY1),
                spatial_format=int(item.get("RegionSpatialFormat", 0) or 0),
                data_type=int(item.get("RegionDataType", 0) or 0),
                units_x=int(item.get("PhysicalUnitsXDirection", 0) or 0),
                units_y=int(item.get("PhysicalUnitsYDirection", 0) or 0),
                delta_x=physical(item, "PhysicalDeltaX"),
                delta_y=physical(item, "PhysicalDeltaY"),
                ref_x0=int(item.ReferencePixelX0) if item.get("ReferencePixelX0") is not None else None,
                ref_y0=int(item.ReferencePixelY0) if item.get("ReferencePixelY0") is not None else None,
                ref_phys_x=physical(item, "ReferencePixelPhysicalValueX"),
                ref_phys_y=physical(item, "ReferencePixelPhysicalValueY"),
                flags=int(item.get("RegionFlags", 0) or 0),
            ))
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("ultrasound region %d skipped (%s)", i, type(exc).__name__)
    return tuple(out)


def color_data_extra(ds: Dataset) -> dict[str, bool]:
    """``{COLOR_DATA_PRESENT: True}`` for :attr:`Clip.extra` when UltrasoundColorDataPresent
    (0028,0014) is 1 (the file declares colour data), else ``{}``.

    The attribute is kept by de-identification (:mod:`echomeasure.ingest.retention`), so the
    gate's clip reads it from the de-identified object as the reader's does from the original.
    """
    try:
        value = ds.get("UltrasoundColorDataPresent")
        present = value is not None and value != "" and int(value) == 1
    except (TypeError, ValueError):
        log.info("UltrasoundColorDataPresent is unreadable; read as absent")
        present = False
    return {COLOR_DATA_PRESENT: True} if present else {}


def frame_time_ms(ds: Dataset) -> float | None:
    """Time between frames in ms from FrameTime, FrameTimeVector, CineRate or RecommendedDisplayFrameRate."""
    try:
        ft = ds.get("FrameTime")
        if ft not in (None, "") and float(ft) > 0:
            return float(ft)
        ftv = ds.get("FrameTimeVector")
        if ftv not in (None, ""):
            vals = [float(v) for v in (ftv if isinstance(ftv, (list, tuple, pydicom.multival.MultiValue)) else [ftv])]
            steps = [v for v in vals[1:] if v > 0]
            if steps:
                return float(sum(steps) / len(steps))
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = ds.get(kw)
            if rate not in (None, "") and float(rate) > 0:
                return 1000.0 / float(rate)
    except (TypeError, ValueError):
        log.warning("unreadable frame timing; frame time unknown")
    return None


def check_sop_class(ds: Dataset, name: str, allow_non_us: bool) -> None:
    """Refuse non-ultrasound objects unless the user allows them."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop and not _UID_SYNTAX.fullmatch(sop):
        raise InvalidInputError("the DICOM header is corrupt (the SOP Class UID is malformed)")
    meta = getattr(ds, "file_meta", None)
    media_sop = str((meta.get("MediaStorageSOPClassUID", "") if meta is not None else "") or "")
    if media_sop == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise InvalidInputError("a DICOMDIR (the index of a DICOM medium), not an image; give the image files "
                                "or the folder that holds them")
    if allow_non_us or is_ultrasound(ds):
        return
    sop = sop or media_sop
    label = (sop_class_name(sop) if sop.startswith("1.2.840.10008.") else None) or "not a registered SOP class"
    if "PixelData" not in ds:  # a report, presentation state, key object...: --allow-non-us cannot help
        raise InvalidInputError(f"not an image ({label}); give ultrasound images or cines")
    raise InvalidInputError(f"not an ultrasound object ({label}); pass --allow-non-us to read it anyway")


def clip_from_dataset(
    ds: Dataset,
    *,
    source_name: str = "",
    user_cm_per_px: float | None = None,
    allow_non_us: bool = False,
) -> Clip:
    """Validate and decode a parsed dataset into a :class:`Clip` (no de-identification)."""
    check_sop_class(ds, source_name or "file", allow_non_us)
    geometry = check_geometry(ds, source_name)
    frames = decode_frames(ds, geometry)
    return Clip(
        frames=frames,
        frame_time_ms=frame_time_ms(ds),
        regions=regions_from_dataset(ds),
        source_kind="dicom",
        source_name=source_name,
        sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")) or None,
        user_cm_per_px=user_cm_per_px,
        extra={"transfer_syntax": geometry.transfer_syntax, "photometric_interpretation": geometry.photometric,
               **color_data_extra(ds)},
    )
