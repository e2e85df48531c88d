"""The echomeasure review UI (Gradio Blocks) and the Hugging Face Space entry point.

A thin shell over the library: opening a file calls :func:`echomeasure.pipeline.ingest_path`
(de-identify, store, propose), the worklist is :meth:`Store.worklist`, reviews go through
:func:`echomeasure.ui.review.save_reviews` to :meth:`Store.add_review`, exports are
:func:`echomeasure.export.export_csv`.  Reviews are written only from the caliper viewer's
explicit ``commit`` event, never from ``.change``.

``build_app`` is a thin layout: one builder per panel (top bar, opening, worklist, export,
viewer) and one wiring function per concern (opening clips, measurements, contours,
calibration, export).  The callbacks are the methods of :class:`UiHandlers`, each adapting one
method of :class:`echomeasure.ui.controller.ReviewController` (plain functions over the store,
tested without a browser) to Gradio.  Run it with ``echomeasure demo`` (or ``make demo``);
``build_app`` is what tests launch.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from echomeasure import atomic, config, web_security
from echomeasure.errors import EchomeasureError
from echomeasure.store import Store, open_store
from echomeasure.store.admin import check_audit_at_start
from echomeasure.ui import contour_review, viewmodel
from echomeasure.ui.caliper import CaliperViewer
from echomeasure.ui.controller import ALL_REVIEWED, ReviewController, event_payload, viewer_name

log = logging.getLogger(__name__)

#: Fields of the viewer's custom events (see :mod:`echomeasure.ui.caliper`).
COMMIT_KEYS = ("clip_id", "reviews", "undo")
CALIBRATE_KEYS = ("clip_id", "points", "length_cm")

TITLE = "echomeasure"
#: The upload limit of an app without uploads (the Space): no file of real size reaches the server.
NO_UPLOAD = "1kb"
#: Largest upload accepted (Gradio refuses bigger files before they reach the server).
MAX_UPLOAD = "200mb"
#: File types offered in the upload dialog (DICOM files often have no extension at all, so the
#: ingest layer, not the extension, decides what is readable).
UPLOAD_TYPES = [".dcm", ".dicom", ".avi", ".mp4", ".png", ".jpg", ".jpeg"]
EXAMPLE_GLOB = "*.dcm"
#: Gradio's cache sweep (every 5 min, files older than 30 min): an upload that was never opened
#: (sent to /gradio_api/upload only) is an identifiable original; downloads go too.
CACHE_SWEEP = (300, 1800)
#: The notice when a client names a file that was not uploaded to this app (API only).
NOT_AN_UPLOAD = "Not opened: that is not a file uploaded to this app (send it to /gradio_api/upload first)."

THEME = gr.themes.Base(
    primary_hue=gr.themes.colors.blue,
    secondary_hue=gr.themes.colors.slate,
    neutral_hue=gr.themes.colors.slate,
    # System fonts only: the app must look the same offline (no font CDN).
    font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    radius_size=gr.themes.sizes.radius_sm,
    spacing_size=gr.themes.sizes.spacing_sm,
    text_size=gr.themes.sizes.text_sm,
)

#: Gradio's default for an event is "once": a second trigger while the first is pending is dropped.
#: A reviewer who accepts one contour and rejects the next within the round trip lost the second
#: review (the viewer showed it rejected, the store never had it; seen under load in CI).  Reviews
#: and calibrations are queued instead and saved in order.
EVERY_REVIEW = "multiple"

#: A refresh of the worklist shows no progress overlay: the overlay covered the rows and took the
#: clicks meant for them (a row clicked in the second and a half after the page loaded was lost).
QUIET_REFRESH = "hidden"

#: Seconds a clip's notices show as a toast (they stay in the clip header above the viewer).
NOTICE_TOAST_S = 4

#: The worklist's own height limit (px); the CSS lowers it to what the window leaves room for.
WORKLIST_MAX_HEIGHT_PX = 640

CSS = """
.gradio-container { max-width: 100% !important; padding: 0 !important; }
.gradio-container .main { padding: 4px 8px !important; }
#em-main-row { gap: 8px !important; flex-wrap: nowrap !important; }
#em-left { gap: 6px !important; }
#em-topbar { align-items: center; border-bottom: 1px solid var(--border-color-primary); padding-bottom: 2px; }
#em-topbar label span { margin-bottom: 0; }
#em-brand { font-size: 20px; font-weight: 700; letter-spacing: -0.01em; }
#em-brand .em-sub { font-size: 12px; font-weight: 400; color: var(--body-text-color-subdued); margin-left: 8px; }
#em-clipinfo { min-height: 20px; font-size: 12px; line-height: 1.35; }
/* A clip's notices (not PLAX, pixels to check ...) scroll within about four lines: eight of them
   pushed the cine bar below the fold at 1366x768. */
#em-clipinfo { max-height: 5.4em; overflow-y: auto; }
#em-brand { white-space: nowrap; }
#em-brand .em-sub { display: block; margin-left: 0 !important; }
#em-worklist td, #em-worklist th { padding: 2px 3px !important; font-size: 11px !important; }
/* Worklist rows of at most two lines, and as many rows as the window's height leaves room for:
   at 1920x1080 it showed about 1.5 rows (five-line rows in a 190 px box); the box takes the
   height below the opening panel, never less than about four rows nor more than the page
   holds without pushing the viewer off screen at 1366x768. */
#em-worklist [role=gridcell], #em-worklist [role=columnheader] {
  padding: 1px 3px !important; min-height: 0 !important; font-size: 11px !important; }
#em-worklist [role=gridcell] *, #em-worklist [role=columnheader] * { font-family: var(--font) !important; }
#em-worklist [role=gridcell] *, #em-worklist [role=columnheader] * { padding: 0 !important; min-height: 0 !important; }
#em-worklist [role=gridcell] > *, #em-worklist [role=gridcell] span,
#em-worklist [role=columnheader] > *, #em-worklist [role=columnheader] span {
  display: -webkit-box !important; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;
  line-height: 1.25 !important; white-space: normal; }
#em-worklist .virtual-table-viewport { max-height: clamp(150px, calc(100vh - 560px), 640px) !important; }
#em-worklist td *, #em-worklist th * { padding-left: 0 !important; padding-right: 0 !important; }
#em-upload { min-height: 0 !important; }
#em-viewer .html-container { padding: 0 !important; }
#em-clipinfo p { margin: 0; }
#em-worklist table { font-size: 12px; }
#em-worklist { font-size: 12px; }
.em-reviewer-missing input, .em-reviewer-missing textarea {
  border-color: #ff9f43 !important; box-shadow: 0 0 0 2px #ff9f43 !important; }
.em-reviewer-missing label span { color: #ff9f43 !important; }
footer { display: none !important; }
/* Phones and narrow windows: the left column and the viewer stack, each the full width (side by
   side they need about 870 px; the page cannot scroll sideways). */
@media (max-width: 900px) {
  #em-main-row { flex-wrap: wrap !important; }
  #em-main-row > * { flex: 1 1 100% !important; min-width: 100% !important; }
  #em-topbar { flex-wrap: wrap !important; }
  #em-topbar > * { flex: 1 1 100% !important; min-width: 100% !important; }
  #em-brand { white-space: normal; }
}
"""

# Dark mode by default: a reading room is dark, and the viewer is dark anyway.
JS_DARK = """
() => {
  const url = new URL(window.location);
  if (!url.searchParams.has('__theme')) document.body.classList.add('dark');
}
"""


# --------------------------------------------------------------------------- helpers


def list_examples(examples_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The synthetic example studies (``case_XXXX.dcm``) in ``examples_dir``, sorted."""
    folder = Path(examples_dir) if examples_dir else config.EXAMPLES_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(EXAMPLE_GLOB) if p.is_file())


def seed_examples(
    store: Store,
    examples_dir: str | os.PathLike[str] | None = None,
    *,
    secret: bytes | None = None,
    progress: Callable[[float, str], Any] | None = None,
) -> int:
    """Ingest the synthetic examples when the store has no clip yet (first start).

    Returns the number of clips ingested (0 when the store already had clips).  A file that
    cannot be ingested is logged and skipped.
    """
    from echomeasure.pipeline import ingest_path

    if store.worklist():
        return 0
    files = list_examples(examples_dir)
    done = 0
    for i, path in enumerate(files):
        if progress:
            progress(i / max(len(files), 1), f"ingesting example {path.name}")
        try:
            ingest_path(path, store, secret=secret or config.secret(), reviewer="system")
            done += 1
        except EchomeasureError as exc:
            log.warning("example %s not ingested: %s", path.name, exc)
    log.info("ingested %d example(s) into %s", done, store.url)
    return done


def _gr_progress(progress: gr.Progress) -> Callable[[float, str], None]:
    def report(fraction: float, description: str) -> None:
        progress(fraction, desc=description)

    return report


def _login(request: gr.Request | None) -> str | None:
    """The logged-in user of a request (``echomeasure demo --auth``), else None."""
    return getattr(request, "username", None)


# --------------------------------------------------------------------------- callbacks


class UiHandlers:
    """The Gradio callbacks: each adapts one :class:`ReviewController` method to Gradio.

    An adapter turns Gradio's inputs (component values, ``gr.EventData``, the request's login)
    into the controller's plain arguments and its results into component updates and notices;
    the rules themselves live in the controller (tested without a browser).
    """

    #: What opening a clip hides: the export link of the previous study.
    NO_EXPORT: Any = None

    def __init__(self, store: Store, controller: ReviewController, example_paths: dict[str, Path]) -> None:
        self.store = store
        self.controller = controller
        self.example_paths = example_paths

    # ------------------------------------------------------------------ opening clips
    def worklist_update(
        self,
        status: str | None = "all",
        reviewer_name: str | None = "",
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> list[list[Any]]:
        return self.controller.worklist(status, viewer_name(reviewer_name, _login(request)))

    def show_clip(self, clip_id: int, viewer: str, warnings: Sequence[str] = ()) -> tuple[Any, str, Any]:
        screen = self.controller.open_clip(clip_id, viewer, warnings)
        return gr.update(value=screen.value, clip=screen.clip), screen.header, screen.clip_id

    def ingest_and_show(
        self, path: str | os.PathLike[str], reviewer_name: str, progress: gr.Progress, status: str, viewer: str
    ) -> tuple:
        from echomeasure.pipeline import ingest_path

        started = time.perf_counter()
        result = ingest_path(
            path, self.store, secret=config.secret(), reviewer=(reviewer_name or "").strip() or "anonymous",
            progress=_gr_progress(progress),
        )
        log.info("%s ingested and proposed in %.1f s", result.file, time.perf_counter() - started)
        for w in result.warnings:
            # brief: the notice stays in the clip header; a long toast covered the next clip's rows
            gr.Warning(w, duration=NOTICE_TOAST_S)
        notes = list(result.warnings)
        if not result.new:
            log.info("%s was already stored as clip %s", result.file, result.clip.id)
            notes.append(f"{result.file} was already stored as clip {result.clip.id}: opened it (nothing ingested twice)")
        viewer_update, header, clip_id = self.show_clip(result.clip.id, viewer, notes)
        return viewer_update, header, clip_id, self.controller.worklist(status, viewer), _no_export()

    def open_example(
        self,
        name: str | None,
        reviewer_name: str,
        status: str = "all",
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> tuple:
        if not name or name not in self.example_paths:
            gr.Warning("Pick an example from the list first.")
            return (gr.skip(),) * 5
        try:
            viewer = viewer_name(reviewer_name, _login(request))
            return self.ingest_and_show(self.example_paths[name], reviewer_name, progress, status, viewer)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 5

    def open_upload(
        self,
        file: str | None,
        reviewer_name: str,
        status: str = "all",
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> tuple:
        # The upload box is emptied whatever happens: a failed file does not linger there, and
        # no link is left to an original that is removed below.
        if not file:
            return (*(gr.skip(),) * 5, None)
        upload = web_security.received_upload(file)
        if upload is None:
            # An API client names its upload by path, and Gradio lets the served image folder
            # through: anything but a file received as an upload is neither opened nor removed.
            log.warning("open_upload refused a path that is not an upload: %s", web_security.shorten(file))
            gr.Warning(NOT_AN_UPLOAD)
            return (*(gr.skip(),) * 5, None)
        try:
            viewer = viewer_name(reviewer_name, _login(request))
            return (*self.ingest_and_show(upload, reviewer_name, progress, status, viewer), None)
        except EchomeasureError as exc:
            # named as the user knows it (the upload keeps its file name), never by a temp path
            name, message = Path(file).name, str(exc)
            gr.Warning(f"Not opened: {message if message.startswith(name) else f'{name}: {message}'}")
            return (*(gr.skip(),) * 5, None)
        finally:
            # The upload is the original (identifiable) file: do not keep it in Gradio's cache.
            web_security.discard_upload(upload)

    def open_from_worklist(self, reviewer_name: str, evt: gr.SelectData, request: gr.Request) -> tuple:
        row = evt.row_value or []
        if not row:
            return (gr.skip(),) * 4
        try:
            return (*self.show_clip(int(row[0]), viewer_name(reviewer_name, _login(request))), _no_export())
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 4

    def open_next(
        self, current: int | None, status: str, reviewer_name: str, evt: gr.EventData, request: gr.Request
    ) -> tuple:
        shown = event_payload(evt, ["clip_id"])["clip_id"]  # the viewer's key N says which clip it shows
        viewer = viewer_name(reviewer_name, _login(request))
        target = self.controller.next_clip(shown if shown is not None else current, viewer)
        if target is None:
            gr.Info(ALL_REVIEWED)
            return (gr.skip(),) * 5
        try:
            return (*self.show_clip(target, viewer), _no_export(), self.controller.worklist(status, viewer))
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 5

    # ------------------------------------------------------------------ reviewing
    def commit(self, reviewer_name: str, status: str, evt: gr.EventData, request: gr.Request) -> tuple:
        outcome = self.controller.commit(event_payload(evt, COMMIT_KEYS), reviewer_name, _login(request))
        if outcome.value is None:
            return (gr.skip(),) * 3
        worklist_rows = self.worklist_update(status, reviewer_name, request) if outcome.saved else gr.skip()
        return outcome.value, worklist_rows, _reviewer_field(outcome.reviewer_missing)

    def review_contour(self, reviewer_name: str, evt: gr.EventData, request: gr.Request) -> Any:
        # The viewer shows the decision at once; saved, the value tells it the contour's new review
        # (its next decision is made on it); refused as stale, the value reloads that contour with a
        # notice; refused otherwise, the clip's contours are resent.
        payload = event_payload(evt, contour_review.PAYLOAD_KEYS)
        try:
            return self.controller.review_contour(payload, reviewer_name, _login(request)).value
        except EchomeasureError as exc:
            gr.Warning(f"Contour not saved: {exc}")
        try:
            screen = self.controller.open_clip(int(payload["clip_id"]), viewer_name(reviewer_name, _login(request)))
        except (EchomeasureError, TypeError, ValueError):
            return gr.skip()
        return gr.update(clip=screen.clip)

    def live_volumes(self, payload: dict[str, Any]) -> dict[str, Any]:
        """EDV, ESV and EF of the contours on screen (the viewer's server function)."""
        return self.controller.live_volumes(payload if isinstance(payload, dict) else {})

    def calibrate(self, reviewer_name: str, status: str, evt: gr.EventData, request: gr.Request) -> tuple:
        outcome = self.controller.calibrate(event_payload(evt, CALIBRATE_KEYS), reviewer_name, _login(request))
        if outcome.screen is not None:
            screen = outcome.screen
            viewer_update = gr.update(value=screen.value, clip=screen.clip)
            worklist_rows = self.worklist_update(status, reviewer_name, request)
            return viewer_update, screen.header, worklist_rows, _reviewer_field(outcome.reviewer_missing)
        if outcome.value is None:
            return (gr.skip(),) * 4
        return outcome.value, gr.skip(), gr.skip(), _reviewer_field(outcome.reviewer_missing)

    # ------------------------------------------------------------------ exports and reports
    def export_study(self, clip_id: int | None) -> Any:
        if clip_id is None:
            gr.Warning("Open a study first, or export everything.")
            return gr.skip()
        try:
            clip_ids, name = self.controller.study_export(int(clip_id))
            return self._export(clip_ids, name)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip()

    def export_all(self) -> Any:
        try:
            return self._export([c.id for c in self.store.clips()], "echomeasure_all.csv", keep_empty=True)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip()

    def _export(self, clip_ids: list[int], name: str, keep_empty: bool = False) -> Any:
        from echomeasure.export import export_csv

        ids, left_out = self.controller.exportable(clip_ids)
        if left_out:
            gr.Warning(left_out)
        if not ids and not keep_empty:
            return gr.skip()
        return gr.update(value=_write_download(export_csv(self.store, ids), name), visible=True)

    def agreement_report(self, reviewer: str | None = None, request: gr.Request | None = None) -> str:
        """The multi-reader agreement report (Markdown) of the whole store.

        Hidden from anyone who reads a clip blinded or unassisted: the report shows the other
        readers' values, which such a reader must not see.
        """
        from echomeasure.agreement import run as agreement_run
        from echomeasure.store import readers

        viewer = (_login(request) or reviewer or "").strip()
        try:
            if any(a.mode != readers.OPEN_REVIEW for a in readers.assignments(self.store, reader=viewer)):
                return "Not shown: you read clips of a blinded study; the report shows the other readers' values."
            return agreement_run(self.store, fmt="md")
        except EchomeasureError as exc:
            return f"Not computed: {exc}"

    # ------------------------------------------------------------------ API-only endpoints
    def save_review(
        self,
        clip_id: int,
        measurement: str,
        action: str,
        reviewer: str,
        points: list[list[float]] | None = None,
        frame: int | None = None,
        seconds: float | None = None,
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> dict:
        """Save one review (action: accept, rejected or added) and return the measurement's state.

        With a login the reviewer recorded is the logged-in user (``reviewer`` is kept beside it).
        On a clip assigned to readers the review is a read, and the state is the reader's own.
        """
        try:
            return self.controller.save_review(
                clip_id, measurement, action, reviewer, _login(request), points=points, frame=frame, seconds=seconds
            )
        except EchomeasureError as exc:
            raise gr.Error(str(exc)) from None

    def measurements(
        self,
        clip_id: int,
        reviewer: str = "",
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> list[dict]:
        """Where each measurement of a clip stands (status, points, values), as ``reviewer`` may see it.

        On a clip assigned to readers only its readers see it, each their own reads (and an
        unassisted reader no proposal); with a login the viewer is the logged-in user.
        """
        try:
            return self.controller.measurement_entries(int(clip_id), viewer_name(reviewer, _login(request)))
        except EchomeasureError as exc:
            raise gr.Error(str(exc)) from None


def _no_export() -> Any:
    """Opening a clip hides the previous study's export link (it belongs to the clip that was open)."""
    return gr.update(value=None, visible=False)


def _reviewer_field(missing: bool | None) -> Any:
    if missing is None:
        return gr.skip()
    return gr.update(elem_classes=["em-reviewer-missing" if missing else "em-reviewer-ok"])


# --------------------------------------------------------------------------- panels
# Each builder lays out one panel inside the current Blocks context and returns its components.


def _topbar_panel() -> gr.Markdown:
    """One line on top (brand, then what the open clip is), so the image gets the height."""
    with gr.Row(elem_id="em-topbar", equal_height=True):
        gr.HTML(
            '<div id="em-brand">echomeasure<span class="em-sub">measurement review'
            " · synthetic data · not for clinical use</span></div>",
            js_on_load=None,
            scale=0,
            min_width=250,
        )
        return gr.Markdown("No clip open.", elem_id="em-clipinfo")


def _open_panel(reviewer: str | None, example_names: Sequence[str], uploads: bool = True) -> SimpleNamespace:
    """The Reviewer field (heading the left column, away from the notices' corner) and the ways to
    open a clip (no upload box with ``uploads`` False: the public Space)."""
    reviewer_box = gr.Textbox(
        value=reviewer or "", label="Reviewer", placeholder="Your name (required to save)", elem_id="em-reviewer"
    )
    with gr.Group():
        example_dd = gr.Dropdown(
            choices=list(example_names), value=next(iter(example_names), None), label="Synthetic example",
            elem_id="em-example",
        )
        open_btn = gr.Button("Open example", variant="primary", elem_id="em-open-example")
    upload = gr.File(
        label="Upload DICOM / AVI / MP4 (de-identified on arrival)", file_types=UPLOAD_TYPES, type="filepath",
        height=112, elem_id="em-upload",
    ) if uploads else None
    return SimpleNamespace(reviewer=reviewer_box, example=example_dd, open_btn=open_btn, upload=upload)


def _worklist_panel(handlers: UiHandlers) -> SimpleNamespace:
    """The status filter, the "next unreviewed" button and the worklist."""
    with gr.Row(equal_height=True):
        status_filter = gr.Dropdown(
            choices=list(viewmodel.WORKLIST_FILTERS), value="all", label="Show", show_label=False, container=False,
            scale=1, min_width=100, elem_id="em-worklist-filter",
        )
        next_btn = gr.Button("Next unreviewed (N)", size="sm", scale=1, min_width=100, elem_id="em-next")
    # No callable value: it refreshed the list at load a second time beside the app's load event.
    worklist = gr.Dataframe(
        value=None, headers=list(viewmodel.WORKLIST_HEADERS), interactive=False,
        label="Worklist (click a row to open)", elem_id="em-worklist", max_height=WORKLIST_MAX_HEIGHT_PX, wrap=True,
        column_widths=["28px", "66px", "88px", "82px"],
    )
    return SimpleNamespace(status=status_filter, next_btn=next_btn, table=worklist)


def _export_panel() -> SimpleNamespace:
    """CSV exports and the reader-agreement report."""
    with gr.Row():
        csv_study_btn = gr.Button("CSV: this study", size="sm", min_width=100, elem_id="em-csv-study")
        csv_all_btn = gr.Button("CSV: everything", size="sm", min_width=100, elem_id="em-csv-all")
    csv_file = gr.File(label="Export", interactive=False, visible=False, elem_id="em-csv-file")
    with gr.Accordion("Reader agreement", open=False, elem_id="em-agreement"):
        agreement_btn = gr.Button("Compute report", size="sm", elem_id="em-agreement-run")
        agreement_md = gr.Markdown(elem_id="em-agreement-report")
    return SimpleNamespace(study_btn=csv_study_btn, all_btn=csv_all_btn, file=csv_file,
                           agreement_btn=agreement_btn, agreement=agreement_md)


def _viewer_panel(handlers: UiHandlers) -> CaliperViewer:
    """The cine viewer with calipers, contours (and their live volumes) and the measurement table."""
    def live_volumes(payload: dict[str, Any]) -> dict[str, Any]:  # a plain function: Gradio marks it
        return handlers.live_volumes(payload)

    with gr.Column(scale=1, min_width=600):
        return CaliperViewer(elem_id="em-viewer", server_functions=[live_volumes])


# --------------------------------------------------------------------------- wiring


def _wire_opening(page: SimpleNamespace, h: UiHandlers) -> None:
    """Opening clips: example, upload, worklist row, next unreviewed (button and key N), filters."""
    outputs_open = [page.viewer, page.clip_info, page.current_clip, page.worklist.table, page.export.file]
    inputs_open = [page.opening.reviewer, page.worklist.status]
    page.opening.open_btn.click(h.open_example, [page.opening.example, *inputs_open], outputs_open,
                                api_name="open_example", show_progress_on=page.viewer)
    if page.opening.upload is not None:
        page.opening.upload.upload(h.open_upload, [page.opening.upload, *inputs_open],
                                   [*outputs_open, page.opening.upload], api_name="open_upload",
                                   show_progress_on=[page.viewer, page.opening.upload])
    page.worklist.table.select(h.open_from_worklist, [page.opening.reviewer],
                               [page.viewer, page.clip_info, page.current_clip, page.export.file],
                               api_visibility="private")
    outputs_next = [page.viewer, page.clip_info, page.current_clip, page.export.file, page.worklist.table]
    inputs_next = [page.current_clip, page.worklist.status, page.opening.reviewer]
    page.worklist.next_btn.click(h.open_next, inputs_next, outputs_next, api_visibility="private",
                                 show_progress_on=page.viewer)
    page.viewer.next_clip(h.open_next, inputs_next, outputs_next, api_visibility="private",
                          show_progress_on=page.viewer)
    filters = [page.worklist.status, page.opening.reviewer]
    page.worklist.status.change(h.worklist_update, filters, [page.worklist.table], api_visibility="private",
                                show_progress=QUIET_REFRESH)
    # A reader-study clip is listed to its readers only: the list follows the name.
    page.opening.reviewer.blur(h.worklist_update, filters, [page.worklist.table], api_visibility="private",
                               show_progress=QUIET_REFRESH)


def _wire_measurements(page: SimpleNamespace, h: UiHandlers) -> None:
    """Measurement reviews from the viewer's ``commit`` event, and the Reviewer field's highlight."""
    reviewer, status = page.opening.reviewer, page.worklist.status
    # The worklist refreshed by a save shows no progress overlay (a row clicked meanwhile was lost).
    page.viewer.commit(h.commit, [reviewer, status], [page.viewer, page.worklist.table, reviewer],
                       api_visibility="private", trigger_mode=EVERY_REVIEW, show_progress_on=page.viewer)
    # Typing a name takes the highlight off at once (in the browser: no round trip per key).
    reviewer.input(
        None, None, None, api_visibility="private",
        js="() => { document.querySelector('#em-reviewer')?.classList.remove('em-reviewer-missing'); }",
    )


def _wire_contours(page: SimpleNamespace, h: UiHandlers) -> None:
    """Contour reviews (accept, correct, reject); the live volumes are the viewer's server function."""
    page.viewer.contour_review(h.review_contour, [page.opening.reviewer], [page.viewer], api_visibility="private",
                               trigger_mode=EVERY_REVIEW)


def _wire_calibration(page: SimpleNamespace, h: UiHandlers) -> None:
    """A user calibration drawn on the viewer reopens the clip in cm."""
    reviewer, status = page.opening.reviewer, page.worklist.status
    page.viewer.calibrate(h.calibrate, [reviewer, status], [page.viewer, page.clip_info, page.worklist.table, reviewer],
                          api_visibility="private", trigger_mode=EVERY_REVIEW, show_progress_on=page.viewer)


def _wire_export(page: SimpleNamespace, h: UiHandlers) -> None:
    """CSV downloads, the agreement report and the API-only endpoints (the same library calls as the UI)."""
    page.export.study_btn.click(h.export_study, [page.current_clip], [page.export.file], api_name="export_study_csv")
    page.export.all_btn.click(h.export_all, None, [page.export.file], api_name="export_all_csv")
    page.export.agreement_btn.click(h.agreement_report, [page.opening.reviewer], [page.export.agreement],
                                    api_name="agreement_report")
    gr.api(h.save_review, api_name="save_review")
    gr.api(h.measurements, api_name="measurements")


# --------------------------------------------------------------------------- the app


def build_app(
    store_url: str | None = None,
    examples_dir: str | os.PathLike[str] | None = None,
    reviewer: str | None = None,
    uploads: bool = True,
) -> gr.Blocks:
    """Build the review UI.

    Parameters
    ----------
    store_url
        SQLAlchemy URL of the review store (default ``ECHOMEASURE_DB`` or SQLite under ``db/``).
    examples_dir
        Folder of synthetic examples offered in the "Open example" list (default ``examples/``).
    reviewer
        Pre-filled reviewer name (the user can change it; saving needs one).
    uploads
        Offer the upload box and its ``open_upload`` API (False: the synthetic examples alone, and
        the server takes no file of real size, as on the public Space).

    Returns
    -------
    gradio.Blocks
        Launch it with :func:`launch` (which adds the theme, CSS, upload limit and the image
        folder to the served paths).
    """
    web_security.private_upload_dir()  # before any component: Gradio reads it when they are made
    store = open_store(store_url)
    images_dir = store.images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    # Frames are served as static files from the store's image folder (de-identified PNGs only).
    gr.set_static_paths([images_dir])
    example_paths = {p.name: p for p in list_examples(examples_dir)}
    # Each model version's own low-confidence threshold (held-out 25th percentile), read once.
    handlers = UiHandlers(store, ReviewController(store, viewmodel.RegistryThresholds()), example_paths)

    with gr.Blocks(title=TITLE, fill_width=True, analytics_enabled=False, delete_cache=CACHE_SWEEP) as app:
        page = SimpleNamespace(current_clip=gr.State(None), clip_info=_topbar_panel())
        with gr.Row(equal_height=False, elem_id="em-main-row"):
            with gr.Column(scale=0, min_width=262, elem_id="em-left"):
                page.opening = _open_panel(reviewer, list(example_paths), uploads)
                page.worklist = _worklist_panel(handlers)
                page.export = _export_panel()
            page.viewer = _viewer_panel(handlers)
        _wire_opening(page, handlers)
        _wire_measurements(page, handlers)
        _wire_contours(page, handlers)
        _wire_calibration(page, handlers)
        _wire_export(page, handlers)
        app.load(handlers.worklist_update, None, [page.worklist.table], api_visibility="private",
                 show_progress=QUIET_REFRESH)

    app.echomeasure_store = store
    app.echomeasure_launch = {
        "theme": THEME,
        "css": CSS,
        "js": JS_DARK,
        "max_file_size": MAX_UPLOAD if uploads else NO_UPLOAD,
        "allowed_paths": [str(images_dir)],
        "footer_links": ["api"],
    }
    return app


def _write_download(text: str, name: str) -> str:
    """Write an export for download: a fresh temp folder, the complete file written atomically."""
    folder = Path(tempfile.mkdtemp(prefix=web_security.DOWNLOAD_DIR_PREFIX, dir=web_security.private_upload_dir()))
    return str(atomic.write_text(folder / name, text))


def launch(app: gr.Blocks, **kwargs: Any) -> tuple[Any, str, str]:
    """Launch an app from :func:`build_app` with its theme, CSS, upload limit and served paths.

    Keyword arguments are passed on to :meth:`gradio.Blocks.launch` and win over the defaults.
    Every request goes through :class:`echomeasure.web_security.RequestGuard` (Host/Origin of
    the bound address only, API bodies up to 1 MB).
    """
    options = dict(getattr(app, "echomeasure_launch", {}))
    options.update(kwargs)
    return app.launch(**web_security.harden_launch_options(options))


def main(
    host: str = "127.0.0.1",
    port: int = 7860,
    db: str | None = None,
    auth: tuple[str, str] | None = None,
    examples_dir: str | os.PathLike[str] | None = None,
    reviewer: str | None = None,
) -> None:
    """Start the review UI (blocking): seed the examples on first start, then serve.

    Parameters
    ----------
    host, port
        Where to listen.  The CLI refuses a host other than localhost without ``auth``.
    db
        SQLAlchemy URL of the review store.
    auth
        ``(user, password)`` for Gradio's login page.
    """
    app = build_app(db, examples_dir=examples_dir, reviewer=reviewer)
    store: Store = app.echomeasure_store  # type: ignore[attr-defined]
    n = seed_examples(store, examples_dir)
    if n:
        log.info("first start: %d example clip(s) added to the worklist", n)
    check_audit_at_start(store.engine)  # logs an error when the audit chain is broken
    # SIGTERM ends the server like Ctrl+C, so the upload folder is removed on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        launch(app, server_name=host, server_port=port, auth=auth, show_error=False)
    finally:
        store.close()
        web_security.remove_private_upload_dir()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def space_main() -> None:
    """Hugging Face Space entry: the synthetic examples alone (no uploads: a public server is no
    place for a patient's original), SQLite and its image store and quarantine in a temporary
    folder (ephemeral disk), all removed when the server stops (Ctrl+C or SIGTERM)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="echomeasure-space-"))
    os.environ.setdefault("ECHOMEASURE_SECRET", os.urandom(32).hex())
    url = f"sqlite:///{workdir / 'echomeasure.sqlite'}"
    # everything the store keeps beside it (images, quarantine) follows the configured store
    os.environ["ECHOMEASURE_DB"] = url
    app = build_app(url, examples_dir=config.EXAMPLES_DIR, uploads=False)
    store: Store = app.echomeasure_store  # type: ignore[attr-defined]
    seed_examples(store)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        launch(app, server_name=os.environ.get("GRADIO_SERVER_NAME"), ssr_mode=False)
    finally:
        store.close()
        web_security.remove_private_upload_dir()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    space_main()
