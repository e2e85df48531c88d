"""What a scanner draws around the ultrasound: the burned-in patient banner, the ECG, annotations.

The banner carries obviously fake identifying data (``SYNTHETIC^PATIENT^0007``) so that every
synthetic file exercises the de-identification of burned-in text.  It is always drawn *above*
the ultrasound regions, as on real scanners.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class FakeIdentity:
    """Obviously fake identifying data for one synthetic patient (header and banner)."""

    patient_name: str
    patient_id: str
    birth_date: str  # YYYYMMDD
    sex: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession_number: str
    institution: str
    referring_physician: str
    performing_physician: str
    operator: str
    station_name: str
    device_serial: str

    @property
    def banner_text(self) -> str:
        """The line a scanner burns into the top of the image."""
        d = self.study_date
        name = self.patient_name.replace("^", " ")
        t = self.study_time
        return f"{name}  ID:{self.patient_id}  {d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}  {self.institution}"


def _digest_int(*parts: object) -> int:
    text = ":".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def fake_identity(seed: int, case_index: int) -> FakeIdentity:
    """Deterministic fake identity of case ``case_index`` of a run with ``seed`` (no clock, no RNG)."""
    h = _digest_int("identity", seed, case_index)
    day = h % 3000
    # dates fixed by the seed: 2015-01-01 plus a drawn number of days, in plain arithmetic
    year, month, dom = 2015 + day // 336, 1 + (day // 28) % 12, 1 + day % 28
    birth_year = 1930 + (h >> 12) % 70
    hh, mm, ss = 8 + (h >> 20) % 10, (h >> 24) % 60, (h >> 30) % 60
    number = f"{case_index:04d}"
    return FakeIdentity(
        patient_name=f"SYNTHETIC^PATIENT^{number}",
        patient_id=f"SYN{seed % 1000:03d}{number}",
        birth_date=f"{birth_year:04d}{1 + (h >> 8) % 12:02d}{1 + (h >> 16) % 28:02d}",
        sex="MF"[(h >> 4) & 1],
        study_date=f"{year:04d}{month:02d}{dom:02d}",
        study_time=f"{hh:02d}{mm:02d}{ss:02d}",
        accession_number=f"FAKEACC{h % 10**7:07d}",
        institution="SYNTHETIC HEART INSTITUTE",
        referring_physician=f"FAKE^REFERRER^{number}",
        performing_physician=f"FAKE^SONOGRAPHER^{number}",
        operator=f"FAKE^OPERATOR^{number}",
        station_name=f"SYNTH-ECHO-{h % 100:02d}",
        device_serial=f"FAKESN{h % 10**6:06d}",
    )


def draw_banner(canvas: np.ndarray, identity: FakeIdentity, height_px: int) -> None:
    """Burn the fake patient banner into the top ``height_px`` rows of ``canvas`` (in place)."""
    canvas[:height_px] = (18, 22, 30)
    text = identity.banner_text
    width = canvas.shape[1]
    scale = 1.0
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    scale = min(0.75 * height_px / max(th, 1) * 0.6, (width - 16) / max(tw, 1))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y = int((height_px + th) / 2)
    cv2.putText(canvas, text, (8, y), FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)


def put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], height_px: float, color=(200, 200, 200)) -> None:
    """Anti-aliased text whose cap height is about ``height_px`` pixels."""
    (_, th), _ = cv2.getTextSize(text, FONT, 1.0, 1)
    scale = max(0.25, height_px / max(th, 1))
    cv2.putText(canvas, text, origin, FONT, scale, color, 1, cv2.LINE_AA)


def ecg_mv(phase: np.ndarray, systole_fraction: float) -> np.ndarray:
    """A plausible ECG (mV) as a function of cardiac phase (0 = QRS onset = end-diastole).

    P wave before the QRS, QRS at phase 0, T wave near the end of systole.  Vectorised.
    """
    ph = np.mod(np.asarray(phase, dtype=np.float64), 1.0)

    def wave(center: float, width: float, amp: float) -> np.ndarray:
        d = np.mod(ph - center + 0.5, 1.0) - 0.5
        return amp * np.exp(-0.5 * (d / width) ** 2)

    t_center = max(0.18, systole_fraction - 0.08)
    return (
        wave(-0.09, 0.022, 0.12)  # P
        + wave(0.005, 0.006, -0.12)  # Q
        + wave(0.018, 0.008, 1.0)  # R
        + wave(0.034, 0.008, -0.25)  # S
        + wave(t_center, 0.045, 0.28)  # T
    )


def draw_ecg(
    canvas: np.ndarray,
    box: tuple[int, int, int, int],
    phase_per_column: np.ndarray,
    systole_fraction: float,
    color=(60, 220, 90),
    thickness: int = 1,
) -> None:
    """Draw the ECG trace into the inclusive pixel box (x0, y0, x1, y1) of ``canvas`` (in place)."""
    x0, y0, x1, y1 = box
    mv = ecg_mv(phase_per_column, systole_fraction)
    mid = y0 + 0.62 * (y1 - y0)
    amp = 0.5 * (y1 - y0)
    ys = mid - mv * amp
    xs = np.arange(x0, x0 + len(ys), dtype=np.float64)
    pts = np.round(np.stack([xs, ys], axis=1) * 4).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, color, thickness, cv2.LINE_AA, shift=2)


def stable_uid(*parts: object) -> str:
    """A DICOM UID under the 2.25 root derived from ``parts`` (same parts -> same UID)."""
    digest = hashlib.sha256(("uid:" + ":".join(str(p) for p in parts)).encode("utf-8")).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))
