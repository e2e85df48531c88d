"""An inverted spectral display (PhysicalDeltaY > 0) is shown to the Doppler model upright."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from echomeasure.ingest.clip import UNIT_CM, Clip
from echomeasure.models.preprocess import CropTransform, doppler_display_inverted
from echomeasure.training.datasets import doppler_case

#: A vendor-family mitral strip (evaluation seed) drawn inverted: shown as drawn, the shipped
#: model put its A peaks on the baseline (0.008 m/s for 0.897) and the value was flagged implausible.
INVERTED_MITRAL_SEED = 9_050_034


def _clip(strip) -> Clip:
    return Clip(strip.image[None], None, strip.regions, "dicom")


def _spectral(clip: Clip):
    return max((r for r in clip.regions if r.is_spectral), key=lambda r: (r.x1 - r.x0) * (r.y1 - r.y0))


def test_the_inverted_display_is_read_from_the_velocity_axis_sign():
    strip = doppler_case(INVERTED_MITRAL_SEED, style="vendor")
    assert strip.truth["style"]["inverted"]
    clip = _clip(strip)
    assert doppler_display_inverted(clip)
    region = _spectral(clip)
    upright = replace(clip, regions=tuple(replace(r, delta_y=-abs(r.delta_y)) if r is region else r
                                          for r in clip.regions))
    assert not doppler_display_inverted(upright)
    # a spectral region without a velocity (or frequency) axis says nothing about the display
    unitless = replace(clip, regions=tuple(replace(r, units_y=UNIT_CM) if r is region else r for r in clip.regions))
    assert not doppler_display_inverted(unitless)


def test_the_flipped_transform_maps_points_to_the_pixels_they_show():
    strip = doppler_case(INVERTED_MITRAL_SEED, style="vendor", small=True)
    clip = _clip(strip)
    flipped = CropTransform.for_clip(clip, (128, 256), "doppler")
    plain = replace(flipped, flip_y=False)
    assert flipped.flip_y
    assert np.array_equal(flipped.crop_resize(clip.frames[0]), plain.crop_resize(clip.frames[0])[:, ::-1])
    rng = np.random.default_rng(0)
    b = flipped.box
    pts = np.column_stack([rng.uniform(b.x0, b.x1, 50), rng.uniform(b.y0, b.y1, 50)])
    assert np.allclose(flipped.to_image(flipped.to_model(pts)), pts)
    m_plain, m_flip = plain.to_model(pts), flipped.to_model(pts)
    assert np.allclose(m_flip[:, 0], m_plain[:, 0])
    assert np.allclose(m_flip[:, 1], 127 - m_plain[:, 1])  # the top row of the crop is the model's last


def test_an_inverted_mitral_strip_is_measured_like_an_upright_one():
    from echomeasure.propose import propose

    strip = doppler_case(INVERTED_MITRAL_SEED, style="vendor")
    assert strip.flow == "mv"
    result = propose(_clip(strip), only="mv_e,mv_a")
    by = {p.name: p for p in result.measurements}
    truth = strip.truth["measurements"]
    for name in ("mv_e", "mv_a"):
        assert by[name].unit == "m/s"
        assert by[name].value == pytest.approx(truth[name]["value"], rel=0.10), name
