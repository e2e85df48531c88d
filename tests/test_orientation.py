"""Apex-down 2D displays: shown to the models upright, proposals drawn on the image as displayed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from echomeasure.config import PROJECT_ROOT
from echomeasure.ingest.clip import Clip
from echomeasure.propose import orientation
from echomeasure.propose.measure import measure_file

EXAMPLES = PROJECT_ROOT / "examples"


def _turned_copy(src: Path, dst: Path, axis: str, *, reference_pixel: bool = True) -> Path:
    """The example mirrored along ``axis`` as a scanner stores such a display: "y" apex down (the 2D
    region's box and reference pixel, the apex at depth 0, at the bottom; PhysicalDeltaY negative),
    "x" left-right invert; without ``reference_pixel`` the region loses it (the fan must decide)."""
    ds = pydicom.dcmread(src)
    frames = ds.pixel_array
    ds.PixelData = np.ascontiguousarray(frames[:, ::-1] if axis == "y" else frames[:, :, ::-1]).tobytes()
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    size = int(ds.Rows if axis == "y" else ds.Columns)
    lo_key, hi_key, ref_key, delta_key = (("RegionLocationMinY0", "RegionLocationMaxY1", "ReferencePixelY0", "PhysicalDeltaY")
                                          if axis == "y" else
                                          ("RegionLocationMinX0", "RegionLocationMaxX1", "ReferencePixelX0", "PhysicalDeltaX"))
    for r in ds.SequenceOfUltrasoundRegions:
        lo, hi = int(r[lo_key].value), int(r[hi_key].value)
        setattr(r, lo_key, size - 1 - hi)
        setattr(r, hi_key, size - 1 - lo)
        setattr(r, delta_key, -float(r[delta_key].value))
        if ref_key in r:
            if reference_pixel:
                setattr(r, ref_key, (hi - lo) - int(r[ref_key].value))
            else:
                delattr(r, ref_key)
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.fixture(scope="module")
def a4c_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apex_down")
    src = EXAMPLES / "case_0000_a4c.dcm"
    down = _turned_copy(src, folder / "a4c_apex_down.dcm", "y")
    return measure_file(src, per_frame=False), measure_file(down), pydicom.dcmread(src).Rows


def test_an_apex_down_a4c_is_recognised_and_measured_like_the_upright_one(a4c_pair):
    upright, down, _ = a4c_pair
    assert upright["view"]["name"] == "a4c"
    # shown as displayed, the view classifier called it PLAX 0.63 and no volume came out
    assert down["view"]["name"] == "a4c"
    assert down["notices"][0] == orientation.NOTICE
    up_v = {m["name"]: m["value"] for m in upright["measurements"]}
    down_v = {m["name"]: m["value"] for m in down["measurements"]}
    assert set(down_v) == set(up_v) and {"lvedv", "lvesv", "lvef"} <= set(down_v)
    for name in ("lvedv", "lvesv", "la_volume"):
        assert down_v[name] == pytest.approx(up_v[name], abs=1.0), name
    assert down_v["lvef"] == pytest.approx(up_v["lvef"], abs=1.0)


def test_the_apex_down_contours_lie_on_the_image_as_displayed(a4c_pair):
    upright, down, rows = a4c_pair
    key = lambda s: (s["frame"], s["structure"])  # noqa: E731
    up = {key(s): np.asarray(s["polygon"], float) for s in upright["segmentations"]}
    dn = {key(s): np.asarray(s["polygon"], float) for s in down["segmentations"]}
    assert up.keys() == dn.keys() and up
    def filled(poly: np.ndarray) -> np.ndarray:
        mask = np.zeros((rows, 1024), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        return mask.astype(bool)

    for k, poly in up.items():
        mirrored = dn[k].copy()
        mirrored[:, 1] = rows - 1 - mirrored[:, 1]
        a, b = filled(mirrored), filled(poly)
        # the same outline, mirrored (the pixel data went through a re-encode)
        assert (a & b).sum() / (a | b).sum() > 0.95, k


def test_an_apex_down_plax_without_a_reference_pixel_is_turned_by_its_fan(tmp_path):
    src = EXAMPLES / "case_0000.dcm"
    upright = measure_file(src)
    down = measure_file(_turned_copy(src, tmp_path / "plax_down.dcm", "y", reference_pixel=False))
    rows = pydicom.dcmread(src).Rows
    assert down["notices"][0] == orientation.NOTICE
    up_by = {m["name"]: m for m in upright["measurements"]}
    down_by = {m["name"]: m for m in down["measurements"]}
    assert set(up_by) == set(down_by) == {"ivsd", "lvidd", "lvpwd", "lvids", "la", "aortic_root"}
    for name, m in up_by.items():
        assert down_by[name]["value"] == pytest.approx(m["value"], abs=0.05), name
        pts = np.asarray(down_by[name]["points"], float)
        pts[:, 1] = rows - 1 - pts[:, 1]
        assert np.allclose(pts, m["points"], atol=1.5), name


def test_the_fan_taper_tells_up_from_down_and_a_rectangle_decides_nothing():
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    fan = (np.abs(xx - w / 2) <= 0.6 * yy) & (np.hypot(xx - w / 2, yy) <= h - 1)  # apex at the top
    assert orientation.fan_taper(fan) >= orientation.FAN_TAPER
    assert orientation.fan_taper(fan[::-1]) <= 1 / orientation.FAN_TAPER
    rectangle = np.zeros((h, w), bool)
    rectangle[20:180, 40:260] = True
    assert 1 / orientation.FAN_TAPER < orientation.fan_taper(rectangle) < orientation.FAN_TAPER
    # a video of that rectangle (a linear probe) is taken as shown
    rng = np.random.default_rng(0)
    frames = np.zeros((12, h, w, 3), np.uint8)
    frames[:, rectangle] = rng.integers(30, 220, (12, int(rectangle.sum()), 1), dtype=np.uint8)
    assert not orientation.apex_down(Clip(frames, 33.0, (), "video"))
    frames = np.zeros((12, h, w, 3), np.uint8)
    frames[:, fan[::-1]] = rng.integers(30, 220, (12, int(fan.sum()), 1), dtype=np.uint8)
    assert orientation.apex_down(Clip(frames, 33.0, (), "video"))


def test_a_doppler_strip_is_never_turned():
    from echomeasure.training.datasets import doppler_case

    strip = doppler_case(9_050_034, style="vendor", small=True)
    clip = Clip(np.ascontiguousarray(strip.image[None, ::-1]), None, strip.regions, "dicom")
    assert not orientation.apex_down(clip)


def test_a_mirrored_plax_is_measured_the_standard_way_round(tmp_path):
    src = EXAMPLES / "case_0000.dcm"
    upright = measure_file(src)
    assert orientation.MIRROR_NOTICE not in upright["notices"] and orientation.NOTICE not in upright["notices"]
    # shown mirrored, every caliper came out flagged and wrong (aortic root 6.0 cm for 3.0)
    down = measure_file(_turned_copy(src, tmp_path / "plax_mirrored.dcm", "x"))
    cols = pydicom.dcmread(src).Columns
    assert down["notices"][0] == orientation.MIRROR_NOTICE
    up_by = {m["name"]: m for m in upright["measurements"]}
    down_by = {m["name"]: m for m in down["measurements"]}
    assert set(up_by) == set(down_by)
    for name, m in up_by.items():
        assert down_by[name]["value"] == pytest.approx(m["value"], abs=0.05), name
        assert down_by[name]["flagged"] == m["flagged"], name
        pts = np.asarray(down_by[name]["points"], float)
        pts[:, 0] = cols - 1 - pts[:, 0]
        assert np.allclose(pts, m["points"], atol=1.5), name
    for s_up, s_down in zip(upright["segmentations"], down["segmentations"], strict=True):
        assert (s_up["frame"], s_up["structure"]) == (s_down["frame"], s_down["structure"])


def test_a_reference_pixel_at_the_bottom_does_not_turn_an_upright_fan(tmp_path):
    """A hostile or odd file: an upright picture whose 2D region puts its depth-0 reference pixel at
    the bottom.  The pixels win: nothing is turned."""
    src = EXAMPLES / "case_0000.dcm"
    ds = pydicom.dcmread(src)
    for r in ds.SequenceOfUltrasoundRegions:
        if r.RegionSpatialFormat == 1 and "ReferencePixelY0" in r:
            r.ReferencePixelY0 = int(r.RegionLocationMaxY1) - int(r.RegionLocationMinY0)
    odd = tmp_path / "odd.dcm"
    ds.save_as(odd, enforce_file_format=True)
    upright = measure_file(src)
    got = measure_file(odd)
    assert orientation.NOTICE not in got["notices"]
    assert {m["name"]: m["value"] for m in got["measurements"]} == {m["name"]: m["value"] for m in upright["measurements"]}


def test_a_regionless_clip_has_its_fan_searched_once_and_is_measured_as_before(monkeypatch):
    """A clip without regions (a video, here apex down): the apex-down check, the view classifier
    and the 2D models all look at its fan box; it is searched once per clip (recorded on the clip,
    turned upright with it), and the proposals are those of a search in every step."""
    from types import MappingProxyType

    from echomeasure.ingest import load
    from echomeasure.models import preprocess
    from echomeasure.propose import propose

    dclip = load(EXAMPLES / "case_0000.dcm", secret=b"test-secret-not-for-production")
    frames = np.ascontiguousarray(dclip.clip.frames[:, ::-1])  # apex down; without regions the fan decides
    searches: list[tuple[int, ...]] = []
    search = preprocess.detect_sector_box

    def counted(f: np.ndarray, **kw) -> preprocess.Box:
        searches.append(f.shape)
        return search(f, **kw)

    monkeypatch.setattr(preprocess, "detect_sector_box", counted)
    once = propose(Clip(frames, dclip.clip.frame_time_ms, (), "video"))
    assert len(searches) == 1 and once.notices[0] == orientation.NOTICE

    # a clip on which nothing can be recorded: each step searches the displayed or turned frames itself
    searches.clear()
    every = propose(Clip(frames, dclip.clip.frame_time_ms, (), "video", extra=MappingProxyType({})))
    assert len(searches) >= 2
    assert once.measurements == every.measurements and once.measurements
    assert once.segmentations == every.segmentations and once.notices == every.notices
