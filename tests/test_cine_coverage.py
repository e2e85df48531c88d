"""A cine that may not hold its end-diastole or end-systole: those measurements are flagged, with a notice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from echomeasure.config import PROJECT_ROOT
from echomeasure.ingest import read_clip
from echomeasure.propose import propose
from echomeasure.propose.temporal import MIN_HEARTBEAT_MS, phases_in_doubt

EXAMPLES = PROJECT_ROOT / "examples"


def test_which_phases_are_in_doubt():
    assert phases_in_doubt(1, 20.0, 0) == (frozenset(), None)  # a still is measured as the phase asked
    short, why = phases_in_doubt(10, MIN_HEARTBEAT_MS / 10, 4)
    assert short == {"ed", "es"} and "less than one heartbeat" in why
    assert phases_in_doubt(40, 20.0, 13) == (frozenset(), None)
    assert phases_in_doubt(40, 20.0, 39)[0] == {"es"}
    assert phases_in_doubt(40, None, 0)[0] == {"es"}  # no timing: the edge rule still holds
    # the cine holds another end-systole, within 5 % of the edge one: nothing in doubt
    size = 10 + 3 * np.cos(np.linspace(0, 3 * np.pi, 40))  # smallest at frame 39, a minimum at frame 13
    assert phases_in_doubt(40, 20.0, 39, size) == (frozenset(), None)
    size[39] = 6.0  # the edge far smaller than any minimum inside
    assert phases_in_doubt(40, 20.0, 39, size)[0] == {"es"}


@pytest.fixture(scope="module")
def plax_clip():
    return read_clip(EXAMPLES / "case_0000.dcm")


def test_a_plax_cine_shorter_than_a_heartbeat_flags_its_calipers(plax_clip):
    whole = propose(plax_clip)
    assert not any("heartbeat" in n for n in whole.notices)
    assert not any(m.flagged for m in whole.measurements if m.name in ("ivsd", "lvids"))
    # 6 frames, 98 ms: before, LVIDs came out 6.46 cm (5.61 on the whole cine) and nothing was flagged
    short = propose(replace(plax_clip, frames=plax_clip.frames[:6]))
    assert any("less than one heartbeat" in n for n in short.notices)
    assert short.measurements and all(m.flagged for m in short.measurements)


def test_an_apical_cine_without_its_end_systole_flags_the_systolic_figures():
    clip = read_clip(EXAMPLES / "case_0000_a4c.dcm")
    whole = {v["name"]: v for v in propose(clip).volumes}
    assert not any(v["flagged"] for v in whole.values())
    # the first 12 frames stop before end-systole: before, ESV 70.7 ml and EF 25.9 % (73.4 on the
    # whole cine) came out unflagged
    cut = propose(replace(clip, frames=clip.frames[:12]))
    by = {v["name"]: v for v in cut.volumes}
    assert any("end-systole was taken on the cine's last frame" in n for n in cut.notices)
    assert by["lvesv"]["flagged"] and by["lvef"]["flagged"] and by["la_volume"]["flagged"]
    assert not by["lvedv"]["flagged"]
