"""Contact sheet: synthetic frames next to a real echo frame, to judge realism by eye."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from echomeasure import atomic
from echomeasure.synthetic.doppler import FLOWS, render_doppler, sample_doppler_params
from echomeasure.synthetic.plax import ed_es_frames, render_plax, sample_plax_params
from echomeasure.synthetic.studio import case_rng

log = logging.getLogger(__name__)
TILE = (360, 480)  # (height, width)


def _tile(img: np.ndarray, caption: str) -> np.ndarray:
    th, tw = TILE
    h, w = img.shape[:2]
    s = min(th / h, tw / w)
    small = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((th + 22, tw, 3), 40, dtype=np.uint8)
    y0, x0 = (th - small.shape[0]) // 2, (tw - small.shape[1]) // 2
    out[22 + y0 : 22 + y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    cv2.putText(out, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 160), 1, cv2.LINE_AA)
    return out


def real_reference_frame() -> np.ndarray | None:
    """Frame 0 of pydicom's real SonoSite echo cine (``examples_ybr_color.dcm``), RGB, or None."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        path = get_testdata_file("examples_ybr_color.dcm")
        if path is None:
            return None
        return np.asarray(pydicom.dcmread(path).pixel_array[0], dtype=np.uint8)
    except Exception as exc:  # the sheet is still useful without the reference
        log.warning("real reference frame unavailable: %s", exc)
        return None


def contact_sheet(seed: int = 0, n_cine: int = 6, n_doppler: int = 2, columns: int = 3) -> np.ndarray:
    """RGB grid: the real reference frame, then ED/ES frames of cines and Doppler strips."""
    tiles = []
    ref = real_reference_frame()
    if ref is not None:
        tiles.append(_tile(ref, "REAL: pydicom examples_ybr_color.dcm"))
    for i in range(n_cine):
        params = sample_plax_params(case_rng(seed, i), case_index=i, seed=seed)
        frame = i % 2
        ed, es = ed_es_frames(params)
        pick = ed if frame == 0 else es
        cine = render_plax(params, frames=[pick], labels=False)
        h, w = params.height_px, params.width_px
        tiles.append(_tile(cine.frames[0], f"synthetic {i} {h}x{w} {'ED' if frame == 0 else 'ES'} frame {pick}"))
    for j in range(n_doppler):
        flow = FLOWS[j % len(FLOWS)]
        p = sample_doppler_params(case_rng(seed, 1000 + j), flow, case_index=j, seed=seed)
        tiles.append(_tile(render_doppler(p).image, f"synthetic doppler {flow}"))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 40))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def write_contact_sheet(path: str | Path, seed: int = 0, **kwargs) -> Path:
    """Write :func:`contact_sheet` as PNG (atomically)."""
    path = Path(path)
    sheet = contact_sheet(seed, **kwargs)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 always encodes PNG
        raise RuntimeError("PNG encoding failed")
    atomic.write_bytes(path, buf.tobytes(), make_parents=True)
    return path
