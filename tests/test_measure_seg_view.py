"""``measure --model <segmentation model>`` says which view the clip is, like ``measure`` does."""

from __future__ import annotations

from echomeasure.config import PROJECT_ROOT
from echomeasure.models.segmentation import measure_file_segmentation

EXAMPLES = PROJECT_ROOT / "examples"


def test_a_built_in_segmentation_model_reports_the_classified_view():
    # before: "view": {"name": "plax-seg", "confidence": null}, a model's name where a view belongs
    plax = measure_file_segmentation(EXAMPLES / "case_0000.dcm", "plax-seg")
    assert plax["view"]["name"] == "plax" and 0.5 < plax["view"]["confidence"] <= 1.0
    apical = measure_file_segmentation(EXAMPLES / "case_0000_a4c.dcm", "apical-seg")
    assert apical["view"]["name"] == "a4c" and apical["view"]["confidence"] > 0.5
