"""The catalogue's LOINC codes are the ones DICOM SR readers look for (CID 12300)."""

from __future__ import annotations

from pydicom.sr._concepts_dict import concepts

from echomeasure import catalog

ECHO_MEASUREMENTS_CID = 12300


def _loinc_table() -> dict[str, tuple[str, list[int]]]:
    table: dict[str, tuple[str, list[int]]] = {}
    for by_code in concepts["LN"].values():
        table.update(by_code)
    return table


def test_every_coded_measurement_is_in_cid_12300():
    table = _loinc_table()
    coded = [m for m in catalog.CATALOG.values() if m.loinc]
    assert len(coded) >= 12
    for m in coded:
        assert m.loinc in table, f"{m.name}: {m.loinc} is not a LOINC code pydicom knows"
        _meaning, cids = table[m.loinc]
        assert ECHO_MEASUREMENTS_CID in cids, f"{m.name}: {m.loinc} is not in CID 12300"


def test_volume_codes_follow_the_method_and_are_in_cid_12300():
    table = _loinc_table()
    assert catalog.volume_loinc("lvedv", "single-plane A4C") != catalog.volume_loinc("lvedv", "biplane")
    assert catalog.volume_loinc("la_volume", "area-length A4C") is None
    for (name, method), code in catalog._VOLUME_LOINC.items():
        meaning, cids = table[code]
        assert ECHO_MEASUREMENTS_CID in cids, (name, method, code)
        if method.startswith("single-plane"):
            assert method.split()[-1].replace("A", "").replace("C", "") in meaning, (name, method, meaning)
        if method == "biplane":
            assert "biplane" in meaning


def test_single_plane_method_names_round_trip_to_their_view():
    for view in ("a4c", "a2c"):
        method = catalog.single_plane_method(view)
        assert catalog.volume_loinc("lvedv", method) is not None
        assert catalog.view_of_method(method) == view.upper()
    assert catalog.view_of_method("biplane") is None and catalog.view_of_method("area-length biplane") is None
