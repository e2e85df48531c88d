"""Contour and volume exports: COCO polygons, CAMUS PNG masks, CSV volume rows with their method."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from store_fixtures import MODEL_2D, lvidd_proposals

from echomeasure import config
from echomeasure.cli import main
from echomeasure.errors import InvalidInputError
from echomeasure.export import COCO_CONTOUR_FIRST_ID, CSV_COLUMNS, export_masks, render
from echomeasure.pipeline import ingest_path
from echomeasure.store import open_store
from echomeasure.store.contours import add_contour_review, add_contours, add_volumes, current_contours

# 64x48 px clip: a myocardium outline around an LV cavity, an atrium below, on frame 1 (ED).
MYO = [[10.0, 4.0], [40.0, 4.0], [40.0, 30.0], [10.0, 30.0]]
LV = [[16.0, 8.0], [34.0, 8.0], [34.0, 26.0], [16.0, 26.0]]
LA = [[16.0, 32.0], [34.0, 32.0], [34.0, 44.0], [16.0, 44.0]]
RV = [[42.0, 4.0], [60.0, 4.0], [60.0, 30.0]]


def _fill(store, dicom_file):
    result = ingest_path(dicom_file, store, secret=config.secret(), run_models=False)
    clip_id = result.clip.id
    store.add_proposals(clip_id, lvidd_proposals())
    store.add_review(clip_id, "ivsd", "accepted", "Dr A")  # a caliper on frame 1 (a keypoint image)
    items = [{"frame": 1, "structure": s, "polygon": p, "area_cm2": None, "confidence": 0.9}
             for s, p in (("myocardium", MYO), ("lv", LV), ("la", LA), ("rv", RV))]
    items.append({"frame": 3, "structure": "lv", "polygon": LV, "area_cm2": None, "confidence": 0.9})
    myo, lv, la, rv, lv_es = add_contours(store, clip_id, items, model=MODEL_2D)
    add_contour_review(store, clip_id, "accepted", "Dr A", contour_proposal_id=lv.id)
    add_contour_review(store, clip_id, "corrected", "Dr A", contour_proposal_id=la.id,
                       polygon=[[16.0, 32.0], [34.0, 32.0], [25.0, 44.0]])
    add_contour_review(store, clip_id, "rejected", "Dr A", contour_proposal_id=lv_es.id)
    add_volumes(store, clip_id, [
        {"name": "lvedv", "value": 101.25, "unit": "ml", "frame": 1, "method": "biplane", "confidence": 0.9},
        {"name": "lvef", "value": 55.5, "unit": "%", "frame": 3, "method": "biplane", "confidence": 0.8},
    ], model=MODEL_2D)
    return clip_id


def test_coco_export_has_polygons_of_the_reviewed_contours(store, dicom_file):
    clip_id = _fill(store, dicom_file)
    coco = json.loads(render(store, "coco"))
    cats = {c["name"]: c["id"] for c in coco["categories"] if c["id"] >= COCO_CONTOUR_FIRST_ID}
    assert set(cats) == {"lv", "la"}  # myocardium and rv only proposed, frame 3 LV rejected
    contours = [a for a in coco["annotations"] if "segmentation" in a]
    by_cat = {a["category_id"]: a for a in contours}
    lv = by_cat[cats["lv"]]
    assert lv["segmentation"] == [[c for p in LV for c in p]]
    assert lv["area"] == pytest.approx(18 * 18) and lv["bbox"] == [16.0, 8.0, 18.0, 18.0]
    assert lv["status"] == "accepted" and by_cat[cats["la"]]["status"] == "corrected"
    assert by_cat[cats["la"]]["area"] == pytest.approx(18 * 12 / 2)
    image = next(im for im in coco["images"] if im["id"] == lv["image_id"])
    assert (image["clip_id"], image["frame_index"]) == (clip_id, 1)
    assert (store.images_dir / image["file_name"]).is_file()
    # the keypoint annotations of the same frame share the image
    keypoint_frames = [a["image_id"] for a in coco["annotations"] if "keypoints" in a]
    assert lv["image_id"] in keypoint_frames


def test_coco_myocardium_category_says_its_polygon_encloses_the_lv(store, dicom_file):
    """The myocardium's stored contour is its epicardial outline: a COCO user filling the polygon
    gets the LV too unless told, so its category says so (the PNG masks have the ring)."""
    clip_id = _fill(store, dicom_file)
    myo = next(st for st in current_contours(store, clip_id) if st.structure == "myocardium")
    add_contour_review(store, clip_id, "accepted", "Dr A", contour_proposal_id=myo.proposal.id)
    cats = {c["name"]: c for c in json.loads(render(store, "coco"))["categories"]}
    assert cats["myocardium"]["encloses"] == ["lv"] and cats["myocardium"]["outline"] == "epicardial"
    assert "encloses" not in cats["lv"] and "encloses" not in cats["la"]


def test_masks_use_camus_label_values(store, dicom_file, tmp_path):
    clip_id = _fill(store, dicom_file)
    out = tmp_path / "masks"
    summary = export_masks(store, out)
    assert [m["file"] for m in summary["masks"]] == [f"clip{clip_id}_frame0001.png"]  # frame 3's LV was rejected
    mask = cv2.imread(str(out / summary["masks"][0]["file"]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1, 2, 3}
    assert mask[17, 25] == 1  # LV cavity drawn over the myocardium outline
    assert mask[5, 12] == 2  # myocardium
    assert mask[34, 25] == 3 and mask[43, 17] == 0  # the corrected (triangular) LA
    assert mask[10, 55] == 0  # rv is not a CAMUS label
    manifest = json.loads((out / "masks.json").read_text())
    assert manifest["labels"] == {"background": 0, "lv": 1, "myocardium": 2, "la": 3}
    assert manifest["masks"][0]["statuses"] == {"myocardium": "proposed", "lv": "accepted", "la": "corrected"}


def test_masks_exported_again_drop_the_frames_rejected_since_and_nothing_else(store, dicom_file, tmp_path):
    """A second export into the same folder (--force) replaces the first: a mask whose contours were all
    rejected since is removed (it was left beside the new masks.json); the user's files stay."""
    from echomeasure.store.contours import current_contours

    clip_id = _fill(store, dicom_file)
    out = tmp_path / "masks"
    first = export_masks(store, out)
    (out / "notes.txt").write_text("mine")
    (out / f"clip{clip_id}_frame0099.png").write_bytes(b"a file the export never wrote")
    for st in current_contours(store, clip_id):  # the reviewer rejects frame 1's contours
        if st.frame_index == 1 and st.proposal is not None and st.status != "rejected":
            add_contour_review(store, clip_id, "rejected", "Dr A", contour_proposal_id=st.proposal.id)
    second = export_masks(store, out, force=True)
    assert [m["file"] for m in first["masks"]] == [f"clip{clip_id}_frame0001.png"]
    assert second["masks"] == []
    assert sorted(p.name for p in out.iterdir()) == [f"clip{clip_id}_frame0099.png", "masks.json", "notes.txt"]


def test_masks_into_a_missing_parent_folder_is_an_error(store, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        export_masks(store, tmp_path / "no" / "masks")


def test_csv_rows_for_volumes_carry_the_method(store, dicom_file):
    _fill(store, dicom_file)
    rows = list(csv.DictReader(io.StringIO(render(store, "csv"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    vols = {r["measurement"]: r for r in rows if r["method"]}
    assert set(vols) == {"lvedv", "lvef"}
    assert vols["lvedv"]["value"] == "101.25" and vols["lvedv"]["unit"] == "mL" and vols["lvedv"]["method"] == "biplane"
    assert vols["lvef"]["unit"] == "%" and vols["lvef"]["model_name"] == MODEL_2D.name
    assert all(r["method"] == "" for r in rows if r["measurement"] in ("ivsd", "lvidd", "lvids"))


def test_cli_export_masks(tmp_path, dicom_file, capsys):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    with open_store(url, images_dir=tmp_path / "images") as store:
        _fill(store, dicom_file)
    capsys.readouterr()
    assert main(["export", "--db", url, "--format", "masks", "-o", str(tmp_path / "m")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["masks"] == 1 and (tmp_path / "m" / "masks.json").is_file()
    assert main(["export", "--db", url, "--format", "masks"]) == 2
    assert "error: --format masks writes files" in capsys.readouterr().err


def test_json_history_holds_contours_reviews_and_volumes(store, dicom_file):
    _fill(store, dicom_file)
    clip = json.loads(render(store, "json"))["clips"][0]
    assert [c["structure"] for c in clip["contour_proposals"]] == ["myocardium", "lv", "la", "rv", "lv"]
    assert clip["contour_proposals"][1]["polygon"] == LV
    assert [r["action"] for r in clip["contour_reviews"]] == ["accepted", "corrected", "rejected"]
    assert {v["measurement"]: v["method"] for v in clip["volumes"]} == {"lvedv": "biplane", "lvef": "biplane"}


def _ellipse(cx: float, cy: float, half_width: float, half_length: float, n: int = 24) -> list[list[float]]:
    import math

    return [[cx + half_width * math.cos(2 * math.pi * k / n), cy + half_length * math.sin(2 * math.pi * k / n)]
            for k in range(n)]


def test_csv_volume_rows_carry_the_figures_of_the_reviewed_lv_contours(store, dicom_file):
    from echomeasure.contour_volumes import clip_cm_per_px, lv_volumes

    clip_id = ingest_path(dicom_file, store, secret=config.secret(), run_models=False).clip.id
    clip = store.clip(clip_id)
    la = [[20.0, 36.0], [30.0, 36.0], [31.0, 46.0], [19.0, 46.0]]
    lv_ed, lv_es = _ellipse(25, 20, 8, 15), _ellipse(25, 23, 6, 12)
    ed, _, es, _ = add_contours(store, clip_id, [
        {"frame": 1, "structure": "lv", "polygon": lv_ed, "confidence": 0.9},
        {"frame": 1, "structure": "la", "polygon": la, "confidence": 0.9},
        {"frame": 3, "structure": "lv", "polygon": lv_es, "confidence": 0.9},
        {"frame": 3, "structure": "la", "polygon": la, "confidence": 0.9},
    ], model=MODEL_2D)
    add_volumes(store, clip_id, [
        {"name": "lvedv", "value": 99.0, "unit": "ml", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvesv", "value": 40.0, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvef", "value": 59.6, "unit": "%", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
        {"name": "lvedv", "value": 98.0, "unit": "ml", "frame": 1, "method": "biplane", "confidence": 0.9},
    ], model=MODEL_2D)

    def volume_rows():
        rows = csv.DictReader(io.StringIO(render(store, "csv")))
        return {(r["measurement"], r["method"]): r for r in rows if r["method"]}

    # Nothing reviewed: the model's figures, proposed.
    rows = volume_rows()
    assert {r["status"] for r in rows.values()} == {"proposed"}
    assert float(rows[("lvedv", "single-plane A4C")]["value"]) == 99.0
    # Only the ED contour (accepted): EDV is reviewed (the figure of its contours), ESV and EF not.
    add_contour_review(store, clip_id, "accepted", "Dr A", contour_proposal_id=ed.id)
    rows = volume_rows()
    assert rows[("lvedv", "single-plane A4C")]["status"] == "accepted"
    assert {rows[(n, "single-plane A4C")]["status"] for n in ("lvesv", "lvef")} == {"proposed"}
    assert float(rows[("lvesv", "single-plane A4C")]["value"]) == 40.0

    corrected_es = _ellipse(25, 24, 5, 10)
    add_contour_review(store, clip_id, "corrected", "Dr A", contour_proposal_id=es.id, polygon=corrected_es)
    figures = lv_volumes([{"frame": 1, "structure": "lv", "polygon": lv_ed}, {"frame": 1, "structure": "la", "polygon": la},
                          {"frame": 3, "structure": "lv", "polygon": corrected_es},
                          {"frame": 3, "structure": "la", "polygon": la}],
                         width_px=clip.width_px, height_px=clip.height_px, cm_per_px=clip_cm_per_px(clip),
                         ed_frame=1, es_frame=3)
    assert figures["edv_ml"] is not None and figures["esv_ml"] is not None
    rows = volume_rows()
    for (name, method), key in ((("lvedv", "single-plane A4C"), "edv_ml"), (("lvesv", "single-plane A4C"), "esv_ml"),
                                (("lvef", "single-plane A4C"), "ef_percent")):
        row = rows[(name, method)]
        assert row["status"] == ("accepted" if name == "lvedv" else "corrected")  # ES edited: ESV and EF
        assert float(row["value"]) == pytest.approx(figures[key], abs=1e-3)
    esv = rows[("lvesv", "single-plane A4C")]
    assert float(esv["proposed_value"]) == 40.0 and esv["frame"] == "3"
    assert rows[("lvedv", "biplane")]["status"] == "proposed" and float(rows[("lvedv", "biplane")]["value"]) == 98.0
