"""User errors from the command line: one ``error:`` line naming the input as given, exit 2, no traceback.

Truncated and damaged inputs (JPEG DICOM cut anywhere, MJPEG AVI cut short), paths that cannot be
resolved (symlink loops), argparse errors, and output that cannot be written (full disk, closed pipe).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from echomeasure.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOPPLER_JPEG = EXAMPLES / "case_0002.dcm"  # 85 kB JPEG Baseline Doppler strip


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code: int, out: str, err: str, given: str, *needles: str) -> str:
    assert code == 2, err
    assert out == ""
    assert err.startswith(f"error: {given}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# --------------------------------------------------------------------------- DICOM cut short (bug10)


@pytest.mark.parametrize("keep", [400, 700, 1500, 3000, 40_000, "half", "-10", "-200"])
def test_a_truncated_jpeg_dicom_says_truncated_or_damaged_not_no_pixel_data(tmp_path, capsys, keep):
    raw = DOPPLER_JPEG.read_bytes()
    assert pydicom.dcmread(DOPPLER_JPEG, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
    n = len(raw) // 2 if keep == "half" else len(raw) + int(keep) if isinstance(keep, str) else keep
    path = tmp_path / "cut.dcm"
    path.write_bytes(raw[:n])
    for command in ("inspect", "measure"):
        argv = [command, str(path)] + (["-q"] if command == "measure" else [])
        err = _one_error_line(*_run(capsys, *argv), str(path))
        assert "truncated or damaged" in err and "no pixel data" not in err


def test_a_dicom_that_is_not_an_image_still_says_it_has_no_pixel_data(tmp_path, capsys):
    ds = pydicom.dcmread(DOPPLER_JPEG)
    del ds.PixelData
    for keyword in ("Rows", "Columns", "NumberOfFrames"):
        if keyword in ds:
            delattr(ds, keyword)
    assert ds.Modality == "US"  # so that the SOP class check lets it through to the pixel data
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    _one_error_line(*_run(capsys, "inspect", str(path)), str(path), "no pixel data (not an image)")


def test_an_uncompressed_truncated_dicom_keeps_its_precise_message(tmp_path, capsys):
    ds = pydicom.dcmread(DOPPLER_JPEG)
    ds.decompress()
    buf = io.BytesIO()
    ds.save_as(buf)
    path = tmp_path / "native.dcm"
    path.write_bytes(buf.getvalue()[:-5000])
    _one_error_line(*_run(capsys, "inspect", str(path)), str(path), "pixel data is truncated:")


def test_a_symlink_loop_says_the_path_cannot_be_resolved(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("loopB", "loopA")
    os.symlink("loopA", "loopB")
    for argv in (["measure", "-q", "loopA"], ["inspect", "loopA"], ["deid", "loopA", "out.dcm", "--secret", "s"]):
        err = _one_error_line(*_run(capsys, *argv), "loopA", "cannot be resolved (symlink loop)")
        assert "no such file" not in err
    assert not (tmp_path / "out.dcm").exists()


def test_a_dangling_symlink_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("gone.dcm", "link.dcm")
    _one_error_line(*_run(capsys, "measure", "-q", "link.dcm"), "link.dcm", "symbolic link to a missing file")


# --------------------------------------------------------------------------- every command names its input (bug8)


def test_measure_names_the_input_as_typed_like_inspect(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero.dcm").write_bytes(b"")
    inspected = _one_error_line(*_run(capsys, "inspect", "./zero.dcm"), "./zero.dcm", "the file is empty")
    measured = _one_error_line(*_run(capsys, "measure", "-q", "./zero.dcm"), "./zero.dcm", "the file is empty")
    assert measured == inspected == "error: ./zero.dcm: the file is empty\n"
    _one_error_line(*_run(capsys, "measure", "-q", "sub/../nope.dcm"), "sub/../nope.dcm", "no such file")


def test_an_option_error_names_the_option_not_the_file(tmp_path, capsys):
    code, out, err = _run(capsys, "measure", "-q", "--only", "ivsd,bogus", str(DOPPLER_JPEG))
    assert code == 2 and out == "" and err.startswith("error: --only ivsd,bogus: unknown measurement 'bogus'")
    assert str(DOPPLER_JPEG) not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["evaluate", "--dataset", "echonet-lvh", "{missing}", "-q"],
    ["evaluate", "--dataset", "camus", "{missing}"],
    ["train", "--dataset", "echonet-lvh", "{missing}", "-q"],
    ["train", "--dataset", "masks", "{missing}"],
    ["weights", "import", "echonet-measurements", "{missing}"],
    ["ingest", "{missing}", "--no-propose"],
    ["deid", "{missing}", "{tmp}/out.dcm", "--secret", "s"],
])
def test_every_command_that_reads_a_path_names_it_as_given(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.chdir(tmp_path)
    given = "no_such/../input"
    code, out, err = _run(capsys, *(a.format(missing=given, tmp=tmp_path) for a in argv))
    assert code == 2 and err.startswith(f"error: {given}: ") and err.count("\n") == 1, err
    assert f"{given}: {given}" not in err  # named once


def test_ingest_of_folders_without_media_names_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("# no images here")
    _one_error_line(*_run(capsys, "ingest", "empty", "notes/"), "empty, notes/", "no files to ingest")
    code, out, err = _run(capsys, "ingest")
    assert code == 2 and err == "error: give the files or folders to ingest (or --from-parquet DIR)\n"


def test_named_message_rules():
    from echomeasure.errors import InvalidInputError, WeightsError
    from echomeasure.ingest.hygiene import named_message

    assert named_message("a.dcm", InvalidInputError("the file is empty")) == "a.dcm: the file is empty"
    assert named_message("a.dcm", InvalidInputError("a.dcm: the file is empty")) == "a.dcm: the file is empty"
    assert named_message("ds", InvalidInputError("ds/list.csv lacks a column")) == "ds/list.csv lacks a column"
    # a longer name that merely ends or starts with the input's is not the input
    assert named_message("ds", InvalidInputError("/x/ds/list.csv lacks a column")) == "ds: /x/ds/list.csv lacks a column"
    assert named_message("a", InvalidInputError("a scale of 20 is implausible")).startswith("a: ")  # a word, not the path
    assert named_message("db", InvalidInputError("no database at db; run ingest")) == "no database at db; run ingest"
    assert named_message("a.dcm", InvalidInputError("--scale 0 is not plausible")) == "--scale 0 is not plausible"
    assert named_message("a.dcm", WeightsError("no model weights in w/")) == "no model weights in w/"
    assert named_message("bad\nname.dcm", InvalidInputError("empty")) == '"bad\\nname.dcm": empty'


# --------------------------------------------------------------------------- videos cut short (bug9)


def _write_video(path: Path, codec: str, n_frames: int = 20, *, pts: list[int] | None = None) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height = 96, 64
        s.pix_fmt = {"mjpeg": "yuvj420p", "ffv1": "bgr0"}.get(codec, "yuv420p")
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def _read(path: Path) -> int | str:
    from echomeasure.errors import EchomeasureError
    from echomeasure.ingest import read_clip

    try:
        return read_clip(path).n_frames
    except EchomeasureError as exc:
        return str(exc)


@pytest.mark.parametrize(("name", "codec"), [("mjpeg.avi", "mjpeg"), ("mpeg4.avi", "mpeg4"), ("h264.mp4", "libx264"),
                                             ("h264.mov", "libx264"), ("ffv1.mkv", "ffv1")])
def test_a_video_cut_short_is_refused_and_a_whole_one_read(tmp_path, name, codec):
    whole = tmp_path / name
    _write_video(whole, codec)
    assert _read(whole) == 20
    data = whole.read_bytes()
    cut = tmp_path / f"cut{whole.suffix}"
    for keep in (len(data) // 10, len(data) // 3, len(data) // 2, int(len(data) * 0.8)):
        cut.write_bytes(data[:keep])
        got = _read(cut)
        assert isinstance(got, str) and got.startswith(f"{cut}: the video is truncated"), (keep, got)


def test_an_avi_cut_after_its_last_frame_keeps_every_frame_and_is_read(tmp_path):
    whole = tmp_path / "clip.avi"
    _write_video(whole, "mjpeg")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[:-10])  # only the index at the end is lost
    assert _read(cut) == 20


def test_a_whole_avi_declaring_more_frames_than_it_decodes_is_read(tmp_path):
    """A variable-frame-rate AVI: the muxer writes empty 'repeat' chunks, counted as frames in the header."""
    import av

    path = tmp_path / "vfr.avi"
    _write_video(path, "mjpeg", 10, pts=[0, 1, 2, 5, 6, 10, 11, 12, 20, 21])
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames > 10  # the header's count is off
    assert _read(path) == 10


def test_a_video_written_by_opencv_is_read_whole_and_refused_cut(tmp_path):
    import cv2

    path = tmp_path / "cv.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    writer.release()
    assert _read(path) == 12
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert "truncated" in str(_read(cut))


def test_measure_refuses_a_truncated_avi_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_video(tmp_path / "clip.avi", "mjpeg")
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "trunc.avi").write_bytes(data[: len(data) // 3])
    _one_error_line(*_run(capsys, "measure", "-q", "--per-frame", "trunc.avi"), "trunc.avi",
                    "the video is truncated", "of its 20 frames")


# --------------------------------------------------------------------------- argparse and stdout (bug11)


@pytest.mark.parametrize(("argv", "needle", "prog"), [
    (["measure", "--scale", "abc", "x.dcm"], "argument --scale: invalid float value: 'abc'", "echomeasure measure"),
    (["measure"], "the following arguments are required: PATH", "echomeasure measure"),
    (["measure", ""], "argument PATH: the path is empty", "echomeasure measure"),
    (["inspect"], "required: path", "echomeasure inspect"),
    (["weights", "import"], "required: SOURCE, DIR", "echomeasure weights import"),
    (["export", "--format", "xml"], "argument --format: invalid choice: 'xml'", "echomeasure export"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'", "echomeasure"),
    ([], "required: COMMAND", "echomeasure"),
])
def test_argparse_errors_are_one_line(capsys, argv, needle, prog):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "usage:" not in err, err
    assert needle in err and err.endswith(f"(see {prog} --help)\n"), err


class _FailingStdout(io.StringIO):
    def __init__(self, exc: OSError) -> None:
        super().__init__()
        self.exc = exc

    def write(self, text: str) -> int:
        raise self.exc


def test_a_full_disk_is_one_line_and_a_closed_pipe_is_quiet(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _FailingStdout(OSError(28, "No space left on device")))
    assert main(["inspect", str(DOPPLER_JPEG)]) == 1
    assert capsys.readouterr().err == "error: cannot write the output: No space left on device\n"
    monkeypatch.setattr(sys, "stdout", _FailingStdout(BrokenPipeError(32, "Broken pipe")))
    assert main(["inspect", str(DOPPLER_JPEG)]) == 141
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_writing_to_dev_full_from_the_console_script(tmp_path):
    env = {**os.environ, "ECHOMEASURE_QUARANTINE": str(tmp_path / "q")}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "echomeasure.cli", "inspect", str(DOPPLER_JPEG)],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and proc.stderr == "error: cannot write the output: No space left on device\n"


def test_a_closed_pipe_from_the_console_script_is_quiet(tmp_path):
    env = {**os.environ, "ECHOMEASURE_QUARANTINE": str(tmp_path / "q")}
    proc = subprocess.Popen([sys.executable, "-m", "echomeasure.cli", "inspect", str(DOPPLER_JPEG)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the result is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b""


def test_a_non_finite_number_is_never_printed_as_json(tmp_path, capsys, monkeypatch):
    from echomeasure import cli

    monkeypatch.setattr(cli, "_measure", lambda args: {"file": "x", "measurements": [{"value": float("nan")}]})
    code, out, err = _run(capsys, "measure", "-q", "case.dcm")
    _one_error_line(code, out, err, "case.dcm", "not a finite number")
    monkeypatch.setattr(cli, "_measure", lambda args: {"value": float("inf")})
    assert _run(capsys, "measure", "-q", "case.dcm")[0] == 2
    monkeypatch.setattr(cli, "_measure", lambda args: {"value": 1.5})
    code, out, err = _run(capsys, "measure", "-q", "case.dcm")
    assert code == 0 and json.loads(out) == {"value": 1.5}
