"""Names written the way people write them in kept free-text values (ViewName, StageName, code
meanings) are found and dropped: Chinese/Japanese names written as one run of characters,
umlauts written out (Müller as MUELLER), letters without a strippable accent (ø, ł) and
Cyrillic look-alike letters.  Each case starts from a real SonoSite cine in pydicom's test data
and must be admitted with the value removed."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from echomeasure.ingest import deidentify_file
from echomeasure.ingest.profile import DeidOptions

SECRET = b"door-trial-secret"
NO_OCR = DeidOptions(find_text=False)

CASES = [
    # (PatientName, kept attribute, value a sonographer typed there)
    ("李^小龙", "ViewName", "李小龙"),
    ("李^龙", "ViewName", "李龙 PLAX"),
    ("Yamada^Tarou=山田^太郎", "ViewName", "山田太郎"),
    ("Müller^Jörg", "ViewName", "PLAX MUELLER"),
    ("Müller^Jörg", "StageName", "Joerg"),
    ("Søren^Kierkegård", "ViewName", "SOREN K"),
    ("Łukasz^Wałęsa", "ViewName", "Lukasz plax"),
    ("Quenbyx^Xavierinne", "ViewName", "Qu\u0435nbyx"),  # Cyrillic "е"
    ("Ng^Li", "ViewName", "NGLI"),
    ("Ng^Li", "CodeMeaning", "LING view"),
]


def _write(tmp_path, patient_name: str, keyword: str, value: str):
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    if keyword == "CodeMeaning":
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "99001", "99LOCAL", value
        ds.ViewCodeSequence = Sequence([item])
    else:
        setattr(ds, keyword, value)
    path = tmp_path / "in.dcm"
    pydicom.dcmwrite(path, ds)
    return path


def _kept(ds: Dataset, keyword: str):
    if keyword == "CodeMeaning":
        items = ds.get("ViewCodeSequence") or []  # an item whose meaning was dropped goes with it
        return items[0].get("CodeMeaning") if items else None
    return ds.get(keyword)


@pytest.mark.parametrize(("patient_name", "keyword", "value"), CASES)
def test_a_name_written_another_way_in_a_kept_value_is_dropped(tmp_path, patient_name, keyword, value):
    src = _write(tmp_path, patient_name, keyword, value)
    out = tmp_path / "out.dcm"
    summary = deidentify_file(src, out, secret=SECRET, options=NO_OCR)
    assert _kept(pydicom.dcmread(out), keyword) is None
    assert value.encode("utf-8") not in out.read_bytes()
    dropped = [d["attribute"] for d in summary["deid_record"]["dropped_values"]]
    assert any(keyword in a for a in dropped)
    assert all(value not in str(d) for d in summary["deid_record"]["dropped_values"])


@pytest.mark.parametrize("view_name", ["PLAX", "A4C", "Apical 4 chamber, Doppler colour flow"])
def test_a_view_name_without_the_name_is_kept(tmp_path, view_name):
    src = _write(tmp_path, "李^小龙", "ViewName", view_name)
    out = tmp_path / "out.dcm"
    deidentify_file(src, out, secret=SECRET, options=NO_OCR)
    assert str(pydicom.dcmread(out).ViewName) == view_name


@pytest.mark.parametrize(("keyword", "value"), [("ViewName", "Solocanary Jane"), ("ViewName", "PLAX for J Smith"),
                                                ("StageName", "Peak, Dr Hollowmere"), ("ViewName", "心尖四腔 王芳")])
def test_a_descriptor_with_words_outside_the_view_vocabulary_is_dropped(tmp_path, keyword, value):
    """A name typed into ViewName/StageName that is in no other header field: nothing to compare
    it with, so the descriptor is kept only when all its words are view and stage words."""
    src = _write(tmp_path, "", keyword, value)
    out = tmp_path / "out.dcm"
    summary = deidentify_file(src, out, secret=SECRET, options=NO_OCR)
    assert keyword not in pydicom.dcmread(out)
    assert value.split()[-1].encode("utf-8") not in out.read_bytes()
    reasons = [d["reason"] for d in summary["deid_record"]["dropped_values"] if keyword in d["attribute"]]
    assert reasons and "free text" in reasons[0]


def test_the_gate_refuses_a_free_text_descriptor_the_deidentifier_left():
    import io

    from echomeasure.errors import DeidentificationError
    from echomeasure.ingest import deid, gate

    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ids = gate.collect_dicom_identifiers(ds, secret=SECRET)
    good = deid.dicom_bytes(deid.deidentify_dicom(ds, ds.pixel_array[:1, :, :, :], (), secret=SECRET,
                                                  options=NO_OCR).dataset)
    leaky = pydicom.dcmread(io.BytesIO(good))
    leaky.StageName = "Jane Solocanary"
    with pytest.raises(DeidentificationError, match="StageName"):
        gate.check_dicom_bytes(ids, deid.dicom_bytes(leaky), secret=SECRET)


def test_a_view_code_meaning_with_free_text_is_dropped_and_a_standard_one_kept(tmp_path):
    """A local coding scheme accepts any Code Meaning: a name there is dropped; SNOMED's
    "Apical four chamber" and "Heart" stay."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ds.PatientName = ""

    def code(value, scheme, meaning):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
        return item

    view = code("399214001", "SCT", "Apical four chamber")
    view.ViewModifierCodeSequence = Sequence([code("L1", "99LOCAL", "Jane Solocanary")])
    ds.ViewCodeSequence = Sequence([view])
    ds.AnatomicRegionSequence = Sequence([code("80891009", "SCT", "Heart")])
    src = tmp_path / "in.dcm"
    pydicom.dcmwrite(src, ds)
    summary = deidentify_file(src, tmp_path / "out.dcm", secret=SECRET, options=NO_OCR)
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.ViewCodeSequence[0].CodeMeaning == "Apical four chamber"
    assert out.AnatomicRegionSequence[0].CodeMeaning == "Heart"
    # the code item lost its meaning, so the item goes (a code item without a meaning is invalid)
    assert len(out.ViewCodeSequence[0].ViewModifierCodeSequence) == 0
    assert all("CodeMeaning" in item for seq in (out.ViewCodeSequence, out.AnatomicRegionSequence) for item in seq)
    assert b"Solocanary" not in (tmp_path / "out.dcm").read_bytes()
    assert any("CodeMeaning in ViewModifierCodeSequence" in d["attribute"]
               for d in summary["deid_record"]["dropped_values"])
