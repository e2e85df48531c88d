"""``echomeasure train|evaluate --dataset camus|echonet-dynamic|masks PATH``: segmentation datasets users bring.

* ``camus`` and ``echonet-dynamic`` train a new ``apical-seg`` version (from the active one when
  registered, otherwise from random weights; not made active unless asked) on the train split,
  with Dice and EF / volume errors on the val (else test) split in its metrics.
* ``masks`` trains a segmentation model for a custom view named from the folder
  (``<folder>-seg``, classes from ``classes.txt``); it becomes that name's active version, so
  ``echomeasure measure --model <folder>-seg`` uses it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from echomeasure.catalog import APICAL_SEG_CLASSES
from echomeasure.errors import InvalidInputError, TrainingError, WeightsError
from echomeasure.models import registry
from echomeasure.training.seg_train import SegSample, evaluate_with_model, train_segmentation

log = logging.getLogger(__name__)

SEG_DATASETS = ("camus", "echonet-dynamic", "masks")
APICAL_SEG = "apical-seg"
DEFAULT_STEPS = 300


def read_dataset(name: str, path: str | os.PathLike[str], split: str | None) -> list[SegSample]:
    """The samples of one split (None: all) of a segmentation dataset."""
    if name == "camus":
        from echomeasure.training.camus import read_camus

        return read_camus(path, split)
    if name == "echonet-dynamic":
        from echomeasure.training.echonet_dynamic import read_echonet_dynamic

        return read_echonet_dynamic(path, split)
    if name == "masks":
        from echomeasure.training.mask_folder import read_mask_folder

        return read_mask_folder(path, split)[0]
    raise InvalidInputError(f"--dataset {name}: unknown dataset; known: {', '.join(SEG_DATASETS)}")


def _active_apical(out: Any) -> Any:
    from echomeasure.models.segmentation import load_segmentation_model

    try:
        return load_segmentation_model(APICAL_SEG, None, out)
    except (WeightsError, KeyError, ValueError):
        return None


def train_on_dataset(name: str, path: str | os.PathLike[str], *, steps: int | None = None, seed: int = 0,
                     out: str | os.PathLike[str] | None = None, version: str | None = None, from_scratch: bool = False,
                     activate: bool = False, max_minutes: float | None = None) -> dict[str, Any]:
    """Train and register; returns the JSON the CLI prints."""
    steps = DEFAULT_STEPS if steps is None else steps
    recipe = f"echomeasure train --dataset {name} PATH --steps {steps} --seed {seed}"
    if name == "masks":
        from echomeasure.training.mask_folder import model_name, read_mask_folder

        samples, classes, view = read_mask_folder(path)
        train = [s for s in samples if s.split == "train"]
        held = [s for s in samples if s.split != "train"]
        outcome = train_segmentation(
            train, name=model_name(view), classes=classes, trained_on=f"mask folder '{view}', {len(train)} labelled images",
            recipe=recipe, steps=steps, seed=seed, out=out, version=version or None, activate=activate, eval_samples=held,
            max_minutes=max_minutes, extra={"view": view, "classes_file": "classes.txt"},
        )
    else:
        samples = read_dataset(name, path, None)
        train = [s for s in samples if s.split == "train"]
        held = [s for s in samples if s.split == "val"] or [s for s in samples if s.split == "test"]
        if not held:  # e.g. CAMUS without database_split/, or the legacy release (testing set unlabelled)
            if activate:  # nothing would measure the version that would then segment every apical clip
                raise TrainingError(f"{path}: --activate needs a labelled val or test split to measure the new "
                                    "version on")
            log.warning("%s: no labelled val or test split: the new %s version is registered unmeasured",
                        path, APICAL_SEG)
        init = None if from_scratch else _active_apical(out)
        if from_scratch:
            recipe += " --from-scratch"
        outcome = train_segmentation(
            train, name=APICAL_SEG, classes=APICAL_SEG_CLASSES,
            trained_on=f"{name} train split, {len(train)} labelled ED/ES frames", recipe=recipe, steps=steps, seed=seed,
            out=out, version=version, init_from=init, activate=activate, eval_samples=held, max_minutes=max_minutes,
            extra={"dataset": name},
        )
    e = outcome.entry
    return {"name": e.name, "version": e.version, "parent": e.parent, "file": e.file, "sha256": e.sha256, "dataset": name,
            "train_frames": outcome.n_train, "steps": outcome.steps, "train_wall_s": round(outcome.train_wall_s, 1),
            "active": registry.active_version(e.name, out) == e.version, "metrics": dict(e.metrics)}


def first_cases(samples: list[SegSample], max_cases: int | None) -> list[SegSample]:
    """The samples of the first ``max_cases`` cases (videos, patients or images) in reading order."""
    if max_cases is None:
        return samples
    keep = set(list(dict.fromkeys(s.case for s in samples))[: max(0, int(max_cases))])
    return [s for s in samples if s.case in keep]


def evaluate_dataset(name: str, path: str | os.PathLike[str], *, split: str = "test", model: str | None = None,
                     max_cases: int | None = None) -> dict[str, Any]:
    """Dice per structure and EF / volume errors of a registered model on one split (its first
    ``max_cases`` videos, patients or images when given)."""
    default, classes = APICAL_SEG, APICAL_SEG_CLASSES
    if name == "masks":
        from echomeasure.training.mask_folder import model_name, read_mask_folder

        samples, classes, view = read_mask_folder(path, split)
        default = model_name(view)
    elif name == "echonet-dynamic" and max_cases is not None:  # decode only the videos evaluated
        from echomeasure.training.echonet_dynamic import read_echonet_dynamic

        samples = read_echonet_dynamic(path, split, max_videos=max(0, int(max_cases)))
    else:
        samples = read_dataset(name, path, split)
    return evaluate_with_model(first_cases(samples, max_cases), name, model, default, classes)
