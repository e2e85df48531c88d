"""The measurement catalogue: names, units, cardiac phase, LOINC codes and which model makes each.

LOINC codes are those of DICOM CID 12300 (Adult Echocardiography Measurements), which pydicom
ships as ``codes.LN``: 80011-0 "Left ventricular internal systolic dimension - 2D", 79953-6 "Aortic
root diameter", 80029-2 "Left ventricular outflow tract Vmax", and so on, so that a DICOM SR
reader finds each value under the code it expects.

Names are the contract of the CLI, CSV and JSON (docs/architecture.md).  Conventions follow
the ASE 2015 chamber-quantification guideline (calipers on tissue-blood interfaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["2d", "doppler"]
Phase = Literal["ed", "es", "systole", "diastole", "derived"]


@dataclass(frozen=True)
class Measurement:
    """One entry of the catalogue."""

    name: str
    title: str
    mode: Mode
    phase: Phase
    unit: str  # physical unit when calibrated: "cm", "m/s" or "ratio"
    ucum: str  # UCUM unit for exports
    loinc: str | None
    n_points: int  # caliper endpoints (2) or Doppler peak markers (1)
    model: str | None  # registry name of the model that proposes it (None: derived)


CATALOG: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement("ivsd", "Interventricular septum thickness, diastole", "2d", "ed", "cm", "cm", "79969-2", 2, "plax-linear"),
        Measurement("lvidd", "LV internal diameter, diastole", "2d", "ed", "cm", "cm", "80007-8", 2, "plax-linear"),
        Measurement("lvpwd", "LV posterior wall thickness, diastole", "2d", "ed", "cm", "cm", "80032-6", 2, "plax-linear"),
        Measurement("lvids", "LV internal diameter, systole", "2d", "es", "cm", "cm", "80011-0", 2, "plax-linear"),
        Measurement("la", "Left atrium antero-posterior dimension", "2d", "es", "cm", "cm", "79975-9", 2, "plax-linear"),
        Measurement("aortic_root", "Aortic root diameter at the sinuses", "2d", "ed", "cm", "cm", "79953-6", 2, "plax-linear"),
        Measurement("av_vmax", "Aortic valve peak velocity", "doppler", "systole", "m/s", "m/s", "79964-3", 1, "doppler-peaks"),
        Measurement("tr_vmax", "Tricuspid regurgitation peak velocity", "doppler", "systole", "m/s", "m/s", "79921-3", 1,
                    "doppler-peaks"),
        Measurement("lvot_vmax", "LVOT peak velocity", "doppler", "systole", "m/s", "m/s", "80029-2", 1, "doppler-peaks"),
        Measurement("mv_e", "Mitral inflow E-wave peak velocity", "doppler", "diastole", "m/s", "m/s", "80070-6", 1,
                    "doppler-peaks"),
        Measurement("mv_a", "Mitral inflow A-wave peak velocity", "doppler", "diastole", "m/s", "m/s", "80066-4", 1,
                    "doppler-peaks"),
        Measurement("mv_ea", "Mitral E/A ratio", "doppler", "derived", "ratio", "{ratio}", "18038-0", 0, None),
    )
}

#: Generous adult limits, in the catalogue unit (cm, m/s).  A proposed value outside them is a
#: failed proposal (wrong view, collapsed caliper), not a finding: ``propose`` keeps it for the
#: reviewer but gives it confidence 0 so it is flagged.
PLAUSIBLE_RANGE: dict[str, tuple[float, float]] = {
    "ivsd": (0.3, 3.0),
    "lvidd": (2.0, 9.0),
    "lvpwd": (0.3, 3.0),
    "lvids": (1.0, 8.0),
    "la": (1.5, 8.0),
    "aortic_root": (1.5, 6.0),
    "av_vmax": (0.3, 7.0),
    "tr_vmax": (0.5, 6.5),
    "lvot_vmax": (0.3, 3.5),
    "mv_e": (0.2, 2.5),
    "mv_a": (0.1, 2.0),
}


def is_plausible(name: str, value: float | None, unit: str) -> bool:
    """False when a calibrated value lies outside :data:`PLAUSIBLE_RANGE` (pixels: always True)."""
    lo_hi = PLAUSIBLE_RANGE.get(name)
    if value is None or lo_hi is None or unit != CATALOG[name].unit:
        return True
    return lo_hi[0] <= abs(value) <= lo_hi[1]


LINEAR_2D = tuple(n for n, m in CATALOG.items() if m.mode == "2d")
DOPPLER = tuple(n for n, m in CATALOG.items() if m.mode == "doppler")


def get(name: str) -> Measurement:
    """Look a measurement up by its CLI/CSV name; raises ``KeyError`` listing the valid names."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown measurement {name!r}; known: {', '.join(CATALOG)}") from None


# --------------------------------------------------------------------------- 2D keypoints
# The PLAX linear measurements share endpoints: IVSd, LVIDd/LVIDs and LVPWd lie on one line
# at the mitral leaflet tips, so four interface points give three measurements.  The 2D model
# predicts one heatmap channel per keypoint below, in this order.
KEYPOINTS_2D: tuple[str, ...] = (
    "rv_septum",  # RV blood / septum interface
    "septum_lv",  # septum / LV blood interface
    "lv_pw",  # LV blood / posterior wall interface
    "pw_pericardium",  # posterior wall / pericardium interface
    "ao_anterior",  # anterior aortic wall, inner edge (sinuses)
    "ao_posterior",  # posterior aortic wall, inner edge (sinuses)
    "la_anterior",  # posterior aortic wall, LA side
    "la_posterior",  # LA posterior wall, blood side
)

# measurement name -> (first endpoint, second endpoint), both names from KEYPOINTS_2D
LINEAR_ENDPOINTS: dict[str, tuple[str, str]] = {
    "ivsd": ("rv_septum", "septum_lv"),
    "lvidd": ("septum_lv", "lv_pw"),
    "lvpwd": ("lv_pw", "pw_pericardium"),
    "lvids": ("septum_lv", "lv_pw"),
    "aortic_root": ("ao_anterior", "ao_posterior"),
    "la": ("la_anterior", "la_posterior"),
}

# Doppler: one heatmap channel per peak type.  A spectral strip shows one flow: which
# channels apply to which flow, and the catalogue names they produce.
DOPPLER_CHANNELS: tuple[str, ...] = ("av_vmax", "tr_vmax", "lvot_vmax", "mv_e", "mv_a")
DOPPLER_FLOWS: dict[str, tuple[str, ...]] = {
    "av": ("av_vmax",),
    "tr": ("tr_vmax",),
    "lvot": ("lvot_vmax",),
    "mv": ("mv_e", "mv_a"),
}

# --------------------------------------------------------------------------- views
# What the view classifier (registry name "view") tells apart, in its output order.  Only PLAX
# cines get the PLAX linear measurements; only spectral strips get Doppler ones.
VIEWS: tuple[str, ...] = ("plax", "a4c", "a2c", "doppler", "other")
VIEW_TITLES: dict[str, str] = {
    "plax": "parasternal long axis",
    "a4c": "apical four-chamber",
    "a2c": "apical two-chamber",
    "doppler": "spectral Doppler",
    "other": "another view or not an echo",
}

#: Classes of the apical segmentation model (``apical-seg``), in output order: the CAMUS labels.
APICAL_SEG_CLASSES: tuple[str, ...] = ("background", "lv", "myocardium", "la")
#: CAMUS label value of each apical structure (0 is background), as masks and label maps carry them.
APICAL_SEG_LABELS: dict[str, int] = {name: k for k, name in enumerate(APICAL_SEG_CLASSES) if k > 0}

# --------------------------------------------------------------------------- volumes
# Chamber volumes and EF from apical segmentations (propose.apical).  Their LOINC code depends
# on the method, so each is looked up by (name, method); None where CID 12300 has no code
# (e.g. a single-plane LA area-length volume).
VOLUME_UNITS: dict[str, str] = {"lvedv": "ml", "lvesv": "ml", "lvef": "%", "la_volume": "ml", "lv_length": "cm"}
_VOLUME_LOINC: dict[tuple[str, str], str] = {
    ("lvedv", "single-plane A4C"): "79999-9",
    ("lvedv", "single-plane A2C"): "79998-1",
    ("lvedv", "biplane"): "79996-5",
    ("lvesv", "single-plane A4C"): "80004-5",
    ("lvesv", "single-plane A2C"): "80003-7",
    ("lvesv", "biplane"): "80001-1",
    ("lvef", "single-plane A4C"): "79993-2",
    ("lvef", "single-plane A2C"): "79992-4",
    ("lvef", "biplane"): "79991-6",
    ("la_volume", "area-length biplane"): "79981-7",
    ("lv_length", "single-plane A4C"): "79994-0",
}


SINGLE_PLANE = "single-plane"


def single_plane_method(view: str) -> str:
    """The method name of a single-plane volume from one apical view ("a4c" -> "single-plane A4C")."""
    return f"{SINGLE_PLANE} {view.upper()}"


def view_of_method(method: str) -> str | None:
    """The apical view a single-plane method was measured in ("A4C"), None for biplane and others."""
    head, _, view = method.partition(" ")
    return view if head == SINGLE_PLANE and view else None


def volume_loinc(name: str, method: str) -> str | None:
    """LOINC code (CID 12300) of a volume, EF or length measured by ``method``, if one exists."""
    return _VOLUME_LOINC.get((name, method))
