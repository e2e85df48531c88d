"""The caliper viewer: a ``gr.HTML`` subclass drawing calipers in SVG over the clip's frames.

Data flow:

- Python -> browser: ``value`` (the measurements, :func:`echomeasure.ui.viewmodel.viewer_value`) and the
  ``clip`` prop (frame URLs, image size, frame time, ED/ES, calibration regions,
  :func:`echomeasure.ui.viewmodel.viewer_clip`).  Frames are URLs, preloaded and played in the browser,
  so scrubbing, playing and dragging need no server round trip.
- Browser -> Python: only explicit custom events.  ``commit`` with
  ``{"clip_id": int, "reviews": [{"name", "action", "frame", "points", "seconds",
  "proposal_id", "confirmed"}], "undo": bool}`` (``action``: ``accept`` (the server decides
  accepted or corrected), ``rejected`` or ``added``; ``confirmed``: the reviewer confirmed an
  implausible value; ``undo``: the reviews undo an earlier save).  ``calibrate`` with
  ``{"clip_id", "points": [[x, y], [x, y]], "length_cm"}`` (a known length drawn on a clip
  without DICOM calibration).  ``next_clip`` with ``{"clip_id"}`` (open the next unreviewed
  clip).  ``contour_review`` with ``{"clip_id", "contour_proposal_id", "action", "polygon"}``
  (:mod:`echomeasure.ui.contour_review`).  Nothing is written to the store from ``.change``.
- Browser -> Python -> browser: the server function ``live_volumes`` (passed as
  ``server_functions``), which the script calls while an apical contour is edited; it returns
  EDV/ESV/EF by :mod:`echomeasure.contour_volumes` and writes nothing.

The template is static: the script in ``caliper.js`` owns the DOM below it and redraws on
``watch(["value", "clip"])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

_HERE = Path(__file__).resolve().parent

# Static markup (no ${...} and no backticks: gr.HTML evaluates the template as a JS template
# string).  The script fills the SVG overlay, the table body and the "add" list.
HTML_TEMPLATE = """
<div class="em-viewer" tabindex="0" aria-label="caliper viewer: click the image, then use the keys">
  <div class="em-main">
    <div class="em-tools">
      <button class="em-fit" title="Fit the image to the viewer (F)" disabled>Fit</button>
      <button class="em-zoom-out" title="Zoom out (-)" aria-label="Zoom out" disabled>&minus;</button>
      <button class="em-zoom-in" title="Zoom in (+); the mouse wheel zooms at the pointer" aria-label="Zoom in"
        disabled>+</button>
      <span class="em-zoom">100%</span>
      <span class="em-sep"></span>
      <span class="em-wl"
        title="Window/level: right-drag on the image (left/right contrast, up/down brightness)">W/L</span>
      <button class="em-wl-reset" title="Reset brightness and contrast (R)" disabled>Reset W/L</button>
      <span class="em-sep"></span>
      <label class="em-link-label" title="Shared endpoints (IVSd/LVIDd/LVPWd, aortic root/LA) move together"><input
        type="checkbox" class="em-link" checked> Link calipers</label>
      <span class="em-sep"></span>
      <button class="em-calibrate" title="Draw a known length (e.g. the depth scale) and type it in cm"
        aria-label="Calibrate: place both ends of a known length by clicking, or with the arrow keys and Enter"
        disabled>Calibrate</button>
      <span style="flex:1"></span>
      <span class="em-focus">click the image to use the keys</span>
    </div>
    <div class="em-stage">
      <svg class="em-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 480" preserveAspectRatio="xMidYMid meet">
        <defs>
          <filter class="em-wl-filter" id="em-wl-filter" color-interpolation-filters="sRGB">
            <feComponentTransfer>
              <feFuncR type="linear" slope="1" intercept="0"></feFuncR>
              <feFuncG type="linear" slope="1" intercept="0"></feFuncG>
              <feFuncB type="linear" slope="1" intercept="0"></feFuncB>
            </feComponentTransfer>
          </filter>
        </defs>
        <image class="em-frame" x="0" y="0" width="640" height="480" preserveAspectRatio="none"></image>
        <g class="em-overlay"></g>
      </svg>
      <div class="em-empty">Open a study: pick an example, upload a clip, or choose one from the worklist.</div>
      <div class="em-banner em-hidden" role="status" aria-live="polite"></div>
    </div>
    <div class="em-cine">
      <button class="em-play" title="Play (Space)" aria-label="Play" disabled>&#9654;</button>
      <input class="em-slider" type="range" min="0" max="0" value="0" step="1" aria-label="frame" disabled>
      <span class="em-frameinfo">no clip</span>
      <button class="em-ed" title="Jump to the end-diastolic frame (D)" aria-label="ED: end-diastolic frame" disabled>ED</button>
      <button class="em-es" title="Jump to the end-systolic frame (S)" aria-label="ES: end-systolic frame" disabled>ES</button>
    </div>
  </div>
  <div class="em-side">
    <div class="em-bar"><h4>Measurements</h4><span class="em-summary" aria-live="polite"></span></div>
    <table class="em-table">
      <thead><tr><th></th><th>Name</th><th title="the model's value">Prop.</th><th>Current</th>
        <th title="model confidence, in words: check = look closely">Conf.</th><th>Status</th><th></th></tr></thead>
      <tbody class="em-tbody"></tbody>
    </table>
    <div class="em-confirm em-hidden">
      <span class="em-confirm-text"></span>
      <button class="em-confirm-yes">Accept anyway</button>
      <button class="em-confirm-no">Cancel</button>
    </div>
    <div class="em-calform em-hidden">
      <span class="em-calform-text"></span>
      <input class="em-cal-cm" type="number" min="0.1" max="50" step="0.1" aria-label="known length in cm">
      <span>cm</span>
      <button class="em-cal-set em-primary">Set scale</button>
      <button class="em-cal-cancel">Cancel</button>
    </div>
    <div class="em-bar">
      <button class="em-accept-all em-primary"
        title="Accept every proposal that is not flagged and lies within the plausible range" disabled>Accept all</button>
      <span style="flex:1"></span>
      <select class="em-add-name" aria-label="measurement to add"></select>
      <button class="em-add"
        title="Place a missing measurement by clicking its points (or: arrow keys move a crosshair, Enter places)"
        aria-label="Add the measurement: place its points by clicking, or with the arrow keys and Enter" disabled>+ Add</button>
    </div>
    <div class="em-notes"></div>
    <div class="em-hint">
      <b>Click the image first</b>: the keys act on the viewer. Drag an endpoint to correct it.
      <kbd>&larr;</kbd><kbd>&rarr;</kbd><kbd>&uarr;</kbd><kbd>&darr;</kbd> nudge 1 px
      (<kbd>Shift</kbd> 10 px), <kbd>1</kbd>/<kbd>2</kbd> pick the endpoint, <kbd>Enter</kbd> accept,
      <kbd>Del</kbd> reject, <kbd>Tab</kbd> next measurement (after the last: the buttons), <kbd>Ctrl</kbd>+<kbd>Z</kbd> undo,
      <kbd>Space</kbd> play/pause, <kbd>,</kbd>/<kbd>.</kbd> previous/next frame, <kbd>D</kbd>/<kbd>S</kbd> ED/ES frame,
      wheel or <kbd>+</kbd>/<kbd>-</kbd> zoom, <kbd>F</kbd> fit, drag the background to pan,
      right-drag brightness/contrast, <kbd>R</kbd> reset it, <kbd>N</kbd> next unreviewed clip.
      Frames count from 0, as in the CSV.
      <span class="em-s-proposed">&#9679;</span> proposed <span class="em-low">&#9679;</span> check
      <span class="em-s-accepted">&#9679;</span> accepted <span class="em-s-corrected">&#9679;</span> corrected
      <span class="em-s-added">&#9679;</span> added <span class="em-s-rejected">&#9679;</span> rejected
    </div>
  </div>
</div>
"""


def _read(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


#: Props of the viewer besides ``value`` (sent with ``gr.update(clip=...)``).
VIEWER_PROPS = frozenset({"clip"})


class CaliperViewer(gr.HTML):
    """Cine viewer with draggable calipers and Doppler peak markers, plus the measurement table.

    Parameters
    ----------
    value
        Viewer state (``{"clip_id", "measurements": [...], "committed": [...], "reload",
        "nonce"}``), see :func:`echomeasure.ui.viewmodel.viewer_value`.
    clip
        Clip description (``{"id", "frames": [url, ...], "width", "height", "frame_time_ms",
        "ed_frame", "es_frame", "kind", "calibration": {...}, "addable": [...]}``), see
        :func:`echomeasure.ui.viewmodel.viewer_clip`.
    **kwargs
        Passed on to :class:`gradio.HTML`.

    Events
    ------
    ``commit``
        The reviewer accepted, rejected or added measurements; the payload's fields are
        attributes of the ``gr.EventData`` (read with
        :func:`echomeasure.ui.controller.event_payload`; see the module docstring).
    ``calibrate``
        The reviewer drew a known length on an uncalibrated clip.
    ``next_clip``
        The reviewer asked for the next unreviewed clip (key N).
    ``contour_review``
        The reviewer accepted, corrected (with the edited polygon) or rejected a contour.

    Pass ``server_functions=[live_volumes]`` (a plain function of one payload argument) for the
    live EDV/ESV/EF of edited apical contours; without it the figures of the stored contours stay.
    """

    def __init__(self, value: dict[str, Any] | None = None, *, clip: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(
            value=value or {"clip_id": None, "measurements": [], "committed": [], "reload": True, "nonce": 0},
            html_template=HTML_TEMPLATE,
            css_template=_read("caliper.css"),
            # calibration.js defines EchoCalibration, which caliper.js uses for the live value
            js_on_load=_read("calibration.js") + "\n" + _read("caliper.js"),
            apply_default_css=False,
            clip=clip or {},
            **kwargs,
        )

    def __getattr__(self, name: str) -> Any:
        # gr.HTML takes every quoted word of js_on_load for a custom event, so "clip" (a prop the
        # script watches) would become an event trigger and an update's JSON would carry it.
        if name in VIEWER_PROPS:
            raise AttributeError(name)
        return super().__getattr__(name)

    def api_info(self) -> dict[str, Any]:
        """The value is a JSON object (the default ``gr.HTML`` says string)."""
        return {"type": "object", "additionalProperties": True}

    def example_payload(self) -> Any:
        return {"clip_id": None, "measurements": []}

    def example_value(self) -> Any:
        return {"clip_id": None, "measurements": []}
