"""Video files as phones, screen recorders and converters write them: orientation and memory."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from echomeasure.ingest import read_clip

H, W = 64, 96  # at least video_io.MIN_SIDE_PX on each side


def _frames(n: int) -> np.ndarray:
    """Frames with a bright mark in the top-left corner and a grey level that counts the frames."""
    out = np.zeros((n, H, W, 3), np.uint8)
    for i in range(n):
        out[i, :, :, 1] = 4 * i
        out[i, 4:10, 4:24] = 255
    return out


def _write(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fmt: str | None = None) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _set_display_matrix(path: Path, a: int, b: int, c: int, d: int) -> None:
    """Write the track header's display matrix of an MP4 (what a phone does for a portrait video)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0  # version 0 track header
    data[at + 44 : at + 80] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


ONE = 0x10000


@pytest.mark.parametrize("matrix, turns", [
    ((0, ONE, -ONE, 0), -1),  # shown turned 90 degrees clockwise
    ((0, -ONE, ONE, 0), 1),  # shown turned 90 degrees counter-clockwise
    ((-ONE, 0, 0, -ONE), 2),  # shown upside down
])
def test_video_with_a_display_matrix_is_read_the_way_players_show_it(tmp_path, matrix, turns):
    frames = _frames(3)
    path = tmp_path / "portrait.mp4"
    _write(path, frames, "libx264", "yuv444p")
    _set_display_matrix(path, *matrix)
    clip = read_clip(path)
    upright = np.rot90(frames, turns, axes=(1, 2))
    assert clip.frames.shape == upright.shape
    mark = upright[0, :, :, 0] == 255
    assert clip.frames[0][mark].mean() > 200  # the corner mark is where the viewer saw it
    assert clip.frames[0][~mark].max(axis=-1).mean() < 40


def test_video_without_a_display_matrix_is_not_turned(tmp_path):
    frames = _frames(3)
    path = tmp_path / "landscape.mp4"
    _write(path, frames, "libx264", "yuv444p")
    clip = read_clip(path)
    assert clip.frames.shape == frames.shape
    assert clip.frames[0, 4:10, 4:24].mean() > 200


PEAK_SCRIPT = """
import sys
from echomeasure.ingest import read_clip

def peak_kib():  # this process's resident high-water mark (fresh after exec, unlike ru_maxrss)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1])

read_clip(sys.argv[2])  # decoders and their buffers loaded, and freed
before = peak_kib()
clip = read_clip(sys.argv[1])
print(clip.n_frames, clip.frames.nbytes, (peak_kib() - before) * 1024)
"""


@pytest.mark.parametrize("name, codec, pix_fmt", [
    ("clip.mp4", "libx264", "yuv420p"),  # declares its frame count
    ("clip.mkv", "ffv1", "bgr0"),  # declares none: sized from duration x rate
])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak memory")
def test_decoding_holds_the_frames_once_not_twice(tmp_path, name, codec, pix_fmt):
    """A 2,000-frame 640x480 clip is 1.8 GB of RGB: decoded into a list of frames and then
    stacked, it took twice that at its peak (3.7 GB)."""
    import subprocess
    import sys

    frames = np.zeros((90, 480, 640, 3), np.uint8)
    frames[:, 100:300, 200:400] = 200
    path, warm = tmp_path / name, tmp_path / f"warm{Path(name).suffix}"
    _write(path, frames, codec, pix_fmt)
    _write(warm, frames[:2], codec, pix_fmt)
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), str(warm)],
                         capture_output=True, text=True, check=True)
    n, nbytes, grown = map(int, run.stdout.split())
    assert n == 90 and nbytes == frames.nbytes
    assert grown < 1.4 * nbytes


def test_mkv_without_a_frame_count_reads_every_frame(tmp_path):
    frames = _frames(40)
    path = tmp_path / "clip.mkv"
    _write(path, frames, "ffv1", "bgr0")
    clip = read_clip(path)
    np.testing.assert_array_equal(clip.frames, frames)
