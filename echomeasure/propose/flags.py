"""The low-confidence flag: which proposals a reviewer should look at closely.

One rule, used by ``measure`` JSON (``"flagged"``), the review UI (dashed calipers, ``!``) and
the accuracy benchmark.  Raw confidences are model-specific, so each model version carries its
own threshold, measured on held-out cases (:func:`echomeasure.training.evaluate.confidence_flag`)
and kept in its registry entry's ``thresholds``
(:class:`echomeasure.models.registry.FlagThresholds`):

* ``low_confidence_below``: a proposal with a confidence strictly below it is flagged;
* ``flagged_mae_ratio``: how much worse the flagged quarter was held-out; below
  :data:`MIN_FLAGGED_ERROR_RATIO` the confidence did not rank errors, so only proposals below
  ``confidence_floor`` (unlike anything seen held-out: wrong view, failed caliper, an
  implausible value or anatomy, which get confidence 0) are flagged;
* no usable threshold: :data:`LOW_CONFIDENCE_THRESHOLD`.

A version may carry these figures per measurement too (``by_measurement``, measured on that
measurement's held-out proposals alone): a proposal is then judged against its own
measurement's figures by the same rule, so a measurement whose confidences run low for every
case (LA, whose far end the model places alone) is not flagged wholesale; a measurement without
its own figures uses the pooled ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Flag threshold when the model's own is unknown.
LOW_CONFIDENCE_THRESHOLD = 0.5
#: Entry threshold (:class:`echomeasure.models.registry.FlagThresholds`) holding a model version's own threshold.
THRESHOLD_METRIC = "low_confidence_below"
#: Entry threshold: mean error of the flagged quarter over the rest, held-out.
FLAG_RATIO_METRIC = "flagged_mae_ratio"
#: Entry threshold: the held-out 2nd percentile of confidence; below it a proposal is always flagged.
FLOOR_METRIC = "confidence_floor"
#: Confidence of a proposal the reviewer must check whatever the model thought (a value read from
#: a Doppler envelope alone, a phase whose frame may lie outside the cine, ...): a proposal at or
#: below it is always flagged, whatever its version's or its measurement's threshold (a measurement
#: judged only below its own floor, e.g. LA at 0.021, would otherwise let it through).
DOUBTFUL_CONFIDENCE = 0.05
#: Entry threshold: the same figures per measurement (``{name: {...}}``).
BY_MEASUREMENT = "by_measurement"
#: Flag the lowest quarter only for models whose flagged quarter had at least this much more error.
MIN_FLAGGED_ERROR_RATIO = 1.2


def flag_threshold(metrics: Mapping[str, Any] | None, fallback: float = LOW_CONFIDENCE_THRESHOLD,
                   measurement: str | None = None) -> float:
    """The confidence below which a model version's proposals (of ``measurement``, when given) are
    flagged (see the module docstring)."""
    metrics = metrics or {}
    per = metrics.get(BY_MEASUREMENT)
    if measurement is not None and isinstance(per, Mapping) and isinstance(per.get(measurement), Mapping):
        return flag_threshold(per[measurement], flag_threshold(metrics, fallback))

    def number(key: str, default: float) -> float:
        try:
            v = metrics.get(key, default)
            return default if v is None else float(v)
        except (TypeError, ValueError):
            return default

    value = number(THRESHOLD_METRIC, math.nan)
    ratio = number(FLAG_RATIO_METRIC, math.nan)
    floor = number(FLOOR_METRIC, 0.0)
    if math.isfinite(ratio) and ratio < MIN_FLAGGED_ERROR_RATIO:
        return floor if math.isfinite(floor) and floor > 0 else 0.0
    if math.isfinite(value) and value > 0:
        return value
    return float(fallback)


def is_flagged(confidence: float | None, threshold: float) -> bool:
    """True for a proposal the reviewer should look at closely (confidence below ``threshold``).

    A confidence of 0 (implausible value or anatomy) or up to :data:`DOUBTFUL_CONFIDENCE` (doubted
    for a reason outside the model) is always flagged.
    """
    if confidence is None:
        return False
    return confidence < threshold or confidence <= DOUBTFUL_CONFIDENCE


def entry_threshold(entry: Any, fallback: float = LOW_CONFIDENCE_THRESHOLD, measurement: str | None = None) -> float:
    """:func:`flag_threshold` of a registry entry (``entry.thresholds``), for ``measurement`` when given."""
    thresholds = getattr(entry, "thresholds", None)
    return flag_threshold(None if thresholds is None else thresholds.to_json(), fallback, measurement)


def entry_flags(entry: Any, measurement: str, confidence: float | None) -> bool:
    """True when a proposal of ``measurement`` with ``confidence`` is flagged by the registry
    entry's figures (that measurement's own where the entry has them): what ``measure`` JSON's
    ``"flagged"`` says."""
    return is_flagged(confidence, entry_threshold(entry, measurement=measurement))


def none_credible(proposals: Iterable[Any], entry: Any) -> bool:
    """True when no proposal with a value is credible: each below the version's pooled threshold
    (:func:`entry_threshold` without a measurement), or none has a value.

    The clip-level judgements (a cine the view classifier doubts is not taken as PLAX; a PLAX
    display is probed for a left-right mirror) ask whether the model recognised anything in the
    clip; they read this, not ``flagged``: a measurement whose own confidences do not rank its
    errors is flagged only below its floor, which says nothing about whether the clip is a PLAX.
    """
    threshold = entry_threshold(entry)
    valued = [p for p in proposals if p.value is not None]
    return not valued or all(is_flagged(p.confidence, threshold) for p in valued)
