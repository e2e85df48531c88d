"""The echomeasure review UI (Gradio Blocks) and the Hugging Face Space entry point.

A thin shell over the library: opening a file calls :func:`echomeasure.pipeline.ingest_path`
(de-identify, store, propose), the worklist is :meth:`Store.worklist`, reviews go through
:func:`echomeasure.ui.review.save_reviews` to :meth:`Store.add_review`, exports are
:func:`echomeasure.export.export_csv`.  Reviews are written only from the caliper viewer's
explicit ``commit`` event, never from ``.change``.

``build_app`` is the layout and the wiring: each callback adapts one method of
:class:`echomeasure.ui.controller.ReviewController` (plain functions over the store, tested
without a browser) to Gradio.  Run it with ``echomeasure demo`` (or ``make demo``);
``build_app`` is what tests launch.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
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
#: Largest upload accepted (Gradio refuses bigger files before they reach the server).
MAX_UPLOAD = "200mb"
#: File types offered in the upload dialog (DICOM files often have no extension at all, so the
#: ingest layer, not the extension, decides what is readable).
UPLOAD_TYPES = [".dcm", ".dicom", ".avi", ".mp4", ".png", ".jpg", ".jpeg"]
EXAMPLE_GLOB = "*.dcm"

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
#em-brand { white-space: nowrap; }
#em-brand .em-sub { display: block; margin-left: 0 !important; }
#em-worklist td, #em-worklist th { padding: 2px 3px !important; font-size: 11px !important; }
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


# --------------------------------------------------------------------------- the app


def build_app(
    store_url: str | None = None,
    examples_dir: str | os.PathLike[str] | None = None,
    reviewer: str | None = None,
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
    examples = list_examples(examples_dir)
    example_paths = {p.name: p for p in examples}
    # Each model version's own low-confidence threshold (held-out 25th percentile), read once.
    thresholds = viewmodel.RegistryThresholds()

    controller = ReviewController(store, thresholds)

    # ------------------------------------------------------------------ callbacks
    # Each callback adapts one controller method to Gradio (inputs, gr.update, notices).
    def worklist_update(
        status: str | None = "all",
        reviewer_name: str | None = "",
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> list[list[Any]]:
        return controller.worklist(status, viewer_name(reviewer_name, _login(request)))

    def show_clip(clip_id: int, viewer: str, warnings: Sequence[str] = ()) -> tuple[Any, str, Any]:
        screen = controller.open_clip(clip_id, viewer, warnings)
        return gr.update(value=screen.value, clip=screen.clip), screen.header, screen.clip_id

    # What opening a clip updates: the viewer, its header, the current clip, the worklist, and
    # the export link of the previous study (hidden: it belongs to the clip that was open).
    no_export = gr.update(value=None, visible=False)

    def ingest_and_show(
        path: str | os.PathLike[str], reviewer_name: str, progress: gr.Progress, status: str, viewer: str
    ) -> tuple:
        from echomeasure.pipeline import ingest_path

        started = time.perf_counter()
        result = ingest_path(
            path,
            store,
            secret=config.secret(),
            reviewer=(reviewer_name or "").strip() or "anonymous",
            progress=_gr_progress(progress),
        )
        log.info("%s ingested and proposed in %.1f s", result.file, time.perf_counter() - started)
        for w in result.warnings:
            gr.Warning(w)
        notes = list(result.warnings)
        if not result.new:
            log.info("%s was already stored as clip %s", result.file, result.clip.id)
            notes.append(f"{result.file} was already stored as clip {result.clip.id}: opened it (nothing ingested twice)")
        viewer_update, header, clip_id = show_clip(result.clip.id, viewer, notes)
        return viewer_update, header, clip_id, controller.worklist(status, viewer), no_export

    def open_example(
        name: str | None,
        reviewer_name: str,
        status: str = "all",
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> tuple:
        if not name or name not in example_paths:
            gr.Warning("Pick an example from the list first.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            viewer = viewer_name(reviewer_name, _login(request))
            return ingest_and_show(example_paths[name], reviewer_name, progress, status, viewer)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def open_upload(
        file: str | None,
        reviewer_name: str,
        status: str = "all",
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> tuple:
        # The upload box is emptied whatever happens: a failed file does not linger there, and
        # no link is left to an original that is removed below.
        if not file:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
        try:
            viewer = viewer_name(reviewer_name, _login(request))
            return (*ingest_and_show(file, reviewer_name, progress, status, viewer), None)
        except EchomeasureError as exc:
            # named as the user knows it (the upload keeps its file name), never by a temp path
            name, message = Path(file).name, str(exc)
            gr.Warning(f"Not opened: {message if message.startswith(name) else f'{name}: {message}'}")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), None
        finally:
            # The upload is the original (identifiable) file: do not keep it in Gradio's cache.
            web_security.discard_upload(file)

    def open_from_worklist(reviewer_name: str, evt: gr.SelectData, request: gr.Request) -> tuple:
        row = evt.row_value or []
        if not row:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            return (*show_clip(int(row[0]), viewer_name(reviewer_name, _login(request))), no_export)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def open_next(current: int | None, status: str, reviewer_name: str, evt: gr.EventData, request: gr.Request) -> tuple:
        shown = event_payload(evt, ["clip_id"])["clip_id"]  # the viewer's key N says which clip it shows
        viewer = viewer_name(reviewer_name, _login(request))
        target = controller.next_clip(shown if shown is not None else current, viewer)
        if target is None:
            gr.Info(ALL_REVIEWED)
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            return (*show_clip(target, viewer), no_export, controller.worklist(status, viewer))
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def reviewer_field(missing: bool | None) -> Any:
        if missing is None:
            return gr.skip()
        return gr.update(elem_classes=["em-reviewer-missing" if missing else "em-reviewer-ok"])

    def commit(reviewer_name: str, status: str, evt: gr.EventData, request: gr.Request) -> tuple:
        outcome = controller.commit(event_payload(evt, COMMIT_KEYS), reviewer_name, _login(request))
        if outcome.value is None:
            return gr.skip(), gr.skip(), gr.skip()
        worklist_rows = worklist_update(status, reviewer_name, request) if outcome.saved else gr.skip()
        return outcome.value, worklist_rows, reviewer_field(outcome.reviewer_missing)

    def review_contour(reviewer_name: str, evt: gr.EventData, request: gr.Request) -> Any:
        # The viewer shows the decision at once; when the store refuses it, the clip's contours are resent.
        payload = event_payload(evt, contour_review.PAYLOAD_KEYS)
        try:
            contour_review.save(store, payload, reviewer_name, _login(request))
            return gr.skip()
        except EchomeasureError as exc:
            gr.Warning(f"Contour not saved: {exc}")
        try:
            screen = controller.open_clip(int(payload["clip_id"]), viewer_name(reviewer_name, _login(request)))
        except (EchomeasureError, TypeError, ValueError):
            return gr.skip()
        return gr.update(clip=screen.clip)

    def calibrate(reviewer_name: str, status: str, evt: gr.EventData, request: gr.Request) -> tuple:
        outcome = controller.calibrate(event_payload(evt, CALIBRATE_KEYS), reviewer_name, _login(request))
        if outcome.screen is not None:
            screen = outcome.screen
            viewer_update = gr.update(value=screen.value, clip=screen.clip)
            worklist_rows = worklist_update(status, reviewer_name, request)
            return viewer_update, screen.header, worklist_rows, reviewer_field(outcome.reviewer_missing)
        if outcome.value is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return outcome.value, gr.skip(), gr.skip(), reviewer_field(outcome.reviewer_missing)

    def export_study(clip_id: int | None) -> Any:
        from echomeasure.export import export_csv

        if clip_id is None:
            gr.Warning("Open a study first, or export everything.")
            return gr.skip()
        try:
            clip = store.clip(int(clip_id))
            ids, left_out = controller.exportable([c.id for c in store.clips() if c.study_uid == clip.study_uid])
            if left_out:
                gr.Warning(left_out)
            if not ids:
                return gr.skip()
            text = export_csv(store, ids)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return gr.update(value=_write_download(text, f"echomeasure_study_{clip.study_uid[-8:]}.csv"), visible=True)

    def agreement_report(reviewer: str | None = None, request: gr.Request | None = None) -> str:
        """The multi-reader agreement report (Markdown) of the whole store.

        Hidden from anyone who reads a clip blinded or unassisted: the report shows the other
        readers' values, which such a reader must not see.
        """
        from echomeasure.agreement import run as agreement_run
        from echomeasure.store import readers

        viewer = (_login(request) or reviewer or "").strip()
        try:
            if any(a.mode != readers.OPEN_REVIEW for a in readers.assignments(store, reader=viewer)):
                return "Not shown: you read clips of a blinded study; the report shows the other readers' values."
            return agreement_run(store, fmt="md")
        except EchomeasureError as exc:
            return f"Not computed: {exc}"

    def export_all() -> Any:
        from echomeasure.export import export_csv

        try:
            ids, left_out = controller.exportable([c.id for c in store.clips()])
            if left_out:
                gr.Warning(left_out)
            text = export_csv(store, ids)
        except EchomeasureError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        return gr.update(value=_write_download(text, "echomeasure_all.csv"), visible=True)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title=TITLE, fill_width=True, analytics_enabled=False) as app:
        current_clip = gr.State(None)
        # One line on top (brand, then what the open clip is), so the image gets the height; the
        # Reviewer field heads the left column, away from the corner where notices appear.
        with gr.Row(elem_id="em-topbar", equal_height=True):
            gr.HTML(
                '<div id="em-brand">echomeasure<span class="em-sub">measurement review'
                " · synthetic data · not for clinical use</span></div>",
                js_on_load=None,
                scale=0,
                min_width=250,
            )
            clip_info = gr.Markdown("No clip open.", elem_id="em-clipinfo")
        with gr.Row(equal_height=False, elem_id="em-main-row"):
            with gr.Column(scale=0, min_width=262, elem_id="em-left"):
                reviewer_box = gr.Textbox(
                    value=reviewer or "",
                    label="Reviewer",
                    placeholder="Your name (required to save)",
                    elem_id="em-reviewer",
                )
                with gr.Group():
                    example_dd = gr.Dropdown(
                        choices=list(example_paths),
                        value=next(iter(example_paths), None),
                        label="Synthetic example",
                        elem_id="em-example",
                    )
                    open_btn = gr.Button("Open example", variant="primary", elem_id="em-open-example")
                upload = gr.File(
                    label="Upload DICOM / AVI / MP4 (de-identified on arrival)",
                    file_types=UPLOAD_TYPES,
                    type="filepath",
                    height=112,
                    elem_id="em-upload",
                )
                with gr.Row(equal_height=True):
                    status_filter = gr.Dropdown(
                        choices=list(viewmodel.WORKLIST_FILTERS),
                        value="all",
                        label="Show",
                        show_label=False,
                        container=False,
                        scale=1,
                        min_width=100,
                        elem_id="em-worklist-filter",
                    )
                    next_btn = gr.Button("Next unreviewed (N)", size="sm", scale=1, min_width=100, elem_id="em-next")
                worklist = gr.Dataframe(
                    value=worklist_update,
                    headers=list(viewmodel.WORKLIST_HEADERS),
                    interactive=False,
                    label="Worklist (click a row to open)",
                    elem_id="em-worklist",
                    max_height=190,
                    wrap=True,
                    column_widths=["38px", "70px", "42px", "112px"],
                )
                with gr.Row():
                    csv_study_btn = gr.Button("CSV: this study", size="sm", min_width=100, elem_id="em-csv-study")
                    csv_all_btn = gr.Button("CSV: everything", size="sm", min_width=100, elem_id="em-csv-all")
                csv_file = gr.File(label="Export", interactive=False, visible=False, elem_id="em-csv-file")
                with gr.Accordion("Reader agreement", open=False, elem_id="em-agreement"):
                    agreement_btn = gr.Button("Compute report", size="sm", elem_id="em-agreement-run")
                    agreement_md = gr.Markdown(elem_id="em-agreement-report")
            with gr.Column(scale=1, min_width=600):
                viewer = CaliperViewer(elem_id="em-viewer")

        outputs_open = [viewer, clip_info, current_clip, worklist, csv_file]
        open_btn.click(open_example, [example_dd, reviewer_box, status_filter], outputs_open, api_name="open_example")
        upload.upload(
            open_upload, [upload, reviewer_box, status_filter], [*outputs_open, upload], api_name="open_upload"
        )
        worklist.select(
            open_from_worklist, [reviewer_box], [viewer, clip_info, current_clip, csv_file], api_visibility="private"
        )
        outputs_next = [viewer, clip_info, current_clip, csv_file, worklist]
        inputs_next = [current_clip, status_filter, reviewer_box]
        next_btn.click(open_next, inputs_next, outputs_next, api_visibility="private")
        viewer.next_clip(open_next, inputs_next, outputs_next, api_visibility="private")
        viewer.calibrate(
            calibrate, [reviewer_box, status_filter], [viewer, clip_info, worklist, reviewer_box], api_visibility="private"
        )
        status_filter.change(worklist_update, [status_filter, reviewer_box], [worklist], api_visibility="private")
        # A reader-study clip is listed to its readers only: the list follows the name.
        reviewer_box.blur(worklist_update, [status_filter, reviewer_box], [worklist], api_visibility="private")
        viewer.commit(commit, [reviewer_box, status_filter], [viewer, worklist, reviewer_box], api_visibility="private")
        viewer.contour_review(review_contour, [reviewer_box], [viewer], api_visibility="private")
        # Typing a name takes the highlight off at once (in the browser: no round trip per key).
        reviewer_box.input(
            None, None, None, api_visibility="private",
            js="() => { document.querySelector('#em-reviewer')?.classList.remove('em-reviewer-missing'); }",
        )
        csv_study_btn.click(export_study, [current_clip], [csv_file], api_name="export_study_csv")
        csv_all_btn.click(export_all, None, [csv_file], api_name="export_all_csv")
        agreement_btn.click(agreement_report, [reviewer_box], [agreement_md], api_name="agreement_report")
        app.load(worklist_update, None, [worklist], api_visibility="private")

        # API-only endpoints (gradio_client, scripts): the same library calls as the UI.
        def save_review(
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
                return controller.save_review(
                    clip_id, measurement, action, reviewer, _login(request), points=points, frame=frame, seconds=seconds
                )
            except EchomeasureError as exc:
                raise gr.Error(str(exc)) from None

        def measurements(
            clip_id: int,
            reviewer: str = "",
            request: gr.Request = None,  # type: ignore[assignment]
        ) -> list[dict]:
            """Where each measurement of a clip stands (status, points, values), as ``reviewer`` may see it.

            On a clip assigned to readers only its readers see it, each their own reads (and an
            unassisted reader no proposal); with a login the viewer is the logged-in user.
            """
            try:
                return controller.measurement_entries(int(clip_id), viewer_name(reviewer, _login(request)))
            except EchomeasureError as exc:
                raise gr.Error(str(exc)) from None

        gr.api(save_review, api_name="save_review")
        gr.api(measurements, api_name="measurements")

    app.echomeasure_store = store
    app.echomeasure_launch = {
        "theme": THEME,
        "css": CSS,
        "js": JS_DARK,
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [str(images_dir)],
        "footer_links": ["api"],
    }
    return app


def _write_download(text: str, name: str) -> str:
    """Write an export for download: a fresh temp folder, the complete file written atomically."""
    folder = Path(tempfile.mkdtemp(prefix="echomeasure-export-", dir=web_security.private_upload_dir()))
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
    """Hugging Face Space entry: synthetic examples, SQLite in a temporary folder (ephemeral disk)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="echomeasure-space-"))
    os.environ.setdefault("ECHOMEASURE_SECRET", os.urandom(32).hex())
    url = f"sqlite:///{workdir / 'echomeasure.sqlite'}"
    app = build_app(url, examples_dir=config.EXAMPLES_DIR)
    seed_examples(app.echomeasure_store)  # type: ignore[attr-defined]
    launch(app, server_name=os.environ.get("GRADIO_SERVER_NAME"), ssr_mode=False)


if __name__ == "__main__":  # pragma: no cover
    space_main()
