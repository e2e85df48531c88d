"""Pixel de-identification: everything outside the imaging fan is blanked (stills too), burned-in
text is searched with the OCR detector shipped inside its wheel, text in the fan is flagged."""

from __future__ import annotations

from importlib.metadata import files as dist_files
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from corpus import vendors
from pydicom.sequence import Sequence

from echomeasure.ingest import deid, deidentify_file, ocr, read_clip
from echomeasure.ingest.profile import DeidOptions

SECRET = b"pixel-secret"
LOSSLESS = [vendors.siemens_sc2000, vendors.canon_aplio, vendors.samsung_hs70, vendors.esaote_mylab,
            vendors.philips_epiq_jpegls]


def _box(mask_shape, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros(mask_shape, dtype=bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def test_the_ocr_model_ships_inside_the_installed_wheel():
    path = ocr.detector_path()
    assert path is not None and Path(path).stat().st_size > 1_000_000
    recorded = {str(f) for f in dist_files("rapidocr-onnxruntime") or []}
    assert f"rapidocr_onnxruntime/{ocr.DETECTOR_FILE}" in recorded  # installed from the wheel, not fetched


@pytest.mark.parametrize("builder", LOSSLESS, ids=lambda b: b.__name__)
def test_corner_text_inside_the_region_goes_and_the_fan_is_untouched(builder, tmp_path):
    vf = builder(tmp_path)
    summary = deidentify_file(vf.path, tmp_path / "out.dcm", secret=SECRET)
    before = read_clip(vf.path).frames
    after = read_clip(tmp_path / "out.dcm").frames
    shape = before.shape[1:3]
    x0, y0, x1, y1 = vendors.REGION_2D
    label = _box(shape, vendors.CORNER_LABEL) & ~vf.fan
    assert before[:, label].max() > 200  # the label was burned in, inside the region rectangle
    assert after[:, label].max() == 0 and after[:, _box(shape, vendors.BANNER)].max() == 0
    heart = vf.fan & _box(shape, (x0, y0, x1, y1))
    assert np.array_equal(after[:, heart], before[:, heart])  # masked pixels over the heart: 0
    pixels = summary["deid_record"]["pixels"]
    assert pixels["method"] == "region-fan-mask" and pixels["text"]["searched"]


def _fan_clip_with_text(text: str, origin: tuple[int, int], n_frames: int = 6) -> np.ndarray:
    frames = vendors.echo_frames(n_frames, "", "", seed=11)
    for f in frames:
        cv2.putText(f, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 120), 1, cv2.LINE_AA)
    return frames


def _dicom_from(frames: np.ndarray, path: Path, regions) -> Path:
    ds = vendors.base_dataset(vendors.PEOPLE["GE"], manufacturer="GE Vingmed Ultrasound", model="Vivid E95")
    vendors._set_pixels(ds, frames)
    ds.SequenceOfUltrasoundRegions = Sequence(regions)
    return vendors._write(ds, path)


def test_text_inside_the_fan_needs_human_confirmation_and_is_left_in_place(tmp_path):
    frames = _fan_clip_with_text("LVIDd 4.8 cm", (120, 130))
    src = _dicom_from(frames, tmp_path / "in.dcm", [vendors._region(vendors.REGION_2D, 1, 1, 3, 3, 0.03, 0.03)])
    summary = deidentify_file(src, tmp_path / "out.dcm", secret=SECRET)
    pixels = summary["deid_record"]["pixels"]
    assert pixels["status"] == "human confirmation needed" and pixels["human_confirmation_needed"]
    boxes = pixels["text"]["boxes_in_fan"]
    assert any(b[0] <= 125 and b[2] >= 200 and b[1] <= 125 and b[3] >= 128 for b in boxes), boxes
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.BurnedInAnnotation == "YES"
    assert "113101" not in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    text_px = _box(frames.shape[1:3], (122, 120, 200, 131)) & vendors.fan_mask()
    assert np.array_equal(read_clip(tmp_path / "out.dcm").frames[:, text_px], frames[:, text_px])


def test_text_in_a_region_without_a_found_fan_is_masked(tmp_path):
    """A 2D region whose fan cannot be found is kept as a rectangle; text found in it is blanked."""
    frames = np.full((4, 160, 240, 3), 60, dtype=np.uint8)
    frames[:, 20:150, 20:230] = np.random.default_rng(3).integers(40, 90, size=(1, 130, 210, 1), dtype=np.uint8)
    frames[:, 100:104, 100:104] = np.arange(4)[:, None, None, None] * 50  # a tiny moving patch: no fan
    for f in frames:
        cv2.putText(f, "DOE JOHN 1234567", (28, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1, cv2.LINE_AA)
    region = vendors._region((20, 20, 229, 149), 1, 1, 3, 3, 0.03, 0.03)
    result = deid.clean_pixels(frames, _regions([region]))
    assert result.method == "region-mask" and result.text["boxes_masked"]
    assert result.frames[:, 30:42, 30:150].max() < 100  # the bright text is gone
    assert result.text["masked_pixels"] > 0 and not result.text["boxes_in_fan"]


def _regions(items):
    from echomeasure.ingest.dicom_io import regions_from_dataset

    ds = pydicom.Dataset()
    ds.SequenceOfUltrasoundRegions = Sequence(items)
    return regions_from_dataset(ds)


def test_a_still_without_regions_is_cleaned_outside_its_sector(tmp_path):
    frame = vendors.echo_frames(1, "FITZGERALD SIOBHAN SN5561200", "FITZGE", seed=4)[0]
    src = tmp_path / "still.png"
    cv2.imwrite(str(src), frame[..., ::-1])
    summary = deidentify_file(src, tmp_path / "out.png", secret=SECRET)
    out = read_clip(tmp_path / "out.png").frames[0]
    assert out[_box(out.shape[:2], vendors.BANNER)].max() == 0
    assert out[_box(out.shape[:2], vendors.CORNER_LABEL) & ~vendors.fan_mask()].max() == 0
    fan = vendors.fan_mask()
    assert np.array_equal(out[fan], frame[fan])
    assert summary["deid_record"]["pixels"]["method"] == "still-sector-mask"


def test_without_the_ocr_package_the_record_says_the_text_was_not_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(ocr, "available", lambda: False)
    vf = vendors.siemens_sc2000(tmp_path)
    pixels = deidentify_file(vf.path, tmp_path / "out.dcm", secret=SECRET)["deid_record"]["pixels"]
    assert pixels["text"] == {"searched": False, "why": "the OCR package (rapidocr-onnxruntime) is not installed"}
    assert pixels["human_confirmation_needed"]


def test_the_text_search_can_be_switched_off():
    frames = _fan_clip_with_text("LVIDd 4.8 cm", (120, 130))
    regions = _regions([vendors._region(vendors.REGION_2D, 1, 1, 3, 3, 0.03, 0.03)])
    off = deid.clean_pixels(frames, regions, find_text=False)
    assert off.text["searched"] is False and off.human_confirmation_needed
    on = deid.clean_pixels(frames, regions)
    assert on.text["boxes_in_fan"] and on.human_confirmation_needed
    assert DeidOptions().find_text is True


def test_deid_command_can_skip_the_text_search(tmp_path, capsys):
    import json

    from echomeasure.cli import main

    vf = vendors.canon_aplio(tmp_path)
    assert main(["deid", str(vf.path), str(tmp_path / "out.dcm"), "--secret", "s", "--no-text-search"]) == 0
    pixels = json.loads(capsys.readouterr().out)["deid_record"]["pixels"]
    assert pixels["text"]["searched"] is False and pixels["status"] == "human confirmation needed"


def test_a_failing_detector_leaves_the_clip_for_human_confirmation(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(ocr, "find_text", broken)
    vf = vendors.canon_aplio(tmp_path)
    pixels = deidentify_file(vf.path, tmp_path / "out.dcm", secret=SECRET)["deid_record"]["pixels"]
    assert pixels["text"] == {"searched": False, "why": "the text detector failed (RuntimeError)"}
    assert pixels["status"] == "human confirmation needed"
