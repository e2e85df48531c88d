"""Readers: every bundled pydicom ultrasound file, transfer syntaxes, videos, bad input at the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from ingest_builders import REGION, canary_dataset, write_banner_video, write_canary_dicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from echomeasure.cli import main
from echomeasure.errors import InvalidInputError
from echomeasure.ingest import read_clip

US_FILES = ["examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
            "ExplVR_BigEnd.dcm"]


def bundled(name: str) -> str:
    return get_testdata_file(name, download=False)


@pytest.mark.parametrize("name", US_FILES)
def test_every_bundled_pydicom_us_file_reads_as_rgb(name):
    clip = read_clip(bundled(name))
    ds = pydicom.dcmread(bundled(name), stop_before_pixels=True)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[-1] == 3
    assert clip.frames.shape[:3] == (int(ds.get("NumberOfFrames", 1)), ds.Rows, ds.Columns)
    assert clip.frames.std() > 1  # decoded into an image, not a constant


def test_ybr_cine_frame_time_and_region():
    clip = read_clip(bundled("examples_ybr_color.dcm"))
    assert clip.frame_time_ms == pytest.approx(33.333)
    assert clip.kind == "2d" and clip.regions[0].is_2d_cm


def test_palette_colour_file_is_expanded_through_its_lut():
    clip = read_clip(bundled("examples_palette.dcm"))
    ds = pydicom.dcmread(bundled("examples_palette.dcm"))
    expected = pydicom.pixels.apply_color_lut(ds.pixel_array, ds)
    expected = (expected >> 8).astype(np.uint8) if expected.max() > 255 else expected.astype(np.uint8)
    assert np.array_equal(clip.frames[0], expected)


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_gdcm.dcm",
                                  "SC_rgb_rle_16bit.dcm", "SC_rgb_small_odd_big_endian.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "JPEG2000.dcm", "MR_small_implicit.dcm", "SC_ybr_full_422_uncompressed.dcm",
                                  "GDCMJ2K_TextGBR.dcm"])
def test_other_encodings_decode_when_non_us_is_allowed(name):
    clip = read_clip(bundled(name), allow_non_us=True)
    assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 4


def test_ybr_full_jpeg_matches_its_rgb_original_closely():
    rgb = read_clip(bundled("SC_rgb_dcmtk_+eb+cr.dcm"), allow_non_us=True).frames.astype(int)
    ybr = read_clip(bundled("SC_rgb_dcmtk_+eb+cy+n1.dcm"), allow_non_us=True).frames.astype(int)
    assert np.abs(rgb - ybr).mean() < 3


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless, JPEG2000Lossless])
def test_us_cine_converted_to_each_transfer_syntax_reads_identically(tmp_path, syntax):
    ds = canary_dataset(3)
    original = np.frombuffer(ds.PixelData, np.uint8).reshape(3, ds.Rows, ds.Columns, 3)
    if syntax.is_compressed:
        ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else "")
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "x.dcm"
    ds.save_as(path, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian, enforce_file_format=True)
    clip = read_clip(path)
    assert np.array_equal(clip.frames, original)
    assert clip.frame_time_ms == pytest.approx(20.0)


def test_retired_us_sop_class_and_frame_rate_fallbacks(tmp_path):
    ds = canary_dataset(2)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3"
    del ds.FrameTime
    ds.CineRate = 50
    clip = read_clip(write_to(tmp_path, ds))
    assert clip.frame_time_ms == pytest.approx(20.0)
    del ds.CineRate
    ds.FrameTimeVector = [0, 25, 25]
    assert read_clip(write_to(tmp_path, ds)).frame_time_ms == pytest.approx(25.0)


def write_to(folder: Path, ds, name: str = "x.dcm") -> Path:
    path = folder / name
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_videos_read_with_container_frame_time(tmp_path, container):
    frames = write_banner_video(tmp_path / f"v.{container}", container)
    clip = read_clip(tmp_path / f"v.{container}")
    assert clip.source_kind == "video" and clip.frame_time_ms == pytest.approx(40.0)
    assert clip.frames.shape == frames.shape and clip.calibration_source == "none"
    if container == "avi":  # FFV1 is lossless
        assert np.array_equal(clip.frames, frames)


def test_png_still_reads_and_user_scale_is_recorded(tmp_path):
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "s.png")
    clip = read_clip(tmp_path / "s.png", user_cm_per_px=0.03)
    assert np.array_equal(clip.frames[0], img) and clip.calibration_source == "user"


@pytest.mark.parametrize(("name", "size"), [("tiny.png", (50, 50)), ("thumb.png", (40, 300))])
def test_an_image_too_small_to_hold_an_echo_is_refused_in_one_line(tmp_path, capsys, name, size):
    """A 50 x 50 picture (e.g. a PNG renamed .dcm through the UI) got six PLAX calipers 0.1-3.7 px long."""
    from PIL import Image

    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / name)
    assert main(["measure", str(tmp_path / name), "--scale", "0.03", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / name}: ") and "an echo image needs at least 64 x 64" in err
    assert "\n" not in err


def test_inspect_reports_regions_calibration_and_deid_status(tmp_path, capsys):
    path = write_canary_dicom(tmp_path / "c.dcm", 2)
    assert main(["inspect", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 2 and info["calibration"] == "dicom" and info["kind"] == "2d"
    assert info["regions"][0]["units_x"] == "cm" and info["regions"][0]["box_px"] == list(REGION)
    assert info["deidentification"]["private_attributes"] == 2
    assert info["sop_class_name"] == "Ultrasound Multi-frame Image Storage"
    assert info["burned_in_annotation"] == "YES"


# --------------------------------------------------------------------------- bad input


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    (tmp / "text.txt").write_text("hello, this is not an image at all\n" * 10)
    out["not dicom"] = (tmp / "text.txt", "not a DICOM")
    (tmp / "empty.dcm").write_bytes(b"")
    out["empty"] = (tmp / "empty.dcm", "empty")
    good = write_canary_dicom(tmp / "good.dcm", 4).read_bytes()
    (tmp / "trunc.dcm").write_bytes(good[: len(good) - 20000])
    out["truncated"] = (tmp / "trunc.dcm", "truncated")
    ds = canary_dataset(2)
    ds.NumberOfFrames = 9
    out["too many frames"] = (write_to(tmp, ds, "frames.dcm"), "truncated")
    ds = canary_dataset(2)
    ds.NumberOfFrames = 0
    out["zero frames"] = (write_to(tmp, ds, "zero.dcm"), "zero frames")
    ds = canary_dataset(1)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01" * 10])
    out["h264 syntax"] = (write_to(tmp, ds, "h264.dcm"), "H.264")
    ds = canary_dataset(1)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    out["non us"] = (write_to(tmp, ds, "ct.dcm"), "not an ultrasound")
    ds = canary_dataset(1)
    ds.Rows = ds.Columns = 65000
    out["absurd size"] = (write_to(tmp, ds, "huge.dcm"), "refused")
    out["missing"] = (tmp / "nope.dcm", "no such file")
    (tmp / "adir").mkdir()
    out["directory"] = (tmp / "adir", "directory")
    return out


def test_bad_inputs_give_one_error_line_exit_2_and_no_output(tmp_path, capsys):
    for label, (path, needle) in _bad_files(tmp_path).items():
        out = tmp_path / f"out_{label.replace(' ', '_')}.dcm"
        commands = [["deid", str(path), str(out), "--secret", "s"]]
        if label != "non us":  # inspect describes any DICOM object ("ultrasound": false)
            commands.append(["inspect", str(path)])
        for argv in commands:
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2, (label, argv, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (label, err)
            assert needle.lower() in lines[0].lower(), (label, lines[0])
            assert "Traceback" not in err
        assert not out.exists()
        assert not list(tmp_path.glob(f".{out.name}*"))


def test_non_us_is_accepted_with_allow_flag(tmp_path, capsys):
    ds = canary_dataset(1)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    path = write_to(tmp_path, ds, "sc.dcm")
    assert main(["deid", str(path), str(tmp_path / "o.dcm"), "--secret", "s", "--allow-non-us"]) == 0
    assert (tmp_path / "o.dcm").exists()


def test_absurd_header_does_not_allocate(tmp_path):
    ds = canary_dataset(1)
    ds.Rows = ds.Columns = 100000 % 65536  # 34464: the largest a US can hold above the cap
    ds.NumberOfFrames = 1000
    with pytest.raises(InvalidInputError, match="refused|limit"):
        read_clip(write_to(tmp_path, ds))
