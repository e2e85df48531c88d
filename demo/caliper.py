"""The caliper viewer: a ``gr.HTML`` subclass drawing calipers in SVG over the clip's frames.

Data flow (see ``/work/shared/design/ui.md``):

- Python -> browser: ``value`` (the measurements, :func:`demo.viewmodel.viewer_value`) and the
  ``clip`` prop (frame URLs, image size, frame time, ED/ES, calibration regions,
  :func:`demo.viewmodel.viewer_clip`).  Frames are URLs, preloaded and played in the browser,
  so scrubbing, playing and dragging need no server round trip.
- Browser -> Python: only the explicit custom event ``commit`` with
  ``{"clip_id": int, "reviews": [{"name", "action", "frame", "points", "seconds",
  "proposal_id"}]}`` (``action``: ``accept`` (the server decides accepted or corrected),
  ``rejected`` or ``added``).  Nothing is written to the store from ``.change``.

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
<div class="em-viewer" tabindex="0" aria-label="caliper viewer">
  <div class="em-main">
    <div class="em-stage">
      <svg class="em-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 480" preserveAspectRatio="xMidYMid meet">
        <image class="em-frame" x="0" y="0" width="640" height="480" preserveAspectRatio="none"></image>
        <g class="em-overlay"></g>
      </svg>
      <div class="em-empty">Open a study: pick an example, upload a clip, or choose one from the worklist.</div>
      <div class="em-banner em-hidden"></div>
    </div>
    <div class="em-cine">
      <button class="em-play" title="Play (Space)" disabled>&#9654;</button>
      <input class="em-slider" type="range" min="0" max="0" value="0" step="1" aria-label="frame" disabled>
      <span class="em-frameinfo">no clip</span>
      <button class="em-ed" title="Jump to end-diastole" disabled>ED</button>
      <button class="em-es" title="Jump to end-systole" disabled>ES</button>
    </div>
  </div>
  <div class="em-side">
    <div class="em-bar"><h4>Measurements</h4><span class="em-summary"></span></div>
    <table class="em-table">
      <thead><tr><th></th><th>Name</th><th>Proposed</th><th>Current</th><th>Unit</th><th>Conf.</th><th>Status</th><th></th></tr></thead>
      <tbody class="em-tbody"></tbody>
    </table>
    <div class="em-bar">
      <button class="em-accept-all em-primary" title="Accept every measurement not yet reviewed" disabled>Accept all</button>
      <span style="flex:1"></span>
      <select class="em-add-name" aria-label="measurement to add"></select>
      <button class="em-add" title="Place a missing measurement by clicking its points" disabled>+ Add</button>
    </div>
    <div class="em-hint">
      Drag an endpoint to correct it. <kbd>&larr;</kbd><kbd>&rarr;</kbd><kbd>&uarr;</kbd><kbd>&darr;</kbd> nudge 1 px
      (<kbd>Shift</kbd> 10 px), <kbd>1</kbd>/<kbd>2</kbd> pick the endpoint, <kbd>Enter</kbd> accept,
      <kbd>Del</kbd> reject, <kbd>Tab</kbd> next measurement, <kbd>Ctrl</kbd>+<kbd>Z</kbd> undo,
      <kbd>Space</kbd> play/pause, <kbd>,</kbd>/<kbd>.</kbd> previous/next frame.
      <span class="em-s-proposed">&#9679;</span> proposed <span class="em-low">&#9679;</span> low confidence
      <span class="em-s-accepted">&#9679;</span> accepted <span class="em-s-corrected">&#9679;</span> corrected
      <span class="em-s-added">&#9679;</span> added <span class="em-s-rejected">&#9679;</span> rejected
    </div>
  </div>
</div>
"""


def _read(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


class CaliperViewer(gr.HTML):
    """Cine viewer with draggable calipers and Doppler peak markers, plus the measurement table.

    Parameters
    ----------
    value
        Viewer state (``{"clip_id", "measurements": [...], "committed": [...], "reload",
        "nonce"}``), see :func:`demo.viewmodel.viewer_value`.
    clip
        Clip description (``{"id", "frames": [url, ...], "width", "height", "frame_time_ms",
        "ed_frame", "es_frame", "kind", "calibration": {...}, "addable": [...]}``), see
        :func:`demo.viewmodel.viewer_clip`.
    **kwargs
        Passed on to :class:`gradio.HTML`.

    Events
    ------
    ``commit``
        The reviewer accepted, rejected or added measurements; the payload is in
        ``gr.EventData._data`` (see the module docstring).
    """

    def __init__(self, value: dict[str, Any] | None = None, *, clip: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(
            value=value or {"clip_id": None, "measurements": [], "committed": [], "reload": True, "nonce": 0},
            html_template=HTML_TEMPLATE,
            css_template=_read("caliper.css"),
            js_on_load=_read("caliper.js"),
            apply_default_css=False,
            clip=clip or {},
            **kwargs,
        )

    def api_info(self) -> dict[str, Any]:
        """The value is a JSON object (the default ``gr.HTML`` says string)."""
        return {"type": "object", "additionalProperties": True}

    def example_payload(self) -> Any:
        return {"clip_id": None, "measurements": []}

    def example_value(self) -> Any:
        return {"clip_id": None, "measurements": []}
