"""Videos (AVI, MP4, MOV, MKV through PyAV) and stills (PNG, JPEG): read, and re-encode clean.

Re-encoding is how container metadata (title, comment, creation_time, GPS, ...) is dropped: the
frames are decoded and written into a *new* container with no metadata copied.  The input's
container type is kept: MP4/MOV -> H.264 in MP4/MOV, AVI -> FFV1 (lossless) in AVI, MKV -> FFV1
in Matroska; PNG -> PNG, JPEG -> JPEG (no EXIF, no comments).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from echomeasure.errors import InvalidInputError, UnsupportedEncodingError
from echomeasure.ingest.clip import Clip
from echomeasure.ingest.dicom_io import MAX_SIDE_PX, MAX_TOTAL_BYTES

log = logging.getLogger(__name__)

VideoContainer = Literal["mp4", "mov", "avi", "matroska"]
ImageFormat = Literal["png", "jpeg"]

# Metadata keys that muxers write on their own; everything else counts as user metadata.
TECHNICAL_METADATA_KEYS = frozenset({
    "encoder", "major_brand", "minor_version", "compatible_brands", "handler_name", "vendor_id",
    "language", "duration", "software",
})


def sniff(path: Path) -> tuple[Literal["dicom", "video", "image", "unknown"], str | None]:
    """Guess what a file is from its first bytes: (kind, container/format name)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom", None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image", "png"
    if head[:3] == b"\xff\xd8\xff":
        return "image", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head[4:8] == b"ftyp":
        return "video", "mov" if head[8:12] == b"qt  " else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "matroska"
    return "unknown", None


#: Smallest frame side measured (px): below it there is no echo to measure.
MIN_SIDE_PX = 64


def _check_size(name: str, n: int, h: int, w: int) -> None:
    if h <= 0 or w <= 0:
        raise InvalidInputError("the video has no picture size")
    if h < MIN_SIDE_PX or w < MIN_SIDE_PX:
        # a 50 x 50 picture got six PLAX calipers 0.1-3.7 px long; EchoNet's videos are 112 x 112
        raise InvalidInputError(f"{w} x {h} pixels per frame; an echo image needs at least {MIN_SIDE_PX} x {MIN_SIDE_PX}")
    if h > MAX_SIDE_PX or w > MAX_SIDE_PX:
        raise InvalidInputError(f"{w} x {h} pixels per frame; more than {MAX_SIDE_PX} x {MAX_SIDE_PX} is refused")
    if n * h * w * 3 > MAX_TOTAL_BYTES:
        raise InvalidInputError(f"{n} frames of {w} x {h} exceed the {MAX_TOTAL_BYTES // 2**30} GiB limit; split the clip")


def container_metadata(source: str | Path | bytes) -> dict[str, str]:
    """All metadata of a video container and its streams, as ``{"scope:key": value}``."""
    import av

    src = BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    out: dict[str, str] = {}
    try:
        with av.open(src) as c:
            for k, v in c.metadata.items():
                out[f"container:{k}"] = str(v)
            for i, s in enumerate(c.streams):
                for k, v in s.metadata.items():
                    out[f"stream{i}:{k}"] = str(v)
    except av.error.FFmpegError as exc:
        raise _unreadable(source, exc) from None
    return out


# --------------------------------------------------------------------------- truncation
# A video cut short (a copy or download that stopped) often still opens and decodes: the demuxer
# stops quietly at the end of the bytes, so only the first part of the clip would be measured.
# The container's own structure says how long the file should be: the RIFF chunk sizes of an AVI,
# the top-level box sizes of an MP4/MOV, the Segment size of a Matroska file.  A file shorter than
# that is cut short; it is refused when frames are missing (fewer decoded than the container
# declares).  Frame counts alone are not trusted: a healthy AVI written from a variable frame rate
# declares its empty "repeat the last frame" chunks as frames, and MP4 edit lists drop frames.

TRUNCATED = "the video is truncated (the file is shorter than its container declares)"


def _riff_cut_short(fh: BinaryIO, size: int) -> bool:
    """True when a RIFF chunk (AVI, and the AVIX chunks of OpenDML AVIs) runs past the end of the file."""
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(8)
        if head[:4] != b"RIFF":
            return False  # trailing bytes that are not a chunk: not ours to judge
        n = int.from_bytes(head[4:8], "little")
        if n in (0, 0xFFFFFFFF):
            return False  # size never written (an unfinished recording): unknown
        if pos + 8 + n > size:
            return True
        pos += 8 + n + (n & 1)
    return False


def _boxes_cut_short(fh: BinaryIO, size: int) -> bool:
    """True when a top-level ISO BMFF box (MP4, MOV) runs past the end of the file."""
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(16)
        n = int.from_bytes(head[:4], "big")
        if n == 1:  # 64-bit size after the type
            if len(head) < 16:
                return True
            n = int.from_bytes(head[8:16], "big")
        elif n == 0:
            return False  # the last box extends to the end of the file
        if n < 8:
            return False  # malformed: the demuxer judges
        if pos + n > size:
            return True
        pos += n
    return False


def _ebml_vint(data: bytes, i: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """(value, length, all ones) of the EBML variable-length integer at ``data[i]``."""
    if i >= len(data) or data[i] == 0:
        return None
    length = 8 - data[i].bit_length() + 1
    if i + length > len(data):
        return None
    raw = int.from_bytes(data[i : i + length], "big")
    value = raw if keep_marker else raw & ((1 << (7 * length)) - 1)
    return value, length, value == (1 << (7 * length)) - 1


def _segment_cut_short(fh: BinaryIO, size: int) -> bool:
    """True when the Segment of a Matroska/WebM file declares more bytes than the file holds."""
    fh.seek(0)
    data = fh.read(4096)
    i = 0
    for _ in range(4):  # the EBML header, possibly Void elements, then the Segment
        ident = _ebml_vint(data, i, keep_marker=True)
        length = _ebml_vint(data, i + ident[1], keep_marker=False) if ident else None
        if ident is None or length is None:
            return False
        start = i + ident[1] + length[1]
        if ident[0] == 0x18538067:  # Segment
            return not length[2] and start + length[0] > size
        i = start + length[0]
    return False


def _cut_short(source: str | Path | bytes) -> bool:
    """True when the container structure of a video declares more bytes than the file holds."""
    try:
        fh: BinaryIO
        if isinstance(source, (bytes, bytearray)):
            fh, size = BytesIO(source), len(source)
        else:
            fh, size = open(source, "rb"), Path(source).stat().st_size  # noqa: SIM115 - closed below
        with fh:
            head = fh.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _riff_cut_short(fh, size)
            if head[4:8] == b"ftyp":
                return _boxes_cut_short(fh, size)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _segment_cut_short(fh, size)
    except OSError:
        return False
    return False


def _unreadable(source: str | Path | bytes, exc: Exception) -> InvalidInputError:
    """The error for a video that cannot be opened: truncated when its structure says so."""
    if _cut_short(source):
        return InvalidInputError(f"{TRUNCATED}; it cannot be opened")
    return InvalidInputError(f"not a readable video ({type(exc).__name__})")


def _check_complete(path: Path, n_decoded: int, declared: int, expected_s: float | None, rate: float | None) -> None:
    """Refuse a video cut short that lost frames: fewer decoded than the container declares (or,
    where it declares no count, than its duration holds); a complete file is trusted as decoded."""
    if not _cut_short(path):
        if declared and n_decoded < declared:
            log.info("%d of %d declared frames decoded (empty or repeated frames in the container)",
                     n_decoded, declared)
        return
    if not declared and expected_s and rate:
        declared = int(round(expected_s * rate))
    if not declared:
        raise InvalidInputError(f"{TRUNCATED}; how many frames it should hold is unknown")
    if n_decoded < declared:
        raise InvalidInputError(f"{TRUNCATED}: only {n_decoded} of its {declared} frames could be decoded")
    log.warning("the file is cut short after its last frame; all %d frames were decoded", n_decoded)


def display_turns(frame: object) -> int:
    """Quarter turns counter-clockwise (0-3, for :func:`numpy.rot90`) that show a decoded frame upright.

    A phone or screen recorder stores a portrait recording as landscape pixels with a display
    matrix (MP4/MOV ``tkhd``, Matroska projection) telling players to turn it; PyAV gives its
    angle as ``VideoFrame.rotation`` (counter-clockwise degrees).  Angles that are not a multiple
    of 90 degrees are left alone.
    """
    angle = getattr(frame, "rotation", 0) or 0
    try:
        turns = float(angle) / 90.0
    except (TypeError, ValueError):
        return 0
    return int(round(turns)) % 4 if abs(turns - round(turns)) < 1e-3 else 0


def read_video(path: Path, *, user_cm_per_px: float | None = None) -> Clip:
    """Decode every frame of a video file to a :class:`Clip` (uncalibrated unless a scale is given).

    Frames are turned upright as a player shows them (:func:`display_turns`) and decoded into
    one array sized from the container's frame count, so a long clip takes its own size in memory
    once (a list of frames stacked at the end took twice as much).
    """
    import av

    name = path.name
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    with container:
        if not container.streams.video:
            raise InvalidInputError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        h, w = int(cc.height or 0), int(cc.width or 0)
        declared = int(stream.frames or 0)
        _check_size(name, max(declared, 1), h, w)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frame_time = 1000.0 / float(rate) if rate else None
        buf: np.ndarray | None = None
        n = 0
        turns = 0
        times_s: list[float | None] = []
        try:
            for frame in container.decode(stream):
                times_s.append(frame.time)
                arr = frame.to_ndarray(format="rgb24")
                if buf is None:
                    turns = display_turns(frame)
                if turns:
                    arr = np.rot90(arr, turns)
                if buf is None:
                    _check_size(name, max(declared, 1), arr.shape[0], arr.shape[1])
                    buf = np.empty((_initial_capacity(declared, container.duration, rate, arr.shape), *arr.shape),
                                   dtype=np.uint8)
                elif arr.shape != buf.shape[1:]:
                    raise InvalidInputError("frames change size within the video; not supported")
                if n == buf.shape[0]:
                    _check_size(name, n + 1, arr.shape[0], arr.shape[1])
                    grown = np.empty((_grown_capacity(n, arr.shape), *arr.shape), dtype=np.uint8)
                    grown[:n] = buf
                    buf = grown
                buf[n] = arr
                n += 1
        except av.error.FFmpegError as exc:
            if not n:
                if _cut_short(path):
                    raise InvalidInputError(f"{TRUNCATED}; no frame could be decoded") from None
                raise InvalidInputError(f"the video could not be decoded ({type(exc).__name__})") from None
            raise InvalidInputError(
                f"the video is truncated or damaged: decoding failed after {n} frames ({type(exc).__name__})"
            ) from None
        codec = cc.name
        expected_s = container.duration / 1_000_000 if container.duration else None
    if buf is None or not n:
        raise InvalidInputError("the video holds zero frames")
    _check_complete(path, n, declared, expected_s, float(rate) if rate else None)
    if turns:
        log.info("frames turned %d degrees counter-clockwise, as the container's display matrix says", 90 * turns)
    extra: dict = {"codec": codec}
    times = frame_times_ms(times_s[:n])
    if times is not None and variable_frame_rate(times):
        # the clip (and its de-identified copy, re-encoded at one rate) is timed evenly: the mean
        # of the real intervals, which the container's average rate only approximates
        frame_time = float(times[-1] / (n - 1))
        notice = vfr_notice(times)
        extra.update(frame_times_ms=[round(float(t), 3) for t in times], variable_frame_rate=True, notices=[notice])
        log.warning("%s: %s", name, notice)
    return Clip(
        frames=buf[:n],
        frame_time_ms=frame_time,
        regions=(),
        source_kind="video",
        source_name=name,
        user_cm_per_px=user_cm_per_px,
        extra=extra,
    )


#: Frame intervals further than this fraction (and 1 ms) from their median make a video's frame
#: rate variable: the time of frame i is then not i times one frame time.
VFR_TOLERANCE = 0.2


def frame_times_ms(times_s: list[float | None]) -> np.ndarray | None:
    """Presentation time of each decoded frame in ms from the first (None when a frame has no
    timestamp, or the times do not increase: nothing to tell the rate by)."""
    if len(times_s) < 3 or any(t is None for t in times_s):
        return None
    t = (np.asarray(times_s, dtype=np.float64) - float(times_s[0])) * 1000.0  # type: ignore[arg-type]
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        return None
    return t


def variable_frame_rate(times_ms: np.ndarray) -> bool:
    """True when some frame interval differs from the median one by more than :data:`VFR_TOLERANCE`."""
    d = np.diff(times_ms)
    med = float(np.median(d))
    return bool(np.any(np.abs(d - med) > max(VFR_TOLERANCE * med, 1.0)))


def vfr_notice(times_ms: np.ndarray) -> str:
    """The one-line notice of a variable-frame-rate video (README: "Videos with a variable frame rate")."""
    d = np.diff(times_ms)
    mean = float(times_ms[-1]) / len(d)
    return (f"variable frame rate (frame intervals {d.min():.0f}-{d.max():.0f} ms): frames are timed evenly at the "
            f"mean {mean:.1f} ms, so heart rate, ED/ES times and other time-based figures are approximate")


def _initial_capacity(declared: int, duration_us: int | None, rate: object, frame_shape: tuple[int, ...]) -> int:
    """Frames to allocate before decoding: the declared count, else duration x rate (Matroska and
    WebM declare no count), within the size limit."""
    if declared > 0:
        return declared
    try:
        estimate = int(duration_us / 1_000_000 * float(rate)) + 1 if duration_us and rate else 1  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        estimate = 1
    return max(1, min(estimate, MAX_TOTAL_BYTES // max(1, int(np.prod(frame_shape)))))


def _grown_capacity(n: int, frame_shape: tuple[int, ...]) -> int:
    """Frames to hold when a video has more frames than it declared: half as many again, within the size limit."""
    per_frame = int(np.prod(frame_shape))
    return max(n + 1, min(n + max(16, n // 2), MAX_TOTAL_BYTES // max(1, per_frame)))


def read_image(path: Path, *, user_cm_per_px: float | None = None) -> Clip:
    """Decode a PNG/JPEG still into a one-frame :class:`Clip` (metadata is not carried over)."""
    from PIL import Image

    name = path.name
    try:
        with Image.open(path) as im:
            w, h = im.size
            _check_size(name, 1, h, w)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except InvalidInputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on hostile files (bombs included)
        raise InvalidInputError(f"not a readable image ({type(exc).__name__})") from None
    return Clip(frames=rgb[None].copy(), frame_time_ms=None, regions=(), source_kind="image",
                source_name=name, user_cm_per_px=user_cm_per_px)


def encode_video(frames: np.ndarray, container_format: VideoContainer, frame_time_ms: float | None) -> bytes:
    """Encode frames into a new container with no metadata: bytes of the whole file."""
    import av

    n, h, w, _ = frames.shape
    fps = Fraction(1000.0 / frame_time_ms).limit_denominator(1001) if frame_time_ms else Fraction(30)
    buf = BytesIO()
    fmt = {"mp4": "mp4", "mov": "mov", "avi": "avi", "matroska": "matroska"}[container_format]
    try:
        with av.open(buf, mode="w", format=fmt, options={"fflags": "+bitexact"}) as out:
            if container_format in ("mp4", "mov"):
                stream = out.add_stream("libx264", rate=fps)
                stream.pix_fmt = "yuv420p" if (h % 2 == 0 and w % 2 == 0) else "yuv444p"
                stream.options = {"crf": "12", "preset": "veryfast"}
            else:
                stream = out.add_stream("ffv1", rate=fps)
                stream.pix_fmt = "bgr0"
            stream.width, stream.height = w, h
            stream.codec_context.flags |= getattr(av.codec.context.Flags, "BITEXACT", 0)
            for arr in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except av.error.FFmpegError as exc:
        raise UnsupportedEncodingError(f"could not write the de-identified video ({type(exc).__name__})") from exc
    return buf.getvalue()


def encode_image(frame: np.ndarray, image_format: ImageFormat) -> bytes:
    """Encode one RGB frame as PNG or JPEG with no metadata."""
    from PIL import Image

    buf = BytesIO()
    im = Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
    if image_format == "png":
        im.save(buf, format="PNG", optimize=False)
    else:
        im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def image_metadata(data: bytes) -> dict[str, str]:
    """Text metadata of a PNG/JPEG (text chunks, comments, EXIF strings) as ``{key: value}``."""
    from PIL import Image

    out: dict[str, str] = {}
    try:
        with Image.open(BytesIO(data)) as im:
            w, h = im.size
            _check_size("", 1, h, w)
            for k, v in im.info.items():
                if isinstance(v, (str, bytes)) and k not in ("icc_profile",):
                    out[f"info:{k}"] = v.decode("latin-1") if isinstance(v, bytes) else v
            for tag, value in im.getexif().items():
                if isinstance(value, (str, bytes)):
                    out[f"exif:{tag}"] = value.decode("latin-1", "replace") if isinstance(value, bytes) else value
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on hostile files (bombs included)
        raise InvalidInputError(f"not a readable image ({type(exc).__name__})") from None
    return out
