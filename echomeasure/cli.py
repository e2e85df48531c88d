"""The ``echomeasure`` command: a thin shell over the library.

Exit status: 0 success; 2 user error (one ``error: ...`` line on stderr naming the input as
the user gave it, no traceback, nothing partial left behind; argparse errors too);
1 when the result cannot be written to stdout (full disk: one ``error: cannot write the
output: ...`` line) or for anything else (a bug: the traceback is shown); 141 (128 + SIGPIPE,
as Unix tools) quietly when the reader of a pipe went away (``| head``).

Each command imports what it needs when it runs, so ``echomeasure --help`` and light
commands start fast (torch is only imported by commands that run models).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from echomeasure import __version__
from echomeasure.errors import EchomeasureError, InvalidInputError

log = logging.getLogger("echomeasure")

Command = Callable[[argparse.Namespace], int]

EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a Unix tool whose reader went away


class _OutputError(Exception):
    """stdout cannot be written (full disk, closed file): not the user's input, so exit 1, one line."""


class _PipeClosed(Exception):
    """The reader of stdout went away (``echomeasure ... | head``): stop quietly."""


def _write_out(text: str) -> None:
    """Write ``text`` to stdout now (flushed), turning a failed write into :class:`_OutputError`
    or :class:`_PipeClosed` for :func:`main`."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _PipeClosed from None
    except OSError as exc:
        raise _OutputError(exc.strerror or type(exc).__name__) from None
    except ValueError:  # stdout was closed
        raise _OutputError("stdout is closed") from None


def _print_json(obj: object) -> None:
    """One JSON line on stdout; never NaN or Infinity (not JSON): a result holding one is refused."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        if "out of range float" not in str(exc).lower():
            raise
        raise InvalidInputError(
            "the result holds a value that is not a finite number (NaN or infinity), which JSON cannot carry; "
            "nothing is printed (check the file's calibration)"
        ) from None
    _write_out(text + "\n")


@contextmanager
def _naming_input(path: str | os.PathLike[str]) -> Iterator[None]:
    """User errors raised inside name the input ``path`` as given
    (:func:`echomeasure.ingest.hygiene.named_message`)."""
    from echomeasure.ingest.hygiene import named_message

    try:
        yield
    except EchomeasureError as exc:
        exc.args = (named_message(path, exc),)
        raise


def _path(text: str) -> str:
    """An argparse ``type`` for file and folder arguments: refuses an empty path ('' would mean the
    current folder), keeps the text as typed (it names the input in error messages)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: MESSAGE (see PROG --help)``, exit 2.

    Sub-command parsers are made of the same class (``add_subparsers`` uses the parent's type)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


class _HelpFrom(str):
    """A help text built when help is shown: the names it lists come from the modules that own
    them (registry, training), too heavy to import for every command line.  argparse formats a
    help text with ``help % params``, which builds it here."""

    def __new__(cls, build: Callable[[], str]) -> _HelpFrom:
        obj = super().__new__(cls, "(help)")
        obj._build = build  # type: ignore[attr-defined]
        return obj

    def __mod__(self, params: object) -> str:
        return str(self._build())  # type: ignore[attr-defined]

    def text(self) -> str:
        """The help text itself (for tests and docs)."""
        return str(self._build())  # type: ignore[attr-defined]


def _keypoint_models() -> tuple[str, ...]:
    """The keypoint models, as the measurement catalogue assigns them (plax-linear, doppler-peaks)."""
    from echomeasure.catalog import CATALOG

    return tuple(dict.fromkeys(m.model for m in CATALOG.values() if m.model))


def _datasets() -> tuple[str, ...]:
    """The dataset names of ``train`` / ``evaluate --dataset NAME PATH``."""
    from echomeasure.training.echonet_lvh import DATASET
    from echomeasure.training.seg_datasets import SEG_DATASETS

    return (DATASET, *SEG_DATASETS)


def _segmentation_model_examples() -> str:
    """``plax-seg, apical-seg or <folder>-seg (a model trained with train --dataset masks)``."""
    from echomeasure.models.segmentation import PLAX_SEG_MODEL
    from echomeasure.training.mask_folder import model_name
    from echomeasure.training.seg_datasets import APICAL_SEG

    return f"{PLAX_SEG_MODEL}, {APICAL_SEG} or {model_name('<folder>')} (a model trained with train --dataset masks)"


def _measure_model_help() -> str:
    from echomeasure.models.echonet_measurements import FAMILY

    return (f"{', '.join(_keypoint_models())}, {FAMILY} (imported checkpoints) or a registered segmentation model: "
            f"{_segmentation_model_examples()}; optionally :VERSION (default: the active one)")


def _evaluate_model_help() -> str:
    from echomeasure.models.echonet_measurements import FAMILY
    from echomeasure.training.echonet_lvh import DATASET
    from echomeasure.training.mask_folder import model_name
    from echomeasure.training.seg_datasets import APICAL_SEG, SEG_DATASETS

    apical = [d for d in SEG_DATASETS if d != "masks"]
    return (f"the model to evaluate, optionally :VERSION (default: the active version of the dataset's model: "
            f"{DATASET}: {_keypoint_models()[0]}, or {FAMILY}; {' and '.join(apical)}: {APICAL_SEG}; "
            f"masks: {model_name('<folder>')}, the folder's own model)")


def _registered_segmentation_models() -> list[str]:
    """Names of the segmentation models registered in the weights folder (empty when unreadable)."""
    from echomeasure.models.registry import list_entries
    from echomeasure.models.segmentation import is_segmentation

    try:
        return list(dict.fromkeys(e.name for e in list_entries() if is_segmentation(e.channels)))
    except Exception:  # noqa: BLE001 - no or a damaged manifest: the error lists the fixed models only
        return []


def _db_help(what: str = "SQLAlchemy URL of the store") -> str:
    """``--db`` help: the store's URL and its default (``ECHOMEASURE_DB``, else the SQLite file
    :func:`echomeasure.config.db_url` uses, shown relative to the project in a source checkout)."""
    from pathlib import Path

    from echomeasure import config

    default = Path(config.DB_DIR) / "echomeasure.sqlite"
    try:
        shown = str(default.relative_to(config.PROJECT_ROOT)) if config.SOURCE_CHECKOUT else str(default)
    except ValueError:
        shown = str(default)
    return f"{what} (default: $ECHOMEASURE_DB or SQLite at {shown})"


# --------------------------------------------------------------------------- commands
# Each command is filled in by the module that owns its stage; see docs/architecture.md section 3.


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a file is: kind, frames, size, frame time, regions, de-identification status."""
    from echomeasure.ingest import inspect_file

    with _naming_input(args.path):
        _print_json(inspect_file(args.path))
    return 0


def cmd_deid(args: argparse.Namespace) -> int:
    """Write a de-identified copy of IN at OUT (DICOM to DICOM, video to video)."""
    from echomeasure import config
    from echomeasure.ingest import DeidOptions, deidentify_file

    result = deidentify_file(args.input, args.output, secret=config.secret(args.secret),
                             allow_non_us=getattr(args, "allow_non_us", False),
                             options=DeidOptions(find_text=not getattr(args, "no_text_search", False)),
                             force=getattr(args, "force", False))
    with _naming_input(args.input):  # deidentify_file names the input or the output itself
        _print_json(result)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """De-identify and register files (folders walked recursively); one JSON line per file, and for
    a file that fails an ``error:`` line on stderr naming it as given (or as found in the folder given)."""
    from pathlib import Path

    from tqdm import tqdm

    from echomeasure import config
    from echomeasure.ingest.clip import display_name
    from echomeasure.ingest.hygiene import named_message
    from echomeasure.pipeline import ingest_path, iter_input_files
    from echomeasure.store import open_store

    if args.from_parquet:
        return _ingest_from_parquet(args)
    if not args.paths:
        raise InvalidInputError("give the files or folders to ingest (or --from-parquet DIR)")
    files = iter_input_files(args.paths)
    if not files:
        from echomeasure.ingest.hygiene import quote_path

        raise InvalidInputError(f"{', '.join(quote_path(p) for p in args.paths)}: no files to ingest in the "
                                "folder(s) given; give DICOM, video or image files")
    given = {Path(raw): raw for raw in args.paths}  # a file named on the command line, as typed
    secret = config.secret(args.secret)
    failed = 0
    with open_store(args.db) as store:
        bar = tqdm(files, desc="ingest", unit="file", file=sys.stderr, disable=None, leave=False)
        for path in bar:
            name = display_name(path)  # stdout (and the store) carry the base name only
            try:
                result = ingest_path(
                    path,
                    store,
                    secret=secret,
                    run_models=not args.no_propose,
                    user_cm_per_px=args.cm_per_px,
                    only=args.only.split(",") if args.only else None,
                )
            except EchomeasureError as exc:
                failed += 1
                _print_json({"file": name, "status": "error", "error": str(exc)})
                tqdm.write(f"error: {named_message(given.get(path, path), exc)}", file=sys.stderr)
                continue
            _print_json(result.as_json())
    return 2 if failed else 0


def _ingest_from_parquet(args: argparse.Namespace) -> int:
    """Store the results of ``echomeasure batch --out parquet DIR`` (seals checked with the site secret)."""
    from echomeasure import config
    from echomeasure.batch import ingest_from_parquet
    from echomeasure.errors import InvalidInputError
    from echomeasure.store import open_store

    if args.paths:
        raise InvalidInputError("give either files to ingest or --from-parquet DIR, not both")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise EchomeasureError("reading batch results needs pyarrow: pip install 'echomeasure[ray]'") from None
    with open_store(args.db) as store:
        failed = ingest_from_parquet(args.from_parquet, store, secret=config.secret(args.secret), emit=_print_json)
    return 2 if failed else 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Pre-annotate an archive on Ray: de-identify and propose in parallel, store with one writer."""
    from echomeasure.batch import run_batch

    out_kind, out_dir = args.out if args.out else (None, None)
    if out_kind is not None and out_kind != "parquet":
        from echomeasure.errors import InvalidInputError

        raise InvalidInputError(f"--out {out_kind}: the only output kind is parquet (--out parquet DIR)")
    summary = run_batch(
        args.paths, db=args.db, address=args.address, workers=args.workers, out_parquet=out_dir,
        resume=args.resume, run_models=not args.no_propose, only=args.only.split(",") if args.only else None,
        user_cm_per_px=args.cm_per_px, gpus_per_worker=args.gpus_per_worker, emit=_print_json,
    )
    return 2 if summary.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the review store as CSV, JSON (full history) or COCO keypoints."""
    from echomeasure import config
    from echomeasure.export import export
    from echomeasure.store import open_store
    from echomeasure.store.admin import require_existing

    url = config.db_url(args.db)
    require_existing(url)
    if args.format == "dicom-sr":
        return _export_dicom_sr(args, url)
    if args.format == "masks":
        return _export_masks(args, url)
    if args.status is not None:
        raise EchomeasureError("--status applies to --format dicom-sr only")
    with open_store(url) as store:
        text = export(store, args.format, args.output, clip_ids=args.clip, force=args.force)
    if args.output is None:
        _write_out(text)
    return 0


def _export_masks(args: argparse.Namespace, url: str) -> int:
    """Per-frame PNG label masks (CAMUS values) of the stored contours in the folder ``-o``."""
    from echomeasure.export import export_masks
    from echomeasure.store import open_store

    if args.output is None:
        raise EchomeasureError("--format masks writes files: give the output folder with -o DIR")
    with open_store(url) as store:
        summary = export_masks(store, args.output, clip_ids=args.clip, force=args.force)
    _print_json({"folder": str(args.output), "masks": len(summary["masks"]), "labels": summary["labels"]})
    return 0


def _export_dicom_sr(args: argparse.Namespace, url: str) -> int:
    """One DICOM SR per study plus its de-identified source images in the folder ``-o``."""
    from echomeasure import config
    from echomeasure.sr_export import export_dicom_sr, parse_statuses
    from echomeasure.store import open_store

    if args.output is None:
        raise EchomeasureError("--format dicom-sr writes files: give the output folder with -o DIR")
    statuses = parse_statuses(args.status)
    with open_store(url) as store:
        result = export_dicom_sr(store, args.output, secret=config.secret(args.secret), clip_ids=args.clip,
                                 statuses=statuses, reader=args.reader, force=args.force)
    for notice in result.notices:
        sys.stderr.write(f"notice: {notice}\n")
    _print_json(result.as_json())
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    """Agreement between readers and with the AI, per measurement (ICC, Bland-Altman, CV)."""
    from echomeasure import config
    from echomeasure.agreement import run
    from echomeasure.store import open_store
    from echomeasure.store.engine import parse_url, sqlite_path

    url = config.db_url(args.db)
    db_file = sqlite_path(parse_url(url))
    if db_file is not None and not db_file.exists():
        raise EchomeasureError(f"no review database at {db_file}; run 'echomeasure ingest' first or pass --db")
    modes = args.mode.split(",") if args.mode else None
    with open_store(url) as store:
        text = run(store, fmt=args.format, plots=args.plots, modes=modes)
    _write_out(text)
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    """De-identify one file, run the models, print the proposals as JSON (docs/architecture.md section 3)."""
    from echomeasure.errors import MeasurementError
    from echomeasure.propose.engine import parse_only

    try:  # an option error, before the file is read (it is not about the file)
        parse_only(args.only)
    except MeasurementError as exc:
        raise MeasurementError(f"--only {args.only}: {exc}") from None
    with _naming_input(args.path):
        _print_json(_measure(args))
    return 0


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """The contract JSON of ``measure`` (the model chosen by ``--model``)."""
    from echomeasure.propose.measure import measure_file, terminal_progress

    model_version = args.model_version
    if getattr(args, "model", None):
        from echomeasure.models.echonet_measurements import FAMILY, measure_file_echonet

        name, _, version = args.model.partition(":")
        if name == FAMILY:
            with terminal_progress(not args.quiet, desc=FAMILY) as progress:
                return measure_file_echonet(args.path, only=args.only, per_frame=args.per_frame,
                                            scale_cm_per_px=args.scale, version=version or None, progress=progress)
        from echomeasure.models.segmentation import measure_file_segmentation, segmentation_registered

        if segmentation_registered(name):
            return measure_file_segmentation(args.path, name, version or None, per_frame=args.per_frame,
                                             scale_cm_per_px=args.scale)
        if name not in _keypoint_models():
            from echomeasure.training.mask_folder import model_name

            seg = _registered_segmentation_models()
            here = f"registered here: {', '.join(seg)}" if seg else "none is registered here"
            raise InvalidInputError(f"--model {name}: unknown model; use {', '.join(_keypoint_models())}, {FAMILY} or a "
                                    f"segmentation model ({here}; train --dataset masks registers "
                                    f"{model_name('<folder>')})")
        if version:
            model_version = ",".join(p for p in (model_version, f"{name}={version}") if p)
    with terminal_progress(not args.quiet) as progress:
        return measure_file(
            args.path,
            only=args.only,
            per_frame=args.per_frame,
            scale_cm_per_px=args.scale,
            model_version=model_version,
            progress=progress,
            backend=args.backend,
        )


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure speed (and accuracy, with trained weights) and write/print the results JSON."""
    from echomeasure.bench import run_bench
    from echomeasure.errors import InvalidInputError

    for option, value in (("--cases", args.cases), ("--frames", args.frames), ("--repeats", args.repeats)):
        if value < 1:  # each gave a traceback (an empty median, an empty clip)
            raise InvalidInputError(f"{option} must be at least 1")
    results = run_bench(
        speed=args.speed or not (args.accuracy or args.memory or args.backbones),
        accuracy=args.accuracy,
        cases=args.cases,
        n_frames=args.frames,
        repeats=args.repeats,
        backbones=args.backbones,
        memory=args.memory,
        profile=args.profile,
        output=args.output,
    )
    if args.output is None:
        _print_json(results)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write synthetic DICOM studies with exact truth (and/or a realism contact sheet)."""
    from echomeasure.errors import InvalidInputError

    if args.outdir is None and args.preview is None:
        raise InvalidInputError("give an output folder (echomeasure synth OUTDIR) or --preview SHEET.png")
    if args.cases < 1:
        raise InvalidInputError("--cases must be at least 1")
    if args.outdir is not None:
        from echomeasure.synthetic.studio import write_cases

        for case in write_cases(args.outdir, args.cases, args.seed, args.kind, flow=args.flow,
                                small=args.small, jpeg=args.jpeg, progress=not args.quiet,
                                style=args.style):
            _print_json({"file": str(case.dicom), "truth": str(case.truth), "kind": case.kind, "flow": case.flow})
    if args.preview is not None:
        from echomeasure.synthetic.preview import write_contact_sheet

        sheet = write_contact_sheet(args.preview, seed=args.seed)
        _print_json({"preview": str(sheet)})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model on synthetic data, evaluate it on held-out cases and register it (active only
    with ``--activate``; a ``--smoke`` run never)."""
    from echomeasure.models.registry import active_version
    from echomeasure.training.train import train_model

    if getattr(args, "dataset", None):
        with _naming_input(args.dataset[1]):
            return _train_on_dataset(args)
    if not args.model:
        from echomeasure.errors import InvalidInputError

        raise InvalidInputError(f"give --model {'|'.join(_keypoint_models())}, or --dataset NAME PATH "
                                f"(NAME: {', '.join(_datasets())})")
    outcome = train_model(
        args.model, steps=args.steps, seed=args.seed, out=args.out, smoke=args.smoke, cases=args.cases,
        eval_cases=args.eval_cases, version=args.version, threads=args.threads,
        max_wall_s=None if args.max_minutes is None else args.max_minutes * 60.0, progress=not args.quiet,
        styles=getattr(args, "styles", None), init_from=getattr(args, "init_from", None),
        exposure=getattr(args, "exposure_augment", False), bloom=getattr(args, "bloom_augment", False),
        activate=args.activate,
    )
    e = outcome.entry
    _print_json({"name": e.name, "version": e.version, "file": e.file, "sha256": e.sha256,
                 "steps": outcome.result.steps_done, "train_wall_s": round(outcome.result.wall_s, 1),
                 "active": active_version(e.name, args.out) == e.version, "metrics": outcome.metrics})
    return 0


def _dataset_arg(spec: Sequence[str]) -> str:
    """The PATH of ``--dataset echonet-lvh PATH`` (the segmentation datasets are handled before)."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.training.echonet_lvh import DATASET

    name, path = spec
    if name != DATASET:
        raise InvalidInputError(f"--dataset {name}: unknown dataset; known: {', '.join(_datasets())}")
    return path


def _segmentation_dataset(spec: Sequence[str] | None) -> bool:
    """True for ``--dataset camus|echonet-dynamic|masks PATH`` (segmentation datasets)."""
    from echomeasure.training.seg_datasets import SEG_DATASETS

    return spec is not None and len(spec) > 0 and spec[0] in SEG_DATASETS


def _train_on_dataset(args: argparse.Namespace) -> int:
    """``train --dataset echonet-lvh PATH``: plax-linear trained on the dataset's train split."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.models import registry
    from echomeasure.training.echonet_lvh import train_on_lvh

    if _segmentation_dataset(args.dataset):
        from echomeasure.training.seg_datasets import train_on_dataset

        _print_json(train_on_dataset(args.dataset[0], args.dataset[1], steps=args.steps, seed=args.seed, out=args.out,
                                     version=args.version, from_scratch=args.from_scratch, activate=args.activate,
                                     max_minutes=args.max_minutes))
        return 0
    path = _dataset_arg(args.dataset)
    if args.model not in (None, "plax-linear"):
        raise InvalidInputError("--dataset echonet-lvh trains plax-linear; drop --model or give --model plax-linear")
    outcome = train_on_lvh(
        path, steps=args.steps, seed=args.seed, out=args.out, version=args.version,
        base_version=getattr(args, "init_from", None), from_scratch=args.from_scratch, max_videos=args.cases,
        eval_videos=args.eval_cases, activate=args.activate, threads=args.threads,
        max_wall_s=None if args.max_minutes is None else args.max_minutes * 60.0, progress=not args.quiet,
    )
    e = outcome.entry
    _print_json({"name": e.name, "version": e.version, "parent": e.parent, "file": e.file, "sha256": e.sha256,
                 "dataset": "echonet-lvh", "train_frames": outcome.n_images, "steps": outcome.steps,
                 "train_wall_s": round(outcome.train_wall_s, 1),
                 "active": registry.active_version(e.name, args.out) == e.version, "metrics": dict(e.metrics)})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Error of a registered model on a public dataset split (JSON)."""
    from echomeasure.training.echonet_lvh import evaluate_lvh

    with _naming_input(args.dataset[1]):
        if _segmentation_dataset(args.dataset):
            from echomeasure.training.seg_datasets import evaluate_dataset

            _print_json(evaluate_dataset(args.dataset[0], args.dataset[1], split=args.split, model=args.model,
                                         max_cases=args.max_videos))
            return 0
        path = _dataset_arg(args.dataset)
        _print_json(evaluate_lvh(path, split=args.split, model=args.model, max_videos=args.max_videos,
                                 progress=not args.quiet))
    return 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    """Register published checkpoints (copied into the weights folder, sha256 recorded)."""
    from echomeasure.errors import InvalidInputError
    from echomeasure.models.echonet_measurements import FAMILY, import_checkpoints

    if args.source != FAMILY:
        raise InvalidInputError(f"weights import {args.source}: unknown source; known: {FAMILY}")
    with _naming_input(args.dir):
        report = import_checkpoints(args.dir, weights_dir=args.out, version=args.version)
    for notice in report.notices:
        sys.stderr.write(f"notice: {notice}\n")
    _print_json(report.to_dict())
    return 0


def cmd_weights_activate(args: argparse.Namespace) -> int:
    """Make a registered version the one used when none is asked for (a new one, or a rollback)."""
    from echomeasure.models.registry import active_version, set_active

    before = active_version(args.name, args.out)
    set_active(args.name, args.version, weights_dir=args.out)  # checks the version's file first
    _print_json({"name": args.name, "active": args.version, "was": before})
    return 0


def _metrics_summary(metrics: dict) -> str:
    """One short cell for ``weights list``: per evaluation protocol, the mean error (or mIoU, Dice)
    and gross misses when counted."""
    cells = []
    for protocol, figures in metrics.items():
        parts = []
        if figures.get("mean_mae_mm") is not None:
            parts.append(f"MAE {figures['mean_mae_mm']:.2f} mm")
        elif figures.get("endpoint_mae_mm") is not None:  # a fine-tuned version's review hold-out
            parts.append(f"endpoint MAE {figures['endpoint_mae_mm']:.2f} mm")
        if figures.get("mean_error_pct") is not None:
            parts.append(f"error {figures['mean_error_pct']:.2f} %")
        if any(k.endswith("_gross") for k in figures):
            parts.append(f"{sum(v for k, v in figures.items() if k.endswith('_gross') and v is not None):g} gross")
        if figures.get("mean_iou") is not None:
            parts.append(f"mIoU {figures['mean_iou']:.2f}")
        dice = {k[5:]: v for k, v in figures.items() if k.startswith("dice_") and v is not None}
        if dice:
            parts.append("Dice " + " ".join(f"{k} {v:.2f}" for k, v in dice.items()))
        if parts:
            cells.append(f"{protocol}: " + ", ".join(parts))
    return "; ".join(cells) or "not measured here"


def cmd_weights_list(args: argparse.Namespace) -> int:
    """Every registered version with its data and metrics (table, or JSON with --json)."""
    from echomeasure.models.registry import active_version, list_entries

    rows: list[dict[str, Any]] = []
    for e in list_entries(args.out):
        rows.append({"name": e.name, "version": e.version, "active": active_version(e.name, args.out) == e.version,
                     "arch": e.arch, "parent": e.parent, "trained_on": e.trained_on, "created": e.created,
                     "sha256": e.sha256, "metrics": {p: dict(m) for p, m in e.metrics.items()},
                     "thresholds": e.thresholds.to_json(), "decode": e.decode.to_json()})
    if args.json:
        _print_json(rows)
        return 0
    # the figures each version was registered with: later changes to the measuring code are
    # benchmarked in benchmarks/, not written back into registered (immutable) versions
    head = ("name", "version", "active", "metrics at registration", "data")
    table = [head] + [(r["name"], r["version"], "*" if r["active"] else "", _metrics_summary(r["metrics"]),
                       r["trained_on"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head) - 1)]
    _write_out("".join("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + str(row[-1])
                       + "\n" for row in table))
    return 0


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_auth(spec: str | None) -> tuple[str, str] | None:
    """``--auth USER:PASS`` as a (user, password) pair; a user error when malformed."""
    from echomeasure.errors import InvalidInputError

    if spec is None:
        return None
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise InvalidInputError("--auth needs USER:PASS with a non-empty user and password")
    return user, password


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the review UI; refuse to listen beyond this machine without a login."""
    from echomeasure.errors import InvalidInputError

    auth = parse_auth(args.auth)
    if args.host not in LOOPBACK_HOSTS and auth is None and not args.no_auth:
        raise InvalidInputError(
            f"refusing to serve on {args.host} without a login; add --auth USER:PASS "
            "(or --no-auth if this network is trusted)"
        )
    from echomeasure.ui.app import main as demo_main

    demo_main(host=args.host, port=args.port, db=args.db, auth=auth, reviewer=args.reviewer)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a model from the reviews in the store, evaluate before/after, register it."""
    if args.model is not None:  # a segmentation model learns from reviewed contours
        from echomeasure.training.finetune_seg import finetune_contours

        if args.replay_cases is not None:
            raise InvalidInputError("--replay-cases applies to keypoint models (--base); drop it with --model")

        contour_outcome = finetune_contours(
            args.db, model=args.model, base_version=args.base_version, steps=args.steps, holdout_fraction=args.holdout,
            min_frames=args.min_frames, keep_unreviewed=args.keep_unreviewed, seed=args.seed, activate=args.activate,
            weights_dir=args.out,
        )
        _print_json(contour_outcome.to_dict())
        return 0
    from echomeasure.training.finetune import DEFAULT_REPLAY_CASES, FinetuneConfig, finetune

    config = FinetuneConfig(
        base=args.base, base_version=args.base_version, epochs=args.epochs, min_frames=args.min_frames,
        holdout_fraction=args.holdout, synthetic_eval_cases=args.eval_cases, seed=args.seed,
        activate=args.activate, max_steps=args.max_steps,
        replay_cases=DEFAULT_REPLAY_CASES if args.replay_cases is None else args.replay_cases,
    )
    outcome = finetune(config, db_url=args.db, weights_dir=args.out, progress=not args.quiet)
    _print_json(outcome.to_dict())
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify the audit hash chain: exit 0 intact, 1 broken (first broken link on stderr), 2 user error."""
    from echomeasure.store.admin import verify_audit

    report = verify_audit(args.db)
    _print_json(report.as_json())
    if not report.ok:
        where = f" at event {report.broken_event_id}" if report.broken_event_id is not None else ""
        sys.stderr.write(f"error: audit chain broken{where}: {report.reason}\n")
        return 1
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    """Back up the store: SQLite online backup to OUT; for PostgreSQL print the pg_dump command."""
    from echomeasure.store.admin import backup

    result = backup(args.db, args.output)
    _print_json(result.as_json())
    if result.report is not None and not result.report.ok:
        sys.stderr.write(f"error: backup written, but its audit chain is broken: {result.report.reason}\n")
        return 1
    return 0


def cmd_db_init(args: argparse.Namespace) -> int:
    """Create or upgrade the store; with --roles (PostgreSQL) create the least-privilege app role."""
    import os

    from echomeasure import config
    from echomeasure.store import open_store
    from echomeasure.store.admin import create_app_role

    url = config.db_url(args.db)
    with open_store(url) as store:
        out: dict[str, object] = {"database": store.url}
    if args.roles:
        out["app_role"] = args.app_role
        out["app_url"] = create_app_role(url, args.app_role, os.environ.get("ECHOMEASURE_APP_PASSWORD"))
    _print_json(out)
    return 0


# --------------------------------------------------------------------------- parser


def _add_file_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands inspect and deid: one file in, JSON or a de-identified copy out."""
    s = sub.add_parser("inspect", help="describe a DICOM / video / image file as JSON")
    s.add_argument("path", type=_path)
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("deid", help="write a de-identified copy of a DICOM or video file")
    s.add_argument("input", metavar="IN", type=_path)
    s.add_argument("output", metavar="OUT", type=_path,
                   help="the de-identified copy, in the input's container: its extension must say so (.dcm for "
                   "DICOM, .avi for an AVI, .mp4 for an MP4, ...); written atomically")
    s.add_argument("--force", action="store_true", help="replace an existing OUT (refused without it)")
    s.add_argument("--secret", help="site secret for UID remapping (default: $ECHOMEASURE_SECRET or db/.secret)")
    s.add_argument("--allow-non-us", action="store_true", help="also accept DICOM objects that are not ultrasound")
    s.add_argument("--no-text-search", action="store_true",
                   help="skip the OCR search for burned-in text (the record then asks for human confirmation)")
    s.set_defaults(func=cmd_deid)


def _add_store_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands ingest, batch, export and agreement: the review store's input and output."""
    s = sub.add_parser("ingest", help="de-identify files and register them in the review store")
    s.add_argument("paths", nargs="*", metavar="PATH", type=_path, help="files or folders (walked recursively)")
    s.add_argument("--from-parquet", metavar="DIR", help="store the results 'echomeasure batch --out parquet DIR' wrote")
    s.add_argument("--db", help=_db_help())
    s.add_argument("--secret", help="site secret for UID remapping (default: $ECHOMEASURE_SECRET or db/.secret)")
    s.add_argument("--no-propose", action="store_true", help="store the clips without running the models")
    s.add_argument("--only", help="comma-separated measurement names to propose (e.g. av_vmax)")
    s.add_argument("--cm-per-px", type=float, help="scale for uncalibrated videos and images (cm per pixel)")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("batch", help="pre-annotate an archive in parallel on Ray (local or a cluster)")
    s.add_argument("paths", nargs="+", metavar="PATH", type=_path, help="files or folders (walked recursively)")
    s.add_argument("--db", help=_db_help())
    s.add_argument("--address", help="join a Ray cluster: 'auto' or ray://HOST:PORT (default: local Ray sized to this machine)")
    s.add_argument("--workers", type=int, help="actors in the pool (default: one per CPU)")
    s.add_argument("--out", nargs=2, metavar=("parquet", "DIR"), help="write Parquet results to DIR instead of the store")
    s.add_argument("--resume", action="store_true", help="skip files an earlier run finished (keyed by path and content)")
    s.add_argument("--no-propose", action="store_true", help="store the clips without running the models")
    s.add_argument("--only", help="comma-separated measurement names to propose (e.g. av_vmax)")
    s.add_argument("--cm-per-px", type=float, help="scale for uncalibrated videos and images (cm per pixel)")
    s.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs Ray reserves per actor (num_gpus; default 0)")
    s.set_defaults(func=cmd_batch)

    s = sub.add_parser("export", help="export reviews as CSV, JSON (full history), COCO keypoints and contours, or PNG masks")
    s.add_argument("--db", help=_db_help())
    s.add_argument("--format", choices=("csv", "json", "coco", "dicom-sr", "masks"), default="csv")
    s.add_argument("-o", "--output", type=_path,
                   help="output file (written atomically; default: stdout); a new folder for dicom-sr and masks")
    s.add_argument("--force", action="store_true",
                   help="replace an existing output file (or write into an existing folder); refused without it")
    s.add_argument("--clip", type=int, action="append", metavar="ID", help="export only this clip (repeatable)")
    s.add_argument("--status", metavar="LIST",
                   help="dicom-sr: statuses to export (default accepted,corrected,added; may name proposed)")
    s.add_argument("--secret", help="dicom-sr: site secret of the UID remap (default: $ECHOMEASURE_SECRET or db/.secret)")
    s.add_argument("--reader", help="dicom-sr: on reader-study clips, export this reader's reads")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("agreement", help="agreement between readers and with the AI (ICC, Bland-Altman, CV)")
    s.add_argument("--db", help=_db_help())
    s.add_argument("--format", choices=("md", "json"), default="md", help="report format (default md)")
    s.add_argument("--plots", metavar="DIR", help="also write one Bland-Altman PNG per measurement here")
    s.add_argument("--mode", metavar="MODES", help="only reads made in these modes (e.g. blinded or unassisted)")
    s.set_defaults(func=cmd_agreement)


def _add_measure_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands measure, bench and synth: proposals for one file, benchmarks, synthetic studies."""
    s = sub.add_parser("measure", help="propose measurements for one file and print JSON")
    s.add_argument("path", metavar="PATH", type=_path)
    s.add_argument("--per-frame", action="store_true", help="include per-frame keypoints and confidences")
    s.add_argument("--only", metavar="NAMES", help="comma-separated measurements to propose (e.g. ivsd,lvidd or av_vmax)")
    s.add_argument("--scale", type=float, metavar="CM_PER_PX",
                   help="user calibration for videos/images without DICOM calibration")
    s.add_argument("--model-version", metavar="V", help="model version to use (V, or NAME=V[,NAME=V]); default: the active one")
    s.add_argument("--model", metavar="NAME[:VERSION]", help=_HelpFrom(_measure_model_help))
    s.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto", help="inference backend (default: auto)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("bench", help="speed / memory / accuracy benchmark on synthetic clips")
    s.add_argument("--speed", action="store_true",
                   help="time the models and the end-to-end path (default when no other part is asked for)")
    s.add_argument("--accuracy", action="store_true", help="accuracy of the registered weights on held-out synthetic cases")
    s.add_argument("--cases", type=int, default=20, help="held-out cases for --accuracy (default 20)")
    s.add_argument("--frames", type=int, default=100, help="frames of the end-to-end clip (default 100)")
    s.add_argument("--repeats", type=int, default=5, help="repeats for the medians (default 5)")
    s.add_argument("--backbones", action="store_true", help="also time the backbone/input-size table (slow)")
    s.add_argument("--memory", action="store_true", help="peak memory of a 300-frame 600x800 clip in a child process")
    s.add_argument("--profile", action="store_true", help="add a cProfile top list of one end-to-end run")
    s.add_argument("-o", "--output", metavar="FILE", help="write the results JSON here (default: stdout)")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("synth", help="write synthetic echo studies (DICOM + truth JSON)")
    s.add_argument("outdir", nargs="?", metavar="OUTDIR", help="folder for case_XXXX.dcm + case_XXXX.truth.json")
    s.add_argument("--cases", type=int, default=4, help="cases per kind (default 4)")
    s.add_argument("--seed", type=int, default=0, help="run seed: same seed, same bytes (default 0)")
    s.add_argument("--kind", choices=("2d", "doppler", "both", "a4c", "a2c", "apical", "all"), default="2d",
                   help="PLAX cines (2d), Doppler strips, both, apical 4- / 2-chamber cines (a4c, a2c; apical: "
                   "both views of each heart) or all of them (default 2d)")
    s.add_argument("--flow", choices=("av", "tr", "lvot", "mv"),
                   help="Doppler flow for every strip (default: cycle av, mv, lvot, tr)")
    s.add_argument("--jpeg", action="store_true", help="JPEG Baseline (YBR_FULL_422) instead of uncompressed RGB")
    s.add_argument("--small", action="store_true", help="small studies: 40 frames at 480x640, JPEG (examples, tests)")
    s.add_argument("--style", default="classic", metavar="FAMILY",
                   help="style family: classic (default), scatter (held out of training), vendor or rf (pulse-echo simulation)")
    s.add_argument("--preview", metavar="SHEET.png", help="also write a contact sheet of synthetic frames next to a real echo")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands train, evaluate and weights: training, evaluation and the weights registry."""
    s = sub.add_parser("train", help="train a model on synthetic data, evaluate it and register the weights")
    s.add_argument("--model", choices=_keypoint_models(), help="model to train (required without --dataset)")
    s.add_argument("--dataset", nargs=2, metavar=("NAME", "PATH"),
                   help="train on a dataset folder instead of synthetic data: echonet-lvh (plax-linear), camus or "
                   "echonet-dynamic (apical-seg), masks (image + mask PNGs with classes.txt: a custom segmentation model)")
    s.add_argument("--from-scratch", action="store_true", help="--dataset: start from random weights, not the active plax-linear")
    s.add_argument("--activate", action="store_true",
                   help="make the new version the active one (used by measure, ingest and the demo); without it the "
                   "active version stays as it was; refused with --smoke")
    s.add_argument("--steps", type=int, help="optimisation steps (default: the shipped recipe's)")
    s.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and augmentation (default 0)")
    s.add_argument("--out", metavar="DIR", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    s.add_argument("--smoke", action="store_true",
                   help="tiny inputs and a few steps: checks the pipeline in seconds (never made active)")
    s.add_argument("--cases", type=int, help="synthetic training cases to render (default 400 cines / 800 strips)")
    s.add_argument("--eval-cases", type=int, help="held-out cases to evaluate on (default 40)")
    s.add_argument("--version", help="version to register (default: the next 1.N)")
    s.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    s.add_argument("--max-minutes", type=float, help="stop with a resumable checkpoint after this long")
    s.add_argument("--styles", metavar="FAMILIES",
                   help="synthetic style families to train on, e.g. classic,vendor "
                   "(default classic; the held-out family is refused)")
    s.add_argument("--init-from", metavar="VERSION", help="start from this registered version of the same model")
    s.add_argument("--exposure-augment", action="store_true",
                   help="also vary overall gain (0.7-2.5x) and the noise floor while training (synthetic data)")
    s.add_argument("--bloom-augment", action="store_true",
                   help="also re-image half of the frames through a point-spread function and log compression "
                        "(tissue blooming into the blood, as at high gain; the keypoints stay on the interfaces)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="error of a registered model on a public dataset split (JSON)")
    s.add_argument("--dataset", nargs=2, required=True, metavar=("NAME", "PATH"),
                   help=_HelpFrom(lambda: f"the dataset ({', '.join(_datasets())}) and its folder"))
    s.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate (default test)")
    s.add_argument("--model", metavar="NAME[:VERSION]", help=_HelpFrom(_evaluate_model_help))
    s.add_argument("--max-videos", type=int, metavar="N",
                   help="only the first N videos of the split (CAMUS: patients; masks: images)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("weights", help="list registered model versions, activate one, or import published checkpoints")
    weights_sub = s.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    a = weights_sub.add_parser("list", help="every registered version with its data and metrics")
    a.add_argument("--json", action="store_true", help="JSON instead of a table")
    a.add_argument("--out", metavar="DIR", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    a.set_defaults(func=cmd_weights_list)
    a = weights_sub.add_parser("import", help="register published checkpoints: weights import echonet-measurements DIR")
    a.add_argument("source", metavar="SOURCE", help="echonet-measurements")
    a.add_argument("dir", metavar="DIR", type=_path, help="folder holding the <task>_weights.ckpt files")
    a.add_argument("--version", help="version to register (default: the next 1.N)")
    a.add_argument("--out", metavar="DIR", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    a.set_defaults(func=cmd_weights_import)
    a = weights_sub.add_parser("activate", help="use this version when none is asked for (activate or roll back)")
    a.add_argument("name", metavar="NAME", help="model name, e.g. plax-linear")
    a.add_argument("version", metavar="VERSION", help="a registered version (see weights list)")
    a.add_argument("--out", metavar="DIR", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    a.set_defaults(func=cmd_weights_activate)


def _add_review_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands demo and finetune: the review UI and learning from its reviews."""
    s = sub.add_parser("demo", help="start the review UI (Gradio) on http://127.0.0.1:7860")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--db", help=_db_help("SQLAlchemy URL of the review store"))
    s.add_argument("--auth", metavar="USER:PASS", help="require this login (needed to listen beyond localhost)")
    s.add_argument("--no-auth", action="store_true", help="listen beyond localhost without a login (trusted networks only)")
    s.add_argument("--reviewer", help="pre-fill the reviewer name")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("finetune", help="fine-tune a model from stored reviews and register the new version")
    s.add_argument("--db", help=_db_help())
    s.add_argument("--base", default="plax-linear", choices=_keypoint_models(), help="model to fine-tune")
    s.add_argument("--base-version", help="version to start from (default: the active one)")
    s.add_argument("--epochs", type=int, default=10, help="passes over the training reviews (default 10)")
    s.add_argument("--out", metavar="DIR", help="weights folder (default: $ECHOMEASURE_WEIGHTS or weights/)")
    s.add_argument("--min-frames", type=int, default=20, help="refuse with fewer reviewed frames (default 20)")
    s.add_argument("--holdout", type=float, default=0.25, help="share of reviewed clips held out (default 0.25)")
    s.add_argument("--eval-cases", type=int, default=20, help="synthetic hold-out cases before/after (default 20)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--activate", choices=("auto", "yes", "no"), default="auto",
                   help="make the new version active: auto = only when it is not worse (default)")
    s.add_argument("--max-steps", type=int, help="cap on optimisation steps")
    s.add_argument("--replay-cases", type=int, metavar="N",  # default: finetune.DEFAULT_REPLAY_CASES (no torch here)
                   help="synthetic cases mixed into every batch against forgetting: the first N of the base's "
                   "training cases (default 100; rendered on the first run, then cached)")
    s.add_argument("--model", metavar="NAME",
                   help="a segmentation model (plax-seg, apical-seg, ...): learn from reviewed contours instead")
    s.add_argument("--steps", type=int, default=150, help="optimisation steps with --model (default 150)")
    s.add_argument("--keep-unreviewed", type=float, default=1.0,
                   help="with --model: weight keeping the base's split among unreviewed structures (0: off; default 1)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_finetune)


def _add_admin_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands audit and db: the store's administration."""
    s = sub.add_parser("audit", help="check the tamper-evident audit trail")
    audit_sub = s.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    a = audit_sub.add_parser("verify", help="verify the audit hash chain (exit 0 intact, 1 broken, 2 user error)")
    a.add_argument("--db", help=_db_help())
    a.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("db", help="create, upgrade or back up the review store")
    db_sub = s.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    a = db_sub.add_parser("init", help="create/upgrade the store; --roles adds the PostgreSQL app role")
    a.add_argument("--db", help=_db_help("SQLAlchemy URL of the store, as its owner"))
    a.add_argument("--roles", action="store_true",
                   help="PostgreSQL: create the app role (SELECT/INSERT, no UPDATE/DELETE on append-only tables); "
                        "its password from $ECHOMEASURE_APP_PASSWORD")
    a.add_argument("--app-role", default="echomeasure_app", metavar="NAME", help="name of the app role (default echomeasure_app)")
    a.set_defaults(func=cmd_db_init)
    a = db_sub.add_parser("backup", help="SQLite: online backup to OUT (atomic); PostgreSQL: print the pg_dump command")
    a.add_argument("output", metavar="OUT", help="backup file (replaced atomically; must not be a folder or link)")
    a.add_argument("--db", help=_db_help())
    a.set_defaults(func=cmd_db_backup)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = _ArgumentParser(
        prog="echomeasure",
        description="AI-assisted echocardiography measurement with human review.",
    )
    p.add_argument("--version", action="version", version=f"echomeasure {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_file_commands(sub)
    _add_store_commands(sub)
    _add_measure_commands(sub)
    _add_model_commands(sub)
    _add_review_commands(sub)
    _add_admin_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except EchomeasureError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except _PipeClosed:
        _drop_stdout()
        return EXIT_PIPE_CLOSED
    except _OutputError as exc:
        _drop_stdout()
        sys.stderr.write(f"error: cannot write the output: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


def _drop_stdout() -> None:
    """Point the process's stdout at /dev/null after a failed write, so the interpreter's final
    flush of what is still buffered does not fail again (a second message, exit status 120)."""
    stdout = sys.__stdout__
    if stdout is None or sys.stdout is not stdout:
        return  # a test's capture or a caller's stream: not ours to replace
    try:
        fd = stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
