"""One table of calibration cases, checked against the Python rule and its browser port.

The stored value always comes from :func:`echomeasure.ingest.calibration.calibrated_value`; the
viewer's live readout while dragging comes from echomeasure/ui/calibration.js.  Both must give the same
number for the same points, so both are run on tests/data/calibration_cases.json.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from echomeasure.errors import CalibrationError
from echomeasure.ingest.calibration import calibrated_value
from echomeasure.ingest.clip import Region

ROOT = Path(__file__).resolve().parent.parent
TABLE = json.loads((Path(__file__).parent / "data" / "calibration_cases.json").read_text())["cases"]
NODE = shutil.which("node") or shutil.which("nodejs")


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("case", TABLE, ids=[c["case"] for c in TABLE])
def test_python_rule_matches_table(case):
    regions = [Region(**r) for r in case["regions"]]
    expected = case["expected"]
    if expected["error"]:
        with pytest.raises(CalibrationError):
            calibrated_value(regions, case["user_cm_per_px"], case["name"], case["points"])
        return
    value, unit, signed = calibrated_value(regions, case["user_cm_per_px"], case["name"], case["points"])
    assert unit == expected["unit"]
    assert _close(value, expected["value"])
    assert _close(signed, expected["signed"])


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed (Debian package nodejs)")
def test_browser_port_matches_table():
    script = f"""
const cal = require({json.dumps(str(ROOT / "echomeasure" / "ui" / "calibration.js"))});
const cases = {json.dumps(TABLE)};
const out = cases.map((c) => cal.calibratedValue(c.regions, c.user_cm_per_px, c.mode, c.points));
process.stdout.write(JSON.stringify(out));
"""
    proc = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60, check=True)
    results = json.loads(proc.stdout)
    assert len(results) == len(TABLE)
    for case, got in zip(TABLE, results, strict=True):
        expected = case["expected"]
        assert bool(got.get("error")) == expected["error"], case["case"]
        assert got["unit"] == expected["unit"], case["case"]
        assert _close(got["value"], expected["value"]), (case["case"], got, expected)
        assert _close(got["signed"], expected["signed"]), (case["case"], got, expected)


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed (Debian package nodejs)")
def test_browser_baseline_guide_is_the_python_zero_velocity_row():
    """The viewer draws its guide from the baseline: a scanner that gives the reference pixel a
    velocity (here the strip's top row at +80 cm/s) has its zero line elsewhere than that row."""
    from echomeasure.ingest.calibration import baseline_row

    region = {"x0": 10, "y0": 100, "x1": 500, "y1": 400, "spatial_format": 3, "data_type": 3, "flags": 0,
              "units_x": 4, "units_y": 7, "delta_x": 0.01, "delta_y": -0.8, "ref_x0": 0, "ref_y0": 0,
              "ref_phys_x": 0.0, "ref_phys_y": 80.0}
    script = f"""
const cal = require({json.dumps(str(ROOT / "echomeasure" / "ui" / "calibration.js"))});
const got = cal.calibratedValue([{json.dumps(region)}], null, "doppler", [[200, 300]]);
process.stdout.write(JSON.stringify(got));
"""
    got = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60,
                                    check=True).stdout)
    python_row = baseline_row(Region(**region))
    assert python_row == pytest.approx(200.0)  # 100 + 80 / 0.8
    assert got["baseline"] == pytest.approx(python_row)
    assert got["signed"] == pytest.approx((80.0 + (300 - 100) * -0.8) / 100)  # the value itself unchanged
