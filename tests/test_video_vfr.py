"""Variable-frame-rate videos: the frames are timed evenly (a known limitation), and the user is told.

A phone or screen recording may hold frames 20 ms apart, then 60 ms apart.  The clip, its
de-identified copy (re-encoded at one rate) and the store know one frame time, so heart rate and
ED/ES times are approximate there: README "Videos with a variable frame rate".  What is checked:
the mean frame time is the real one (the container's average rate is not), the per-frame times
are kept on the clip (``extra["frame_times_ms"]``), and every command that reads such a file says
so in one line naming it; an evenly timed video says nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from echomeasure.ingest.video_io import read_video

av = pytest.importorskip("av")

#: 16 frames 20 ms apart, then 15 frames 60 ms apart: 1200 ms over 30 intervals, 40 ms on average.
VFR_PTS_MS = [int(t) for t in np.cumsum([0] + [20] * 15 + [60] * 15)]


def _write(path: Path, pts_ms: list[int]) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 80, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            arr = np.zeros((80, 96, 3), np.uint8)
            arr[20:40, 10 + i : 30 + i] = 200
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_vfr_video_is_timed_by_its_real_mean_and_keeps_its_frame_times(tmp_path):
    clip = read_video(_write(tmp_path / "vfr.mp4", VFR_PTS_MS))
    assert clip.n_frames == len(VFR_PTS_MS)
    assert clip.frame_time_ms == pytest.approx(40.0)
    assert clip.extra["variable_frame_rate"] is True
    assert clip.extra["frame_times_ms"] == pytest.approx(VFR_PTS_MS)
    (notice,) = clip.extra["notices"]
    assert "variable frame rate" in notice and "20-60 ms" in notice and "approximate" in notice


def test_evenly_timed_video_has_no_notice(tmp_path):
    clip = read_video(_write(tmp_path / "cfr.mp4", [i * 40 for i in range(31)]))
    assert clip.frame_time_ms == pytest.approx(40.0, rel=0.01)
    assert "notices" not in clip.extra and "frame_times_ms" not in clip.extra


@pytest.mark.parametrize("command", [["inspect"], ["deid"]])
def test_commands_reading_a_vfr_video_state_the_notice(tmp_path, command):
    """The console script (its own logging set-up, as a user runs it): one stderr line naming the file."""
    exe = Path(sys.executable).parent / "echomeasure"
    src = _write(tmp_path / "phone_recording.mp4", VFR_PTS_MS)
    argv = [str(exe), *command, str(src)] + ([str(tmp_path / "out.mp4")] if command == ["deid"] else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ECHOMEASURE_SECRET": "test-secret"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "variable frame rate" in ln]
    assert len(lines) == 1 and "phone_recording.mp4: variable frame rate" in lines[0]
    even = _write(tmp_path / "even.mp4", [i * 40 for i in range(31)])
    quiet = subprocess.run([str(exe), "inspect", str(even)], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "variable frame rate" not in quiet.stderr
