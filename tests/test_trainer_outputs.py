"""A training script whose report (written only at its end) cannot be written there is refused at
the start: one ``error:`` line naming the option and the path as given, exit status 2, nothing
rendered, trained or written."""

from __future__ import annotations

import pytest

from echomeasure.training import apical_seg_train, interface_offset_fit, plax_seg_train, view_train

CASES = [
    (apical_seg_train.main, ["--report", "{missing}/report"], "--report"),
    (apical_seg_train.main, ["--evaluate-styles", "classic", "--styles-report", "{missing}/styles"], "--styles-report"),
    (plax_seg_train.main, ["--report", "{missing}/plax_seg.json"], "--report"),
    (plax_seg_train.main, ["--report", "{folder}"], "--report"),
    (view_train.main, ["--report", "{missing}/view"], "--report"),
    (interface_offset_fit.main, ["--out", "{missing}/io.json"], "--out"),
]


@pytest.mark.parametrize(("main", "args", "option"), CASES)
def test_an_unwritable_report_is_refused_before_any_work(tmp_path, capsys, monkeypatch, main, args, option):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(weights))
    monkeypatch.setenv("ECHOMEASURE_CACHE", str(tmp_path / "cache"))
    given = [a.format(missing=tmp_path / "no_such_folder", folder=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(weights), *given] if main is not interface_offset_fit.main else given)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: {option} ")
    assert str(tmp_path) in err[0]  # the path as the user gave it
    assert not any(weights.iterdir()) and not (tmp_path / "no_such_folder").exists()
