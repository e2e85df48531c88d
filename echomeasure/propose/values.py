"""A proposal's value in physical units, and whether it is plausible: one rule for every proposer
(the PLAX calipers, the Doppler peaks, the EchoNet-Measurements checkpoints)."""

from __future__ import annotations

import logging

from echomeasure import catalog
from echomeasure.errors import CalibrationError
from echomeasure.ingest.calibration import physical_value as calibrated_value
from echomeasure.ingest.clip import Clip
from echomeasure.propose.types import Point

log = logging.getLogger(__name__)


def physical_value(clip: Clip, name: str, points: tuple[Point, ...]) -> tuple[float | None, str, float | None]:
    """Value, unit and signed value of a proposal through the clip's calibration.

    The rule is :func:`echomeasure.ingest.calibration.physical_value`.  A calibration problem for
    one measurement (e.g. wrong units) is logged and the value left in pixels, so the other
    measurements are still proposed.
    """
    try:
        return calibrated_value(clip, name, points)
    except CalibrationError as exc:
        log.warning("%s: %s; value left in pixels", name, exc)
        return None, "px", None


def plausibility(name: str, value: float | None, unit: str) -> float:
    """1, or 0 for a value outside the catalogue's plausible range (flagged for the reviewer)."""
    if catalog.is_plausible(name, value, unit):
        return 1.0
    log.warning("%s = %.3g %s is outside the plausible range %s: proposed with confidence 0",
                name, value, unit, catalog.PLAUSIBLE_RANGE.get(name))
    return 0.0
