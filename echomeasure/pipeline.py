"""Ingest one file end to end: de-identify -> store clip and frames -> propose -> store proposals.

The CLI (``echomeasure ingest``) and the review UI both call :func:`ingest_path`; it and the batch
writer store a clip through :func:`store_clip`, and its proposals (calipers, contours, volumes)
through :func:`store_proposals`.  Only the
de-identification gate's output (:class:`echomeasure.ingest.DeidentifiedClip`) reaches the store.
When no model weights are installed the clip is still stored, without proposals, and the
result carries a warning instead of failing.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echomeasure.errors import MeasurementError, StoreError, WeightsError
from echomeasure.ingest.clip import display_name
from echomeasure.store import ClipRecord, ProposalRecord, Store

log = logging.getLogger(__name__)

# progress(fraction 0..1, description): the signature of gradio.Progress as well.
Progress = Callable[[float, str], Any]


def _no_progress(fraction: float, description: str) -> None:
    """The progress callback when none is given."""


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file.

    ``file`` is the base file name only (never the directories); show it on the terminal or
    screen, never store or export it.  ``new`` is False when the clip was already in the store.
    ``proposals`` are the caliper proposals (PLAX lengths, Doppler peaks); ``contours`` and
    ``volumes`` count the stored contour proposals (one per structure per frame) and volume/EF
    proposals (apical views).  ``warnings`` ask the reader to check something; ``notices`` only
    inform (e.g. that an apical cine got contours and volumes instead of PLAX calipers).
    """

    file: str
    clip: ClipRecord
    proposals: tuple[ProposalRecord, ...] = ()
    new: bool = True
    proposed: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    contours: int = 0
    volumes: int = 0
    notices: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        """The JSON line ``echomeasure ingest`` prints for this file (no identifying value):
        ``"proposals"`` counts the caliper proposals, ``"contours"`` and ``"volumes"`` what the
        segmentation models proposed, ``"notices"`` what only informs."""
        c = self.clip
        return {
            "file": self.file,
            "status": "ok",
            "clip_id": c.id,
            "new": self.new,
            "study_uid": c.study_uid,
            "series_uid": c.series_uid,
            "instance_uid": c.instance_uid,
            "kind": c.kind,
            "frames": c.n_frames,
            "calibration": c.calibration_source,
            "proposals": len(self.proposals),
            "contours": self.contours,
            "volumes": self.volumes,
            "warnings": list(self.warnings),
            "notices": list(self.notices),
        }


def store_clip(
    store: Store,
    dclip: Any,
    file: str,
    make_proposals: Callable[[], tuple[Any, Sequence[str]]],
    *,
    save_frames: bool = True,
    actor: str = "system",
    report: Progress | None = None,
) -> IngestResult:
    """Store a de-identified clip, its frames and, unless the store holds some already, its proposals.

    The one writer of an ingested clip: ``echomeasure ingest``, the review UI and the batch writer
    (:func:`echomeasure.batch.run.store_opened`) all store through here.  ``make_proposals`` is
    called only when the clip has no proposals yet; it returns ``(ClipProposals or None,
    warnings)`` (None: no proposals, the warnings say why).  The proposals are stored with
    :func:`store_proposals`.
    """
    report = report or _no_progress
    report(0.3, "storing the de-identified clip")
    record = store.add_clip(dclip, actor=actor)
    if save_frames and (record.created or len(store.frame_images(record.id)) < record.n_frames):
        report(0.35, "keeping the de-identified frames")
        store.save_frames(record.id, dclip.clip.frames, actor=actor)
    if not record.created:
        # proposed before: calipers, or contours and volumes (an apical clip has no calipers), or at
        # least a view decision (a clip of another view with nothing proposed): not run again
        from echomeasure.store.clip_views import latest_views

        existing = tuple(store.proposals(record.id))
        n_contours, n_volumes = _segmentation_counts(store, record.id)
        if existing or n_contours or n_volumes or record.id in latest_views(store, [record.id]):
            return IngestResult(file=file, clip=record, proposals=existing, new=False, contours=n_contours,
                                volumes=n_volumes)
    clip_proposals, warnings = make_proposals()
    if clip_proposals is None:
        n_contours, n_volumes = _segmentation_counts(store, record.id)
        return IngestResult(file=file, clip=record, new=record.created, warnings=tuple(warnings),
                            contours=n_contours, volumes=n_volumes)
    stored, store_warnings = store_proposals(store, record.id, clip_proposals, actor=actor)
    warned, notices = _split_routing_notice(clip_proposals, (*warnings, *store_warnings))
    n_contours, n_volumes = _segmentation_counts(store, record.id)
    return IngestResult(file=file, clip=record, proposals=stored, new=record.created, proposed=True,
                        warnings=warned, notices=notices, contours=n_contours, volumes=n_volumes)


def _segmentation_counts(store: Store, clip_id: int) -> tuple[int, int]:
    """How many contour proposals and volume proposals of a clip are stored."""
    from echomeasure.store import contours

    return len(contours.contour_proposals(store, clip_id)), len(contours.volumes(store, clip_id))


def _split_routing_notice(clip_proposals: Any, messages: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(warnings, notices)``: the view classifier's word that a cine is not PLAX ("this clip looks
    like apical four-chamber (a4c, ...), not a parasternal long-axis view: no PLAX calipers ...")
    only informs when the clip went to the apical segmentation, whose contours and volumes are its
    proposals; every other message stays a warning.  The clip's stored notices keep all of them."""
    from echomeasure.catalog import VIEW_TITLES

    view = str((getattr(clip_proposals, "view", None) or {}).get("name") or "")
    segmented = bool(getattr(clip_proposals, "segmentations", None) or getattr(clip_proposals, "volumes", None))
    if view not in ("a4c", "a2c") or not segmented:
        return tuple(messages), ()
    routing = f"this clip looks like {VIEW_TITLES.get(view, view)} ({view},"
    return (tuple(m for m in messages if not m.startswith(routing)),
            tuple(m for m in messages if m.startswith(routing)))


def store_proposals(
    store: Store, clip_id: int, clip_proposals: Any, *, actor: str = "system"
) -> tuple[tuple[ProposalRecord, ...], tuple[str, ...]]:
    """Store everything proposed for a stored clip: the calipers, the contours (one per structure
    per frame) and the volumes/EF with their method.

    Returns the stored caliper proposals and the warnings for the reviewer: the proposals'
    notices, and what of the contours or volumes could not be stored (the calipers are kept then).
    """
    from echomeasure.store import contours

    warnings = list(getattr(clip_proposals, "notices", ()))
    segmentations = getattr(clip_proposals, "segmentations", None) or []
    volumes = getattr(clip_proposals, "volumes", None) or []
    view = getattr(clip_proposals, "view", None) or {}
    # the view and notices are kept with the clip, so the worklist and a later opening show them
    view_name = str(view.get("name") or getattr(clip_proposals, "kind", "") or "2d")
    try:  # all in one transaction: a crash cannot leave the calipers without their contours
        stored = contours.add_all_proposals(store, clip_id, clip_proposals, segmentations, volumes,
                                            contour_model=getattr(clip_proposals, "contour_model", None),
                                            model=clip_proposals.model, view=(view_name, view.get("confidence")),
                                            notices=warnings, actor=actor)
    except StoreError as exc:  # contours or volumes the store refuses: the calipers alone
        stored = store.add_proposals(clip_id, clip_proposals, actor=actor)
        warnings.append(f"contours or volumes not stored: {exc}")
        log.info("clip %s: contours or volumes not stored: %s", clip_id, exc)
    return tuple(stored), tuple(warnings)


def ingest_path(
    path: str | os.PathLike[str],
    store: Store,
    *,
    secret: bytes | str,
    run_models: bool = True,
    user_cm_per_px: float | None = None,
    only: Sequence[str] | None = None,
    save_frames: bool = True,
    reviewer: str = "system",
    progress: Progress | None = None,
) -> IngestResult:
    """De-identify ``path``, store it with its frames, and store the models' proposals.

    Parameters
    ----------
    path
        A DICOM, AVI/MP4 or PNG/JPEG file.
    store
        The review store to write to.
    secret
        Site secret for the HMAC UID remap (``echomeasure.config.secret()``).
    run_models
        Propose measurements (skipped with a warning when no weights are installed).
    user_cm_per_px
        A scale for uncalibrated sources (videos, screenshots).
    only
        Restrict the proposed measurements to these catalogue names.
    save_frames
        Keep every de-identified frame in the image store (the review UI and fine-tuning read
        them from there).
    reviewer
        Who is ingesting (recorded in the audit trail).
    progress
        Called as ``progress(fraction, description)``.

    Returns
    -------
    IngestResult

    Raises
    ------
    EchomeasureError
        The file cannot be read or de-identified (nothing is stored then).
    """
    from echomeasure import ingest

    name = display_name(path)
    report = progress or _no_progress
    secret_bytes = secret.encode("utf-8") if isinstance(secret, str) else secret

    report(0.0, f"de-identifying {name}")
    dclip = ingest.load(Path(path), secret=secret_bytes, user_cm_per_px=user_cm_per_px)

    def make_proposals() -> tuple[Any, list[str]]:
        if not run_models:
            return None, ["proposals skipped on request"]
        report(0.5, "proposing measurements")
        try:
            return _propose(dclip, only, report), []
        except (WeightsError, MeasurementError) as exc:
            log.info("%s: no proposals: %s", name, exc)  # reported in the result, not twice
            return None, [f"no proposals: {exc}"]

    result = store_clip(store, dclip, name, make_proposals, save_frames=save_frames, actor=reviewer, report=report)
    report(1.0, "done")
    return result


def _propose(dclip: Any, only: Sequence[str] | None, report: Progress) -> Any:
    """Run the models on the de-identified clip (imports torch only when needed)."""
    from echomeasure.propose import propose

    def frames_done(done: int, total: int) -> None:
        report(0.5 + 0.45 * done / max(total, 1), f"proposing measurements: frame {done}/{total}")

    return propose(dclip.clip, only=list(only) if only else None, progress=frames_done)


# Files met in study folders that are never images; DICOM files may have any other name.
NOT_MEDIA_SUFFIXES = frozenset({".json", ".md", ".txt", ".rst", ".csv", ".html", ".pdf", ".yaml", ".yml", ".log", ".xml"})


def iter_input_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to ingest from the paths a user gave.

    A file is taken as given; a folder is walked recursively in sorted order, skipping hidden
    files and folders, ``*.json`` (the synthetic ground-truth files beside each case), documents
    that are never images (README.md, notes.txt, ...) and DICOMDIR index files.
    A path that does not exist is returned as is, so the caller reports it and goes on.
    """
    return [path for path, _ in input_files_as_given(paths)]


def input_files_as_given(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """:func:`iter_input_files`, each file with how a user error names it: a file the user named
    as typed, a file found in a folder the user named by its path inside that folder (``sub/x.dcm``;
    never a value read from the file).

    Two files of several folders with the same path inside them (``in1/a.dcm``, ``in2/a.dcm``)
    are both named with the folder as typed in front (``in1/a.dcm``, ``in2/a.dcm``), so that no two
    inputs share a name.  A file reached more than once (overlapping inputs: ``in in/x/a.dcm``, a
    folder given twice, a link to a file given too) is taken once, where it is first reached."""
    out: list[tuple[Path, str]] = []
    typed_folders: list[str] = []  # by entry of ``out``: the folder typed ("" for a file typed)
    seen: set[str] = set()

    def add(path: Path, label: str, folder: str) -> None:
        key = os.path.realpath(path) if path.exists() else os.fspath(path)
        if key not in seen:
            seen.add(key)
            out.append((path, label))
            typed_folders.append(folder)

    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            add(p, os.fspath(raw), "")
            continue
        for child in sorted(p.rglob("*")):
            rel = child.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if child.is_file() and child.suffix.lower() not in NOT_MEDIA_SUFFIXES and child.name != "DICOMDIR":
                add(child, rel.as_posix(), os.fspath(raw))
    counts = Counter(label for _, label in out)
    return [
        (path, os.path.join(folder, label) if folder and counts[label] > 1 else label)
        for (path, label), folder in zip(out, typed_folders, strict=True)
    ]
