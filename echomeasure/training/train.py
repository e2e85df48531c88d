"""Train a keypoint model from synthetic data, evaluate it on held-out cases, register it.

``train_model("plax-linear", steps=..., seed=...)`` is what ``echomeasure train`` runs:

1. render (once, cached) the training set from the training seed range
   (:mod:`echomeasure.training.datasets`);
2. build the DeepLabV3 model (:func:`echomeasure.models.builders.build_model`) and optimise it
   (:func:`echomeasure.training.loop.run_optimisation`; resumable checkpoint in the cache);
3. save the weights (int8 per output channel, gzip) and evaluate them through the real ``propose`` path on
   held-out cases (:mod:`echomeasure.training.evaluate`);
4. register the version in ``manifest.json`` with data description, recipe, seed, sha256 and
   the measured errors.  It becomes the active version only when asked (``activate``, the CLI's
   ``--activate``, the same rule as ``train --dataset``); a smoke run never does.

Everything is seeded: the same command on the same machine reproduces the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echomeasure import config
from echomeasure.catalog import DOPPLER_CHANNELS, KEYPOINTS_2D
from echomeasure.errors import TrainingError
from echomeasure.models import registry
from echomeasure.models.builders import DEFAULT_ARCH, build_model, count_parameters
from echomeasure.models.decode import DecodeSettings
from echomeasure.training.augment import (
    NOMINAL_FIELD_MM,
    AppearanceAugment,
    ArtefactAugment,
    BloomAugment,
    ExposureAugment,
    GeometryAugment,
    IntensityAugment,
    SpectrumAugment,
)
from echomeasure.training.batch import KeypointBatch
from echomeasure.training.datasets import HeatmapTrainingSet, TrainingSetSpec, build_cache, cache_dir
from echomeasure.training.loop import OptimRecipe, TrainResult, run_optimisation

log = logging.getLogger(__name__)


#: DeepLabV3-MobileNetV3 has output stride 16: its logits are a 16-px lattice upsampled
#: bilinearly, so a peak can only be as narrow as the lattice allows and its arg-max always
#: sits on a lattice node.  The targets are therefore Gaussians of sigma 6 model pixels, the
#: decoder window is 2.5 sigma, and decoding may move up to 24 px from the arg-max (a lattice
#: cell and a half), which the coordinate loss trains for.
HEATMAP_SIGMA_PX = 6.0
MAX_SHIFT_PX = 24.0


@dataclass(frozen=True)
class ModelPlan:
    """Everything that defines how one registry model is trained (recorded in the manifest)."""

    name: str
    mode: str  # "2d" | "doppler"
    channels: tuple[str, ...]
    arch: str
    input_size: tuple[int, int]
    sigma_px: float
    max_shift_px: float
    data: TrainingSetSpec
    optim: OptimRecipe
    eval_cases: int
    #: ``"VERSION"`` of the same model whose weights start the run (None: ImageNet-free random init)
    init_from: str | None = None
    #: also :class:`~echomeasure.training.augment.ExposureAugment` (``--exposure-augment``)
    exposure: bool = False
    #: also :class:`~echomeasure.training.augment.BloomAugment` (``--bloom-augment``)
    bloom: bool = False

    @property
    def style_augmented(self) -> bool:
        """Geometry and display-appearance augmentation on (recipes trained on several style families)."""
        return tuple(self.data.styles) != ("classic",)


def default_plan(name: str, *, steps: int | None = None, seed: int = 0, smoke: bool = False,
                 cases: int | None = None, eval_cases: int | None = None,
                 styles: str | tuple[str, ...] | None = None, init_from: str | None = None,
                 exposure: bool = False, bloom: bool = False) -> ModelPlan:
    """The training plan of a registry model.

    Parameters
    ----------
    name : {"plax-linear", "doppler-peaks"}
        Registry name.
    steps : int, optional
        Optimisation steps (default: the shipped recipe's; smoke: 12).
    seed : int
        Seed of weight initialisation, batch drawing and augmentation.
    smoke : bool
        Tiny inputs, few small cases, few steps: a run of well under a minute (CI).
    cases : int, optional
        Training cases to render (default 400 PLAX cines x 6 frames, or 800 Doppler strips).
    eval_cases : int, optional
        Held-out cases to evaluate on.
    styles : str or tuple, optional
        Style families of the training set (``"classic,vendor"``; default classic only); the
        held-out family (:data:`echomeasure.synthetic.styles.HELDOUT_STYLE`) is refused.  With
        more than the classic family, geometry and display-appearance augmentation are on.
    init_from : str, optional
        A registered version of the same model to start from (fine-tuning the whole network).
    exposure : bool
        Also vary overall gain and the noise floor (:class:`ExposureAugment`) beyond the mild
        intensity augmentation every recipe has.
    bloom : bool
        Also re-image half of the frames through a point-spread function and log compression
        (:class:`BloomAugment`: tissue echo blooming into the blood, as at high gain or with a
        broad beam), the keypoints staying on the true interfaces.

    Raises
    ------
    TrainingError
        Unknown model name; ``bloom`` for a Doppler model.
    """
    from echomeasure.errors import InvalidInputError
    from echomeasure.synthetic.styles import parse_training_styles

    try:
        families = parse_training_styles(styles)
    except InvalidInputError as exc:  # an unknown family name, or the held-out one
        raise TrainingError(str(exc)) from None
    if name == registry.PLAX_LINEAR:
        mode, channels = "2d", KEYPOINTS_2D
        size = (128, 128) if smoke else (192, 192)
        data = TrainingSetSpec("2d", cases or (3 if smoke else 400), size, frames_per_case=3 if smoke else 6,
                               small=smoke, styles=families)
        default_steps = 700
    elif name == registry.DOPPLER_PEAKS:
        mode, channels = "doppler", DOPPLER_CHANNELS
        size = (64, 128) if smoke else (128, 256)
        data = TrainingSetSpec("doppler", cases or (4 if smoke else 800), size, small=smoke, styles=families)
        default_steps = 900
    else:
        raise TrainingError(f"unknown model {name!r}; train 'plax-linear' or 'doppler-peaks'")
    if bloom and mode != "2d":  # a point-spread function of a B-mode scan: a spectral strip has no tissue nor blood
        raise TrainingError(f"--bloom-augment re-images B-mode frames (tissue blooming into the blood); "
                            f"it does not apply to {name}")
    n_steps = steps if steps is not None else (12 if smoke else default_steps)
    if n_steps < 1:
        raise TrainingError("--steps must be at least 1")
    optim = OptimRecipe(steps=n_steps, batch_size=2 if smoke else 8, lr=1e-3 if init_from else 2e-3,
                        warmup_steps=min(50, max(1, n_steps // 10)), seed=seed,
                        coord_window_px=int(round(2.5 * HEATMAP_SIGMA_PX)), coord_start_frac=0.1)
    return ModelPlan(name=name, mode=mode, channels=tuple(channels), arch=DEFAULT_ARCH, input_size=size,
                     sigma_px=HEATMAP_SIGMA_PX, max_shift_px=MAX_SHIFT_PX, data=data, optim=optim,
                     eval_cases=eval_cases if eval_cases is not None else (2 if smoke else 40),
                     init_from=init_from, exposure=exposure, bloom=bloom)


def recipe_command(plan: ModelPlan, smoke: bool) -> str:
    """The exact command that reproduces a plan's weights."""
    cmd = f"echomeasure train --model {plan.name} --steps {plan.optim.steps} --seed {plan.optim.seed}"
    cmd += f" --cases {plan.data.n_cases} --eval-cases {plan.eval_cases}"
    if tuple(plan.data.styles) != ("classic",):
        cmd += f" --styles {','.join(plan.data.styles)}"
    if plan.init_from:
        cmd += f" --init-from {plan.init_from}"
    if plan.exposure:
        cmd += " --exposure-augment"
    if plan.bloom:
        cmd += " --bloom-augment"
    return cmd + (" --smoke" if smoke else "")


def next_version(name: str, weights_dir: Path, smoke: bool) -> str:
    """``1.0`` for the first full training run of a model, then ``1.1``, ``1.2``... (after a
    ``2.0``: ``2.1``...); smoke runs get ``0.0-smokeN`` so they never shadow a real model's
    version numbers."""
    existing = {e.version for e in registry.list_entries(weights_dir) if e.name == name}
    if smoke:
        i = 1
        while f"0.0-smoke{i}" in existing:
            i += 1
        return f"0.0-smoke{i}"
    majors = [int(v.split(".")[0]) for v in existing if "smoke" not in v and v.split(".")[0].isdigit()]
    major = max([1, *majors])
    minor = 0
    while f"{major}.{minor}" in existing:
        minor += 1
    return f"{major}.{minor}"


def _plan_hash(plan: ModelPlan) -> str:
    d: dict[str, Any] = {"name": plan.name, "arch": plan.arch, "size": list(plan.input_size), "sigma": plan.sigma_px,
                         "data": plan.data.key(), "optim": plan.optim.to_dict()}
    if plan.init_from or plan.style_augmented:
        d["init_from"] = plan.init_from
        augment = "geometry+appearance" if plan.style_augmented else "intensity"
        if plan.style_augmented:  # a checkpoint of a run without artefacts is not resumed
            augment += "+artefact" if plan.mode == "2d" else "+spectrum, no rotation"
        d["augment"] = augment
    if plan.exposure:
        d["exposure"] = True
    if plan.bloom:
        d["bloom"] = True
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainOutcome:
    """What ``train_model`` produced."""

    entry: registry.WeightsEntry
    result: TrainResult
    metrics: dict


def train_model(
    name: str,
    *,
    steps: int | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    smoke: bool = False,
    cases: int | None = None,
    eval_cases: int | None = None,
    version: str | None = None,
    threads: int | None = None,
    max_wall_s: float | None = None,
    progress: bool = True,
    styles: str | tuple[str, ...] | None = None,
    init_from: str | None = None,
    exposure: bool = False,
    bloom: bool = False,
    activate: bool = False,
) -> TrainOutcome:
    """Train, evaluate and register one model.

    Parameters
    ----------
    name : {"plax-linear", "doppler-peaks"}
        Registry name.
    steps, seed, smoke, cases, eval_cases
        See :func:`default_plan`.
    out : path, optional
        Weights folder (default ``$ECHOMEASURE_WEIGHTS`` or ``<project>/weights``).
    version : str, optional
        Version to register (default :func:`next_version`).
    threads : int, optional
        ``torch.set_num_threads`` for the run.
    max_wall_s : float, optional
        Stop after this long with a resumable checkpoint (nothing is registered); the same
        command resumes.
    progress : bool
        tqdm progress bars on stderr.
    activate : bool
        Make the new version the active one (the one ``measure``, ``ingest`` and the demo use).
        Without it the version is registered and the active one stays as it was (activate it
        later with ``echomeasure weights activate``).  Refused with ``smoke``: a smoke model is
        tens of millimetres off and never serves measurements.

    Returns
    -------
    TrainOutcome with the registered entry, the loss history and the held-out metrics.

    Raises
    ------
    TrainingError
        Unknown model, bad arguments (``activate`` with ``smoke``), or a run stopped by
        ``max_wall_s`` before the last step.
    """
    if smoke and activate:
        raise TrainingError("--activate: a --smoke run is never made the active version (it only checks the pipeline)")
    if threads:
        torch.set_num_threads(int(threads))
    plan = default_plan(name, steps=steps, seed=seed, smoke=smoke, cases=cases, eval_cases=eval_cases,
                        styles=styles, init_from=init_from, exposure=exposure, bloom=bloom)
    weights_dir = Path(out) if out is not None else config.weights_dir()
    weights_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(name, weights_dir, smoke)
    if any(e.name == name and e.version == version for e in registry.list_entries(weights_dir)):
        raise TrainingError(f"{name} {version} is already registered in {weights_dir}; pick another --version")

    data = _training_data(plan, progress)
    model = _initial_model(plan, weights_dir)
    result = _optimise(model, data.dataset, plan, smoke=smoke, max_wall_s=max_wall_s, progress=progress)
    model = model.to(memory_format=torch.contiguous_format).eval()
    entry = registry.WeightsEntry(
        name=name, version=version, arch=plan.arch, input_size=plan.input_size, channels=plan.channels,
        file=f"{name}-{version}.pt", sha256="0" * 64,  # the saved file's, once saved
        normalisation="unit", trained_on=data.trained_on(plan),
        seed=plan.optim.seed, recipe=recipe_command(plan, smoke), parent=plan.init_from,
        num_params=count_parameters(model), extra=_training_record(plan, data, result),
        decode=DecodeSettings(sigma_px=plan.sigma_px, max_shift_px=plan.max_shift_px),
    )
    entry, report = _evaluate_and_register(model, entry, weights_dir, plan, smoke=smoke, progress=progress,
                                           activate=activate)
    try:
        from echomeasure.propose import clear_engines

        clear_engines()
    except ImportError:  # pragma: no cover - propose is part of the package
        pass
    metrics = report.flat_metrics()
    log.info("registered %s %s: %s", name, version, metrics)
    return TrainOutcome(entry=entry, result=result, metrics=metrics)


@dataclass
class _TrainingData:
    """The rendered training set of a plan with the augmentations that draw from it."""

    dataset: HeatmapTrainingSet
    geometry: GeometryAugment | None
    appearance: AppearanceAugment | None
    artefact: ArtefactAugment | SpectrumAugment | None
    exposure: ExposureAugment | None
    bloom: BloomAugment | None
    wall_s: float

    def description(self, plan: ModelPlan) -> dict:
        """``extra["training_data"]``: the plan's data and the number of samples."""
        return {**plan.data.describe(), "n_samples": len(self.dataset)}

    def trained_on(self, plan: ModelPlan) -> str:
        """The entry's human-readable ``trained_on``."""
        return (f"synthetic {plan.mode} cases, seeds {plan.data.seeds[0]}-{plan.data.seeds[-1]} "
                f"({len(self.dataset)} images), generator {self.description(plan)['generator_version']}")


def _training_data(plan: ModelPlan, progress: bool) -> _TrainingData:
    """Render (or read from the cache) the plan's training set; augmented by style when the plan says."""
    t0 = time.monotonic()
    cache = build_cache(plan.data, progress=progress)
    geometry = appearance = artefact = None
    if plan.style_augmented:  # a Doppler strip is zoomed and shifted but never rotated: its axes are time and velocity
        geometry = GeometryAugment() if plan.mode == "2d" else GeometryAugment(rotation_deg=(0.0, 0.0))
        appearance = AppearanceAugment()
        artefact = ArtefactAugment() if plan.mode == "2d" else SpectrumAugment()
    exposure = ExposureAugment() if plan.exposure else None
    bloom = BloomAugment() if plan.bloom else None
    dataset = HeatmapTrainingSet.from_cache(cache, plan.sigma_px, IntensityAugment(), geometry, appearance, artefact,
                                            exposure, bloom=bloom, bloom_px_per_mm=plan.input_size[1] / NOMINAL_FIELD_MM)
    log.info("training set: %d images of %s", len(dataset), dataset.input_size)
    return _TrainingData(dataset, geometry, appearance, artefact, exposure, bloom, time.monotonic() - t0)


def _initial_model(plan: ModelPlan, weights_dir: Path) -> torch.nn.Module:
    """A seeded random model, or the weights of the plan's ``init_from`` version (channels last)."""
    torch.manual_seed(plan.optim.seed)
    model = build_model(plan.arch, len(plan.channels))
    if plan.init_from:
        start = registry.load_model(plan.name, plan.init_from, weights_dir)
        if tuple(start.entry.channels) != tuple(plan.channels) or start.entry.arch != plan.arch:
            raise TrainingError(f"{plan.name} {plan.init_from} has another architecture or channels; cannot start from it")
        model.load_state_dict(start.model.state_dict())
    return model.to(memory_format=torch.channels_last)


def _optimise(model: torch.nn.Module, dataset: HeatmapTrainingSet, plan: ModelPlan, *, smoke: bool,
              max_wall_s: float | None, progress: bool) -> TrainResult:
    """Run the plan's optimisation (resumable checkpoint in the cache); refuse a run cut short."""

    def batches(rng: np.random.Generator, batch_size: int) -> KeypointBatch:
        b = dataset.batch(rng, batch_size)
        return replace(b, images=b.images.contiguous(memory_format=torch.channels_last))

    checkpoint = cache_dir() / "checkpoints" / f"{plan.name}-{_plan_hash(plan)}.pt"
    result = run_optimisation(model, batches, plan.optim, checkpoint=checkpoint,
                              checkpoint_every=25 if not smoke else 1000, max_wall_s=max_wall_s,
                              progress=progress, desc=f"train {plan.name}")
    if result.steps_done < plan.optim.steps:
        raise TrainingError(
            f"training stopped at step {result.steps_done} of {plan.optim.steps} (wall-time limit); "
            "run the same command again to resume from the checkpoint"
        )
    return result


def _training_record(plan: ModelPlan, data: _TrainingData, result: TrainResult) -> dict:
    """The entry's ``extra``: data, optimiser, loss, augmentation and timings of the run."""
    augmentation = IntensityAugment().to_dict()
    if data.geometry and data.appearance:
        augmentation |= {"geometry": data.geometry.to_dict(), "appearance": data.appearance.to_dict()}
    if data.artefact:
        augmentation["spectrum" if isinstance(data.artefact, SpectrumAugment) else "artefact"] = data.artefact.to_dict()
    if data.exposure:
        augmentation["exposure"] = data.exposure.to_dict()
    if data.bloom:
        augmentation["bloom"] = {**data.bloom.to_dict(), "px_per_mm": data.dataset.bloom_px_per_mm}
    return {
        "training_data": data.description(plan),
        "optimiser": {"name": "AdamW", "schedule": "linear warm-up + cosine", **plan.optim.to_dict()},
        "loss": "pixel-weighted BCE-with-logits on Gaussian heatmaps + window-centroid smooth-L1",
        "augmentation": augmentation,
        **({"init_from": plan.init_from} if plan.init_from else {}),
        "train_wall_s": round(result.wall_s, 1),
        "data_wall_s": round(data.wall_s, 1),
        "final_loss": round(sum(result.losses[-20:]) / max(1, len(result.losses[-20:])), 5),
        "torch": torch.__version__,
    }


def _evaluate_and_register(model: torch.nn.Module, entry: registry.WeightsEntry, weights_dir: Path,
                           plan: ModelPlan, *, smoke: bool, progress: bool,
                           activate: bool = False) -> tuple[registry.WeightsEntry, Any]:
    """Save the weights, evaluate them through the real ``propose`` path, register them with the
    measured metrics; returns the registered entry and the evaluation report.

    The version is registered in a scratch folder first (in the system's temporary folder, for
    ``propose`` to load it), then published into ``weights_dir`` with its metrics
    (:func:`echomeasure.models.registry.publish`: file and manifest in one step under the
    manifest lock, never over a registered version's file; registered versions are immutable),
    made active only with ``activate`` (otherwise the version in use stays in use: :func:`registry.publish`).
    """
    from echomeasure.training.evaluate import evaluate

    with tempfile.TemporaryDirectory(prefix="em-eval-") as scratch:
        scratch_dir = Path(scratch)
        entry = replace(entry, sha256=registry.save_weights(model, scratch_dir / entry.file))
        registry.register(entry, weights_dir=scratch_dir)
        # the flag threshold and its error ratio are measured on held-out cases of every family the
        # version was trained on (one family alone can hold no gross miss, and then the ratio is noise)
        styles = tuple(plan.data.styles) if entry.mode == "2d" else "classic"
        report = evaluate(entry.name, entry.version, weights_dir=scratch_dir, n_cases=plan.eval_cases, small=smoke,
                          progress=progress, style=styles)
        metrics, thresholds = registry.metrics_from_flat(report.flat_metrics(), registry.OWN_STYLE)
        thresholds = replace(thresholds, by_measurement=report.flag_thresholds_by_measurement() or None)
        entry = replace(entry, metrics=metrics, thresholds=thresholds,
                        extra={**entry.extra, "evaluation": report.to_dict()})
        return registry.publish(entry, scratch_dir / entry.file, weights_dir=weights_dir, activate=activate), report
