"""Hostile and broken inputs to `deid`, `inspect` and `ingest`: exit 2, one `error:` line naming the
input as given, nothing written, nothing read from the file printed (warnings included)."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pydicom
import pytest
from ingest_builders import BIRTH_DATE, CANARIES, STUDY_DATE, UIDS, write_canary_dicom
from pydicom.encaps import encapsulate

IDENTIFYING = [*CANARIES.values(), *(p for v in CANARIES.values() for p in v.split("^")), BIRTH_DATE, STUDY_DATE,
               *UIDS.values()]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ECHOMEASURE_QUARANTINE": str(cwd / "q"), "ECHOMEASURE_DB": f"sqlite:///{cwd / 'db.sqlite'}"}
    return subprocess.run([sys.executable, "-m", "echomeasure.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _flip_length(src: Path, dst: Path, tag: bytes, vr: bytes, *, high: bool) -> Path:
    data = bytearray(src.read_bytes())
    i = data.index(tag + vr)
    if high:
        data[i + 7] ^= 0x01  # +256 bytes: the value runs over the patient module
    else:
        data[i + 6] ^= 0x40
    dst.write_bytes(bytes(data))
    return dst


def _jpeg_header(width: int, height: int) -> bytes:
    """A tiny baseline JPEG whose frame header declares width x height."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    dht = b"".join(b"\xff\xc4" + struct.pack(">H", 20) + cls + bytes([1] + [0] * 15) + b"\x00"
                   for cls in (b"\x00", b"\x10"))
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + dqt + sof + dht + sos + b"\x00" * 1000 + b"\xff\xd9"


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 << 20), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _hostile(kind: str, d: Path) -> Path:
    good = write_canary_dicom(d / "good.dcm", 2)
    if kind == "flipped-length-low":
        return _flip_length(good, d / "flip.dcm", b"\x08\x00\x16\x00", b"UI", high=False)
    if kind == "flipped-length-high":
        return _flip_length(good, d / "flip.dcm", b"\x08\x00\x16\x00", b"UI", high=True)
    if kind == "invalid-transfer-syntax":
        ds = pydicom.dcmread(good)
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
        ds.save_as(d / "badts.dcm", enforce_file_format=True)
        return d / "badts.dcm"
    if kind == "unknown-vr":
        data = bytearray(good.read_bytes())
        i = data.index(b"\x08\x00\x60\x00CS")
        data[i + 4 : i + 6] = b"ES"
        (d / "es.dcm").write_bytes(bytes(data))
        return d / "es.dcm"
    if kind == "jpeg-bomb":
        (d / "bomb.jpg").write_bytes(_jpeg_header(65000, 65000))
        return d / "bomb.jpg"
    if kind == "png-bomb":
        (d / "bomb.png").write_bytes(_png_header(30000, 30000))
        return d / "bomb.png"
    if kind == "dicom-jpeg-bomb":
        ds = pydicom.dcmread(good)
        ds.NumberOfFrames = 1
        ds.PixelData = encapsulate([_jpeg_header(65000, 65000)])
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.save_as(d / "bomb.dcm", enforce_file_format=True)
        return d / "bomb.dcm"
    if kind == "newline-in-name":
        p = d / "bad\nname.dcm"
        p.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 10)
        return p
    raise AssertionError(kind)


HOSTILE = ["flipped-length-low", "flipped-length-high", "invalid-transfer-syntax", "unknown-vr", "jpeg-bomb",
           "png-bomb", "dicom-jpeg-bomb", "newline-in-name"]


def _assert_contract(proc: subprocess.CompletedProcess, given: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    shown = json.dumps(given) if "\n" in given else given
    assert shown in proc.stderr
    for value in IDENTIFYING:
        assert value not in proc.stderr and value not in proc.stdout, value


@pytest.mark.parametrize("kind", HOSTILE)
def test_deid_of_a_hostile_input_is_one_error_line_and_writes_nothing(tmp_path, kind):
    src = _hostile(kind, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _cli("deid", src.name, str(out_dir / "x.dcm"), "--secret", "s", cwd=tmp_path)
    _assert_contract(proc, src.name)
    assert list(out_dir.iterdir()) == []
    assert [p for p in (tmp_path / "q").iterdir() if p.name.startswith("echomeasure-q-")] == []


@pytest.mark.parametrize("kind", ["flipped-length-high", "unknown-vr", "invalid-transfer-syntax", "dicom-jpeg-bomb"])
def test_inspect_of_a_hostile_input_is_one_error_line(tmp_path, kind):
    src = _hostile(kind, tmp_path)
    _assert_contract(_cli("inspect", src.name, cwd=tmp_path), src.name)


def test_ingest_puts_no_value_of_a_broken_header_in_its_json(tmp_path):
    src = _hostile("flipped-length-high", tmp_path)
    proc = _cli("ingest", str(src), "--no-propose", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert line["status"] == "error" and line["error"]
    for value in IDENTIFYING:
        assert value not in proc.stdout and value not in proc.stderr


@pytest.mark.parametrize("target", ["fifo", "directory", "missing-folder"])
def test_deid_refuses_an_output_that_is_not_a_regular_file(tmp_path, target):
    write_canary_dicom(tmp_path / "in.dcm", 1)
    if target == "fifo":
        out = tmp_path / "pipe"
        os.mkfifo(out)
    elif target == "directory":
        out = tmp_path / "folder"
        out.mkdir()
    else:
        out = tmp_path / "nope" / "x.dcm"
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _cli("deid", "in.dcm", str(out), "--secret", "s", cwd=tmp_path)
    _assert_contract(proc, str(out))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("q", "db.sqlite")) == \
        [n for n in before if n not in ("q", "db.sqlite")]
    if target == "fifo":
        import stat

        assert stat.S_ISFIFO(os.stat(out).st_mode)  # still the FIFO, not replaced by a file


def test_pydicom_log_records_are_dropped(tmp_path, caplog):
    from echomeasure.errors import EchomeasureError
    from echomeasure.ingest import inspect_file

    src = _hostile("flipped-length-low", tmp_path)
    with caplog.at_level(logging.DEBUG), pytest.raises(EchomeasureError):
        inspect_file(src)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in IDENTIFYING:
        assert value not in text


def test_a_device_as_output_is_refused_before_anything_is_written():
    """Checked with the output-path rule itself (it only stats): a regression here must never be
    found by writing over a real device."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.ingest import _check_output_path

    for device in ("/dev/null", "/dev/full"):
        if Path(device).exists():
            with pytest.raises(InvalidInputError, match="not a regular file"):
                _check_output_path(Path(device))
