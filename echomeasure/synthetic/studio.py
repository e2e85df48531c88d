"""Write synthetic studies to disk: ``case_XXXX.dcm`` + ``case_XXXX.truth.json``, atomically."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from echomeasure import atomic
from echomeasure.errors import InvalidInputError
from echomeasure.synthetic.dicom_writer import build_dataset, write_dataset_atomic
from echomeasure.synthetic.doppler import FLOWS
from echomeasure.synthetic.overlays import fake_identity
from echomeasure.synthetic.styles import (
    DEFAULT_STYLE,
    check_style,
    render_styled_doppler,
    render_styled_plax,
    sample_styled_doppler_params,
    sample_styled_plax_params,
)

log = logging.getLogger(__name__)

Kind = Literal["2d", "doppler", "a4c", "a2c"]
#: (height, width) and frame count of "small" cases (examples, tests, smoke runs)
SMALL_IMAGE_SIZE: tuple[int, int] = (480, 640)
SMALL_N_FRAMES = 40


@dataclass(frozen=True)
class CaseJob:
    """One case to write: its index (file number), kind and, for Doppler, flow."""

    index: int
    kind: Kind
    flow: str | None = None


@dataclass(frozen=True)
class CaseFiles:
    """The files written for one case."""

    dicom: Path
    truth: Path
    kind: Kind
    flow: str | None


def plan_cases(n_cases: int, kind: str, flow: str | None = None) -> list[CaseJob]:
    """Which cases ``echomeasure synth`` writes.

    ``kind="both"`` writes ``n_cases`` cines (indices 0..n-1) and then ``n_cases`` Doppler strips
    (indices n..2n-1).  Doppler flows cycle through av, mv, lvot, tr unless ``flow`` is given, so
    two strips are one "av" and one "mv".  ``"a4c"`` / ``"a2c"`` write apical cines,
    ``"apical"`` both views of each heart (same index: one study, two series), ``"all"`` every
    kind after one another.
    """
    jobs: list[CaseJob] = []
    if kind in ("2d", "both", "all"):
        jobs += [CaseJob(i, "2d") for i in range(n_cases)]
    if kind in ("doppler", "both", "all"):
        start = len(jobs)
        jobs += [CaseJob(start + j, "doppler", flow or FLOWS[j % len(FLOWS)]) for j in range(n_cases)]
    views_of_kind: dict[str, tuple[Kind, ...]] = {
        "a4c": ("a4c",), "a2c": ("a2c",), "apical": ("a4c", "a2c"), "all": ("a4c", "a2c"),
    }
    views = views_of_kind.get(kind, ())
    start = len({j.index for j in jobs})
    jobs += [CaseJob(start + j, view) for j in range(n_cases if views else 0) for view in views]
    return jobs


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of case ``index`` of a run with ``seed`` (independent streams per case)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _regions_json(regions) -> list[dict]:
    return [asdict(r) for r in regions]


def write_json_atomic(obj: object, path: Path) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic.write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def write_case(out_dir: str | Path, job: CaseJob, seed: int, *, small: bool = False, jpeg: bool = False,
               style: str = DEFAULT_STYLE) -> CaseFiles:
    """Render and write one case (DICOM first, then its truth; each atomically).

    Parameters
    ----------
    out_dir : path
        Folder (created when missing).
    job : CaseJob
        Index, kind and flow of the case.
    seed : int
        Run seed; with ``job.index`` it fixes every pixel, UID and date.
    small : bool
        Small study: 40 frames at 480x640 (Doppler: 480x640), JPEG Baseline.
    jpeg : bool
        JPEG Baseline (YBR_FULL_422) instead of uncompressed RGB.
    style : str
        Style family (:mod:`echomeasure.synthetic.styles`); ``classic`` writes exactly what the
        studio always wrote for a seed.
    """
    style = check_style(style)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"case_{job.index:04d}" + (f"_{job.kind}" if job.kind in ("a4c", "a2c") else "")
    dcm_path, truth_path = out / f"{stem}.dcm", out / f"{stem}.truth.json"
    rng = case_rng(seed, job.index)
    identity = fake_identity(seed, job.index)
    jpeg = jpeg or small
    if job.kind == "2d":
        kwargs = {"image_size": SMALL_IMAGE_SIZE, "n_frames": SMALL_N_FRAMES} if small else {}
        params = sample_styled_plax_params(rng, style, case_index=job.index, seed=seed, **kwargs)
        cine = render_styled_plax(params, style, labels=False)
        ds = build_dataset(
            cine.frames, cine.regions, identity, seed=seed, case_index=job.index, kind="2d",
            frame_time_ms=cine.frame_time_ms, heart_rate_bpm=params.heart_rate_bpm, jpeg=jpeg,
            description="PLAX 2D",
        )
        truth = dict(cine.truth)
        regions = cine.regions
    elif job.kind in ("a4c", "a2c"):
        from echomeasure.synthetic.apical import sample_apical_case_params
        from echomeasure.synthetic.styles import render_styled_apical, sample_styled_apical_params

        params = sample_styled_apical_params(sample_apical_case_params(seed, job.index, job.kind, small=small), style)
        cine = render_styled_apical(params, style, labels=False)
        ds = build_dataset(
            cine.frames, cine.regions, identity, seed=seed, case_index=job.index, kind=job.kind,
            frame_time_ms=cine.frame_time_ms, heart_rate_bpm=params.heart_rate_bpm, jpeg=jpeg,
            description=f"{job.kind.upper()} 2D",
        )
        truth = dict(cine.truth)
        regions = cine.regions
    else:
        kwargs = {"image_size": SMALL_IMAGE_SIZE} if small else {}
        params = sample_styled_doppler_params(rng, style, job.flow, case_index=job.index, seed=seed, **kwargs)
        strip = render_styled_doppler(params, style)
        ds = build_dataset(
            strip.image, strip.regions, identity, seed=seed, case_index=job.index, kind="doppler",
            frame_time_ms=None, heart_rate_bpm=params.heart_rate_bpm, jpeg=jpeg,
            description=f"{params.flow.upper()} {params.mode.upper()} DOPPLER",
        )
        truth = dict(strip.truth)
        regions = strip.regions
    truth = {
        "file": dcm_path.name,
        **truth,
        "regions": _regions_json(regions),
        "encoding": "jpeg-baseline" if jpeg else "rgb",
        "fake_identity": asdict(identity),
    }
    write_dataset_atomic(ds, dcm_path)
    write_json_atomic(truth, truth_path)
    log.info("wrote %s (%s%s)", dcm_path, job.kind, f" {job.flow}" if job.flow else "")
    return CaseFiles(dcm_path, truth_path, job.kind, job.flow)


def write_cases(
    out_dir: str | Path,
    n_cases: int,
    seed: int,
    kind: str = "2d",
    *,
    flow: str | None = None,
    small: bool = False,
    jpeg: bool = False,
    progress: bool = True,
    style: str = DEFAULT_STYLE,
) -> Iterator[CaseFiles]:
    """Write all cases of a run (yields each as it is written); progress bar on stderr."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} is a file; give a folder for the synthetic studies")
    style = check_style(style)
    jobs = plan_cases(n_cases, kind, flow)
    from tqdm import tqdm

    bar = tqdm(jobs, desc="synth", unit="case", disable=not progress or len(jobs) < 3, leave=False)
    for job in bar:
        yield write_case(out, job, seed, small=small, jpeg=jpeg, style=style)
