"""``echomeasure bench``: speed, memory and accuracy of the measurement path, measured here.

Speed (the targets are a 100-frame clip proposed within 2 s end to end on a 2-core CPU after
process start-up, and a 300-frame 600x800 clip under 1 GB peak memory):

* model throughput per backend (ONNX Runtime / torch), batched, median of repeats;
* end to end on a synthetic 600x800 PLAX DICOM of ``n_frames`` frames (uncompressed and JPEG
  Baseline): read + de-identify + crop/resize + inference + decode + smoothing + values, the
  median of ``repeats`` runs after one warm-up (model loading is reported separately);
* where the time goes (per stage, and optionally a cProfile top list);
* the anchor configuration (``deeplabv3_resnet50`` at 480x640, batch 1, fp32, torch, random
  weights) timed on a few frames in the same run and extrapolated to the clip; the ratio;
* with ``memory``: peak RSS of a child process measuring a 300-frame 600x800 clip, PLAX
  (``memory``) and apical A4C, segmented on every frame (``memory_apical_a4c``).

Speed does not depend on the weight values: with no trained weights registered, random
weights of the decided architecture are used (and the results say so).

Accuracy delegates to :mod:`echomeasure.training.evaluate` (owned by training) on held-out
synthetic cases.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import io
import json
import logging
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from echomeasure import atomic

log = logging.getLogger(__name__)

BENCH_IMAGE_SIZE: tuple[int, int] = (600, 800)
MEMORY_N_FRAMES = 300
ANCHOR_FRAMES = 3
THREADS = 2
_BENCH_SEED = 7_000_000  # synthetic cases far from any training seed


def _median_s(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": THREADS,
        # other processes on the machine slow every figure down: record how busy it was
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


# --------------------------------------------------------------------------- inputs


def write_bench_clip(path: Path, n_frames: int, *, jpeg: bool, image_size: tuple[int, int] = BENCH_IMAGE_SIZE,
                     view: str = "plax") -> Path:
    """Write a synthetic PLAX (or ``view="a4c"``: apical four-chamber) DICOM of ``n_frames`` frames
    (rendered once, tiled if longer)."""
    from echomeasure.synthetic import render_plax, sample_plax_params
    from echomeasure.synthetic.apical import render_apical, sample_apical_params
    from echomeasure.synthetic.dicom_writer import build_dataset, write_dataset_atomic
    from echomeasure.synthetic.overlays import fake_identity

    rng = np.random.default_rng(_BENCH_SEED)
    render_n = min(n_frames, 100)
    params: Any
    if view == "plax":
        params = sample_plax_params(rng, n_frames=render_n, image_size=image_size, case_index=0, seed=_BENCH_SEED)
        cine = render_plax(params, labels=False)
    else:
        params = sample_apical_params(rng, view, n_frames=render_n, image_size=image_size, seed=_BENCH_SEED)
        cine = render_apical(params, labels=False)
    frames = cine.frames
    if n_frames > render_n:
        reps = -(-n_frames // render_n)
        frames = np.concatenate([frames] * reps)[:n_frames]
    ds = build_dataset(
        frames, cine.regions, fake_identity(_BENCH_SEED, 0), seed=_BENCH_SEED, case_index=0, kind="2d",
        frame_time_ms=cine.frame_time_ms, heart_rate_bpm=params.heart_rate_bpm, jpeg=jpeg,
        description=f"{view.upper()} 2D bench",
    )
    write_dataset_atomic(ds, path)
    return path


def ensure_weights(weights_dir: Path | None, scratch: Path) -> tuple[Path, str]:
    """The weights folder to time: the registered one, or random weights of the decided arch."""
    from echomeasure import config
    from echomeasure.catalog import DOPPLER_CHANNELS, KEYPOINTS_2D
    from echomeasure.models import builders
    from echomeasure.models.registry import MANIFEST_NAME, WeightsEntry, get_entry, register, save_weights

    folder = Path(weights_dir) if weights_dir is not None else config.weights_dir()
    if (folder / MANIFEST_NAME).exists():
        with contextlib.suppress(Exception):
            e = get_entry("plax-linear", None, folder)
            return folder, f"registered {e.name} {e.version} ({e.arch}, {e.input_size[0]}x{e.input_size[1]})"
    folder = scratch / "random-weights"
    folder.mkdir(parents=True, exist_ok=True)
    for name, channels, size in (
        ("plax-linear", KEYPOINTS_2D, builders.DEFAULT_INPUT_SIZE_2D),
        ("doppler-peaks", DOPPLER_CHANNELS, builders.DEFAULT_INPUT_SIZE_DOPPLER),
    ):
        model = builders.build_model(builders.DEFAULT_ARCH, len(channels))
        sha = save_weights(model, folder / f"{name}.pt")
        register(
            WeightsEntry(name=name, version="random", arch=builders.DEFAULT_ARCH, input_size=size,
                         channels=channels, file=f"{name}.pt", sha256=sha, recipe="echomeasure bench"),
            weights_dir=folder,
        )
    return folder, (
        f"random (no trained weights registered): {builders.DEFAULT_ARCH} "
        f"{builders.DEFAULT_INPUT_SIZE_2D[0]}x{builders.DEFAULT_INPUT_SIZE_2D[1]}"
    )


# --------------------------------------------------------------------------- parts


def time_model(weights_dir: Path, repeats: int, batch_size: int = 16) -> dict[str, Any]:
    """Model-only throughput of ``plax-linear`` per backend."""
    import torch

    from echomeasure.models.registry import load_model
    from echomeasure.models.runtime import HeatmapRunner, _onnx_available

    loaded = load_model("plax-linear", weights_dir=weights_dir)
    h, w = loaded.entry.input_size
    x = torch.rand(batch_size, 3, h, w).contiguous(memory_format=torch.channels_last)
    out: dict[str, Any] = {"arch": loaded.entry.arch, "input_size": [h, w], "batch": batch_size}
    for backend in (("onnx", "torch") if _onnx_available() else ("torch",)):
        runner = HeatmapRunner(loaded, backend=backend, num_threads=THREADS)
        med, _ = _median_s(functools.partial(runner, x), repeats)
        out[backend] = {"ms_per_frame": round(1000 * med / batch_size, 2), "frames_per_s": round(batch_size / med, 1)}
    return out


def time_end_to_end(path: Path, weights_dir: Path, repeats: int, *, profile: bool = False) -> dict[str, Any]:
    """Median seconds for read + de-identify + propose on one file, and the per-stage split."""
    from echomeasure import config
    from echomeasure.propose import propose
    from echomeasure.propose.engine import get_engine
    from echomeasure.propose.measure import load_deidentified

    secret = config.secret()
    t0 = time.perf_counter()
    get_engine("plax-linear", weights_dir=weights_dir)
    load_s = time.perf_counter() - t0
    stages: list[dict[str, float]] = []

    def once() -> None:
        t = time.perf_counter()
        clip = load_deidentified(path, secret=secret)
        read_s = time.perf_counter() - t
        result = propose(clip, weights_dir=weights_dir)
        stages.append({"read_deidentify": read_s, **{k: v for k, v in result.timings_s.items() if k != "total"}})

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    med, times = _median_s(once, repeats)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds per clip (user + system, all threads): less sensitive than wall time to other
    # processes competing for the cores; on 2 free cores wall time is at least cpu / 2
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / (repeats + 1)
    keys = stages[-1].keys()
    split = {k: round(statistics.median(s[k] for s in stages[1:] or stages), 4) for k in keys}
    out: dict[str, Any] = {
        "s_per_clip_median": round(med, 3),
        "s_per_clip_runs": [round(t, 3) for t in times],
        "cpu_s_per_clip_mean": round(cpu_s, 3),
        "model_load_s": round(load_s, 3),
        "stages_s_median": split,
    }
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        once()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        out["profile_top_tottime"] = buf.getvalue().splitlines()
    return out


def time_anchor(n_frames: int, frames_timed: int = ANCHOR_FRAMES) -> dict[str, Any]:
    """The anchor (deeplabv3_resnet50, 480x640, batch 1, fp32, torch) on a few frames, extrapolated."""
    import torch

    from echomeasure.models.builders import ANCHOR_ARCH, ANCHOR_INPUT_SIZE, build_model

    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model = build_model(ANCHOR_ARCH, 2).eval()
        x = torch.rand(1, 3, *ANCHOR_INPUT_SIZE)
        with torch.inference_mode():
            med, times = _median_s(lambda: model(x), frames_timed)
    finally:
        torch.set_num_threads(prev)
    return {
        "arch": ANCHOR_ARCH,
        "input_size": list(ANCHOR_INPUT_SIZE),
        "batch": 1,
        "s_per_frame_median": round(med, 3),
        "frames_timed": frames_timed,
        "s_per_clip_extrapolated": round(med * n_frames, 1),
        "note": "one 2-channel model; the anchor runs one such model per measurement pair",
    }


def time_backbones(repeats: int) -> list[dict[str, Any]]:
    """The table behind the architecture decision (builders.py docstring)."""
    import torch

    from echomeasure.catalog import KEYPOINTS_2D
    from echomeasure.models.builders import build_model
    from echomeasure.models.registry import LoadedModel, WeightsEntry
    from echomeasure.models.runtime import HeatmapRunner, _onnx_available

    rows: list[dict[str, Any]] = []
    torch.set_num_threads(THREADS)
    plan = [("deeplabv3_mobilenet_v3_large", s, 16) for s in (128, 160, 192, 256)]
    plan += [("deeplabv3_resnet50", s, 4) for s in (128, 192)]
    scratch = Path(tempfile.mkdtemp(prefix="echomeasure-bench-"))
    for arch, size, batch in plan:
        model = build_model(arch, len(KEYPOINTS_2D)).eval()
        x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        row: dict[str, Any] = {"arch": arch, "input": size, "batch": batch}
        entry = WeightsEntry(name="plax-linear", version=f"bench-{arch}-{size}", arch=arch, input_size=(size, size),
                             channels=KEYPOINTS_2D, file="-", sha256=f"{abs(hash((arch, size))):064d}"[:64])
        loaded = LoadedModel(entry=entry, model=model, path=scratch)
        backends = ("torch", "onnx") if (_onnx_available() and arch.endswith("mobilenet_v3_large")) else ("torch",)
        os.environ.setdefault("ECHOMEASURE_CACHE", str(scratch))
        for backend in backends:
            runner = HeatmapRunner(loaded, backend=backend, num_threads=THREADS)  # type: ignore[arg-type]
            med, _ = _median_s(functools.partial(runner, x), max(2, repeats if arch.endswith("large") else 2))
            row[f"{backend}_ms_per_frame"] = round(1000 * med / batch, 2)
        rows.append(row)
        log.info("backbone %s", row)
    return rows


def measure_memory(weights_dir: Path, scratch: Path, view: str = "plax") -> dict[str, Any]:
    """Peak RSS of a child ``echomeasure measure`` on a 300-frame 600x800 JPEG clip (``view="a4c"``:
    an apical clip, segmented on every frame)."""
    path = write_bench_clip(scratch / f"memory-300-{view}.dcm", MEMORY_N_FRAMES, jpeg=True, view=view)
    env = {**os.environ, "ECHOMEASURE_WEIGHTS": str(weights_dir)}
    # the child reports its own peak after the command has finished: VmHWM of its own address
    # space (Linux carries ru_maxrss over fork + exec, so that would include this big process)
    code = (
        "import resource, sys\n"
        "from echomeasure.cli import main\n"
        "rc = main(['measure', '-q', sys.argv[1]])\n"
        "kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "except (OSError, StopIteration):\n"
        "    pass\n"
        "sys.stderr.write('PEAK_RSS_KB %d\\n' % kb)\n"
        "sys.exit(rc)\n"
    )
    def run_child() -> tuple[float, float]:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed: {proc.stderr.strip()[-400:]}")
        peak_kb = max(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
        return peak_kb / 1024.0, wall

    # the first run on a fresh cache exports the models to ONNX once (torch is imported for that);
    # every later run, what a user sees from the second clip on, runs without torch
    first_mb, first_wall = run_child()
    peak_mb, wall = run_child()
    return {
        "frames": MEMORY_N_FRAMES,
        "image_size": list(BENCH_IMAGE_SIZE),
        "encoding": "jpeg-baseline",
        "view": view,
        "peak_rss_mb": round(peak_mb, 1),
        "wall_s_including_startup": round(wall, 2),
        "peak_rss_mb_first_run_cold_cache": round(first_mb, 1),
        "wall_s_first_run_cold_cache": round(first_wall, 2),
        "target_mb": 1024,
    }


# --------------------------------------------------------------------------- entry point


def _speed_results(wdir: Path, scratch: Path, n_frames: int, repeats: int, profile: bool,
                   anchor_frames: int) -> dict[str, Any]:
    """Model throughput, end-to-end time of an uncompressed and a JPEG clip, and the anchor ratio."""
    results: dict[str, Any] = {"model": time_model(wdir, repeats)}
    e2e: dict[str, Any] = {"frames": n_frames, "image_size": list(BENCH_IMAGE_SIZE)}
    for jpeg in (False, True):
        path = write_bench_clip(scratch / f"bench-{'jpeg' if jpeg else 'rgb'}.dcm", n_frames, jpeg=jpeg)
        key = "jpeg_baseline" if jpeg else "uncompressed_rgb"
        e2e[key] = time_end_to_end(path, wdir, repeats, profile=profile and not jpeg)
    # an apical clip: view + apical-seg on every frame (ED/ES by LV area) + volumes
    apical = write_bench_clip(scratch / "bench-a4c-rgb.dcm", n_frames, jpeg=False, view="a4c")
    e2e["apical_a4c_uncompressed_rgb"] = time_end_to_end(apical, wdir, repeats)
    results["end_to_end"] = e2e
    anchor = time_anchor(n_frames, anchor_frames)
    results["anchor"] = anchor
    ours = e2e["uncompressed_rgb"]["s_per_clip_median"]
    results["speedup_vs_anchor"] = round(anchor["s_per_clip_extrapolated"] / ours, 1)
    results["target_s_per_100_frames"] = 2.0
    return results


def run_bench(
    *,
    speed: bool = True,
    accuracy: bool = False,
    cases: int = 20,
    n_frames: int = 100,
    repeats: int = 5,
    backbones: bool = False,
    memory: bool = False,
    profile: bool = False,
    output: str | os.PathLike[str] | None = None,
    weights_dir: Path | None = None,
    anchor_frames: int = ANCHOR_FRAMES,
) -> dict[str, Any]:
    """Run the selected benchmark parts and return (and optionally write) the results.

    Parameters
    ----------
    speed
        Model throughput, end-to-end seconds per clip, anchor comparison.
    accuracy
        Held-out synthetic accuracy of the registered weights (training's evaluation).
    cases
        Held-out cases for ``accuracy``.
    n_frames
        Frames of the end-to-end clip.
    repeats
        Repeats behind every median.
    backbones
        Also time the backbone / input-size table.
    memory
        Peak memory of a 300-frame 600x800 clip (child process), PLAX and apical.
    profile
        Add a cProfile top list of one end-to-end run.
    output
        Write the JSON here (atomically) as well as returning it.
    weights_dir
        Weights folder (default ``$ECHOMEASURE_WEIGHTS``).
    anchor_frames
        Frames the anchor model is timed on (each takes seconds).

    Returns
    -------
    dict
        JSON-ready results.
    """
    import torch

    torch.set_num_threads(THREADS)
    results: dict[str, Any] = {"machine": machine_info(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="echomeasure-bench-") as tmp:
        scratch = Path(tmp)
        os.environ.setdefault("ECHOMEASURE_CACHE", str(scratch / "cache"))
        if speed or memory:
            wdir, weights_note = ensure_weights(weights_dir, scratch)
            results["weights"] = weights_note
        if speed:
            results.update(_speed_results(wdir, scratch, n_frames, repeats, profile, anchor_frames))
        if backbones:
            results["backbones"] = time_backbones(repeats)
        if memory:
            results["memory"] = measure_memory(wdir, scratch)
            results["memory_apical_a4c"] = measure_memory(wdir, scratch, view="a4c")
        if accuracy:
            results["accuracy"] = run_accuracy(cases, weights_dir)
    # ru_maxrss is in KiB on Linux
    results["peak_rss_mb_bench_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    if output is not None:
        write_results(results, Path(output))
    return results


def run_accuracy(cases: int, weights_dir: Path | None) -> dict[str, Any]:
    """Held-out synthetic accuracy of the registered models.

    Two complementary views:

    * ``caliper``: :func:`echomeasure.training.evaluate.evaluate` per registered model (owned by
      training): one-frame clips at the true ED/ES frames (2D) or strips with the flow given
      (Doppler): MAE per measurement (mm, m/s, %), share of endpoints within 1 mm, the
      confidence-vs-error Spearman correlation, and the robustness breakdown (error per tertile of
      depth, gain, noise, rotation, heart size, heart rate, frame rate, image size);
    * ``full_cine``: the same evaluation of the PLAX model on whole cines (``cine=True``): values as
      a user gets them after smoothing and ED/ES choice, ED/ES frame-choice error in frames and ms,
      error against the chosen frame's truth;
    * ``end_to_end``: :func:`end_to_end_accuracy`: whole cines and strips exactly as a user
      runs them (ED/ES chosen by the tool, Doppler flow chosen by the tool);
    * ``styles``: the caliper evaluation on the models' own style family and on the held-out
      family no model is trained on (:data:`echomeasure.synthetic.styles.HELDOUT_STYLE`), per
      measurement: MAE, median, gross-miss rate (> 5 mm, > 10 %), the share of gross misses the
      low-confidence flag catches and the share of the others it flags, missing values.
    """
    from echomeasure.errors import WeightsError
    from echomeasure.models.registry import WeightsEntry, get_entry

    registered: dict[str, WeightsEntry | None] = {}
    skipped = ""
    for name in ("plax-linear", "doppler-peaks"):
        try:
            registered[name] = get_entry(name, None, weights_dir)
        except WeightsError as exc:
            registered[name] = None
            skipped = str(exc)
    if not any(registered.values()):
        return {"skipped": skipped}
    from echomeasure.synthetic.styles import DEFAULT_STYLE, HELDOUT_STYLE
    from echomeasure.training.evaluate import evaluate, style_summary

    out: dict[str, Any] = {"caliper": {}, "end_to_end": {},
                           "styles": {"own": DEFAULT_STYLE, "heldout": HELDOUT_STYLE}}
    for name, entry in registered.items():
        if entry is None:
            out["caliper"][name] = {"skipped": f"no registered {name}"}
            continue
        report = evaluate(name, weights_dir=weights_dir, n_cases=cases, progress=False, backend="auto")
        out["caliper"][name] = report.to_dict()
        heldout = evaluate(name, weights_dir=weights_dir, n_cases=cases, progress=False, backend="auto",
                           style=HELDOUT_STYLE)
        out["styles"][name] = {"version": entry.version, DEFAULT_STYLE: style_summary(report),
                               HELDOUT_STYLE: style_summary(heldout)}
        if entry.mode == "2d":
            cine = evaluate(name, weights_dir=weights_dir, n_cases=cases, progress=False, backend="auto", cine=True)
            out.setdefault("full_cine", {})[name] = cine.to_dict()
    out["end_to_end"] = end_to_end_accuracy(
        min(cases, 10), weights_dir, plax=registered["plax-linear"] is not None,
        doppler=registered["doppler-peaks"] is not None,
    )
    return out


def end_to_end_accuracy(n_cases: int, weights_dir: Path | None, *, plax: bool = True, doppler: bool = True) -> dict[str, Any]:
    """Whole held-out clips through :func:`echomeasure.propose.propose`, frame and flow choice included.

    2D: ED/ES frame error (frames and ms, and the true LV diameter at the chosen frame relative
    to the true extreme), then the error of each measurement in mm as proposed.  Doppler: share
    of strips whose flow the tool chose right, and the value error (%) as proposed.
    """
    from echomeasure import catalog
    from echomeasure.ingest.clip import Clip
    from echomeasure.propose import propose
    from echomeasure.synthetic import render_plax
    from echomeasure.training.datasets import doppler_case, heldout_case_seeds, plax_params_for_seed

    out: dict[str, Any] = {}
    if plax:
        errors_mm: dict[str, list[float]] = {}
        ed_frames, es_frames, ed_ms, es_ms, ed_ratio, es_ratio = [], [], [], [], [], []
        for seed in heldout_case_seeds(n_cases, "2d"):
            cine = render_plax(plax_params_for_seed(seed), labels=False)
            clip = Clip(cine.frames, cine.frame_time_ms, cine.regions, "dicom")
            result = propose(clip, weights_dir=weights_dir)
            kp = cine.keypoints
            i, j = catalog.KEYPOINTS_2D.index("septum_lv"), catalog.KEYPOINTS_2D.index("lv_pw")
            diam = np.hypot(*(kp[:, i] - kp[:, j]).T)
            assert result.ed_frame is not None and result.es_frame is not None, "a PLAX cine gets ED and ES frames"
            ed_frames.append(abs(result.ed_frame - cine.ed_frame))
            es_frames.append(abs(result.es_frame - cine.es_frame))
            ed_ms.append(ed_frames[-1] * cine.frame_time_ms)
            es_ms.append(es_frames[-1] * cine.frame_time_ms)
            ed_ratio.append(float(diam[result.ed_frame] / diam.max()))
            es_ratio.append(float(diam[result.es_frame] / diam.min()))
            truth = cine.truth["measurements"]
            for p in result.measurements:
                if p.value is not None and p.name in truth:
                    errors_mm.setdefault(p.name, []).append(10.0 * (p.value - truth[p.name]["value"]))
        out["plax"] = {
            "cases": n_cases,
            "ed_frame_error_median": float(np.median(ed_frames)),
            "es_frame_error_median": float(np.median(es_frames)),
            "ed_error_ms_median": round(float(np.median(ed_ms)), 1),
            "es_error_ms_median": round(float(np.median(es_ms)), 1),
            "true_lv_diameter_at_chosen_ed_vs_max_mean": round(float(np.mean(ed_ratio)), 4),
            "true_lv_diameter_at_chosen_es_vs_min_mean": round(float(np.mean(es_ratio)), 4),
            "mae_mm": {k: round(float(np.mean(np.abs(v))), 2) for k, v in errors_mm.items()},
            "bias_mm": {k: round(float(np.mean(v)), 2) for k, v in errors_mm.items()},
        }
    if doppler:
        right, errs = 0, []
        seeds = heldout_case_seeds(n_cases, "doppler")
        for seed in seeds:
            strip = doppler_case(seed)
            clip = Clip(strip.image[None], None, strip.regions, "dicom")
            result = propose(clip, weights_dir=weights_dir)
            names = {p.name for p in result.measurements}
            right += int(names >= set(catalog.DOPPLER_FLOWS[strip.flow]))
            truth = strip.truth["measurements"]
            for p in result.measurements:
                if p.value is not None and p.name in truth and p.name != "mv_ea":
                    errs.append(100.0 * (p.value - truth[p.name]["value"]) / truth[p.name]["value"])
        out["doppler"] = {
            "cases": len(seeds),
            "flow_chosen_right_share": round(right / max(1, len(seeds)), 3),
            "error_pct_mean_abs": round(float(np.mean(np.abs(errs))), 2) if errs else None,
            "error_pct_median_abs": round(float(np.median(np.abs(errs))), 2) if errs else None,
            "measurements": len(errs),
        }
    return out


def write_results(results: dict[str, Any], path: Path) -> None:
    """Write the results JSON atomically."""
    atomic.write_text(path, json.dumps(results, indent=2) + "\n", make_parents=True)
