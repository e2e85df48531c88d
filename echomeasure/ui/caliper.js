// Caliper viewer (runs as gr.HTML js_on_load: element, trigger, props, server, upload, watch).
//
// The HTML template is static; this script owns the DOM below it.  Server -> browser: the
// `value` prop (measurements, statuses, a notice) and the `clip` prop (frame URLs, size, frame
// time, calibration, plausibility limits).  Browser -> server: only explicit custom events:
// "commit" (reviews to save), "calibrate" (a known length drawn on an uncalibrated clip) and
// "next_clip" (open the next unreviewed clip).  Nothing is sent while dragging, zooming or
// playing; frames are preloaded and played locally.
//
// Coordinates: points are original-image pixels (pixel centres at integers).  Zoom and pan
// change only the SVG viewBox, so getScreenCTM() maps screen <-> image pixels exactly at any
// zoom; handles and labels are sized in screen pixels (times 1 / CTM scale).
// Frames are numbered from 0, as in the store and the CSV.
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const q = (sel) => element.querySelector(sel);
  const root = q(".em-viewer");
  const svg = q(".em-svg");
  const frameImage = q(".em-frame");
  const overlay = q(".em-overlay");
  const empty = q(".em-empty");
  const banner = q(".em-banner");
  const playBtn = q(".em-play");
  const slider = q(".em-slider");
  const frameInfo = q(".em-frameinfo");
  const edBtn = q(".em-ed");
  const esBtn = q(".em-es");
  const tbody = q(".em-tbody");
  const acceptAllBtn = q(".em-accept-all");
  const addSelect = q(".em-add-name");
  const addBtn = q(".em-add");
  const summary = q(".em-summary");
  const notes = q(".em-notes");
  const fitBtn = q(".em-fit");
  const zoomInBtn = q(".em-zoom-in");
  const zoomOutBtn = q(".em-zoom-out");
  const zoomText = q(".em-zoom");
  const wlText = q(".em-wl");
  const wlResetBtn = q(".em-wl-reset");
  const linkBox = q(".em-link");
  const calibrateBtn = q(".em-calibrate");
  const focusText = q(".em-focus");
  const confirmBar = q(".em-confirm");
  const confirmText = q(".em-confirm-text");
  const confirmYes = q(".em-confirm-yes");
  const confirmNo = q(".em-confirm-no");
  const calForm = q(".em-calform");
  const calFormText = q(".em-calform-text");
  const calCm = q(".em-cal-cm");
  const calSet = q(".em-cal-set");
  const calCancel = q(".em-cal-cancel");
  const wlFuncs = Array.from(element.querySelectorAll(".em-wl-filter feFuncR, .em-wl-filter feFuncG, .em-wl-filter feFuncB"));

  const COLORS = {
    proposed: "#f5c242", accepted: "#3ddc84", corrected: "#4fc3f7",
    rejected: "#ff6b6b", added: "#b388ff", draft: "#e6ebf0",
  };
  const LOW_COLOR = "#ff9f43";
  // Endpoints shared on echo machines: [measurement, endpoint, measurement, endpoint].
  const LINKS = [["ivsd", 1, "lvidd", 0], ["lvidd", 1, "lvpwd", 0], ["aortic_root", 1, "la", 0]];
  const ZOOM_STEP = Math.SQRT2;      // two presses of + double the zoom
  const MAX_ZOOM = 16;
  const IDLE_MS = 30000;             // a pause longer than this is not time spent reviewing
  const LABEL_FONT_PX = 13;

  // ------------------------------------------------------------------ state
  let clip = null;          // the `clip` prop
  let items = [];           // measurements (deep copies of value.measurements, edited locally)
  let selected = null;      // name of the selected measurement
  let endpoint = 0;         // index of the selected endpoint of the selected measurement
  let frame = 0;            // frame shown
  let timer = null;         // cine interval
  let placing = null;       // {name, spec, points: [], calibrate} while the user places points
  let calPoints = null;     // the known length drawn for a user calibration, awaiting its cm
  let undoStack = [];       // {type: "edit", name, points, frame, linked} | {type: "save", name, before}
  let drag = null;          // {name, index, startImg, orig, partners, moved}
  let pan = null;           // {x, y, view} while panning
  let wlDrag = null;        // {x, y, width, level} while changing window/level
  let view = null;          // {x, y, w, h}: the part of the image shown (SVG viewBox)
  let wl = { width: 1, level: 0.5 };  // window/level on a 0-1 intensity scale
  let drafts = {};          // clip id -> {edits, undo}: unsaved work kept while other clips are open
  let spentMs = {};         // name -> milliseconds of active review with the measurement selected
  let lastActivity = null;  // performance.now() of the last input in the viewer
  let engaged = false;      // the reviewer has acted since the clip opened (auto-selection is not review)
  let pendingConfirm = null; // name awaiting "accept anyway"
  let bannerTimer = null;
  let renderQueued = false;
  let preloaded = [];

  const copy = (o) => JSON.parse(JSON.stringify(o));
  const byName = (name) => items.find((m) => m.name === name) || null;
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

  // ------------------------------------------------------------------ contours
  // clip.contours: [{id, frame, structure, polygon: [[x, y]], status, confidence}]; drawn under
  // the calipers in per-structure colours, with an opacity slider and accept/reject per contour.
  // The selected contour (C / Shift+C, or a click on its name) shows its vertices: drag one,
  // double-click (or Alt+click) an edge to insert one, right-click a vertex (or X) to delete it,
  // M smooths; edits stay a local draft until saved as a correction (Enter or Save).
  // clip.volumes: EDV/ESV/EF of the stored apical contours (Python's method of discs); while an
  // LV, myocardium or LA contour of the ED or ES frame is edited, the server function
  // live_volumes recomputes them from the polygons on screen (one request in flight at a time).
  const CONTOUR_COLORS = {
    lv: "#ff5252", myocardium: "#40c4ff", la: "#ffd740", rv: "#b388ff",
    aorta: "#69f0ae", septum: "#ff80ab", outer_wall: "#bcaaa4",
  };
  const MIN_VERTICES = 3;
  const VOLUME_STRUCTURES = ["lv", "myocardium", "la"];
  const contourLayer = document.createElementNS(SVGNS, "g");
  contourLayer.setAttribute("class", "em-contours");
  overlay.parentNode.insertBefore(contourLayer, overlay);
  const contourBar = document.createElement("div");
  contourBar.className = "em-contour-bar em-hidden";
  const opacityLabel = document.createElement("label");
  opacityLabel.textContent = "Contour opacity ";
  const opacityInput = document.createElement("input");
  opacityInput.type = "range"; opacityInput.min = "0"; opacityInput.max = "1"; opacityInput.step = "0.05";
  opacityInput.value = "0.35"; opacityInput.className = "em-contour-opacity";
  opacityInput.setAttribute("aria-label", "contour opacity");
  opacityLabel.appendChild(opacityInput);
  const smoothBtn = document.createElement("button");
  smoothBtn.className = "em-contour-smooth"; smoothBtn.textContent = "Smooth";
  smoothBtn.title = "Smooth the selected contour (M); its area is kept";
  smoothBtn.disabled = true;
  const volumeText = document.createElement("span");
  volumeText.className = "em-volumes em-hidden";
  const contourList = document.createElement("span");
  contourList.className = "em-contour-list";
  const contourHint = document.createElement("div");
  contourHint.className = "em-contour-hint";
  contourHint.innerHTML = "Contours: <kbd>C</kbd>/<kbd>Shift</kbd>+<kbd>C</kbd> next/previous contour, " +
    "<kbd>Tab</kbd> next vertex, arrows nudge it, double-click an edge (or <kbd>I</kbd>) insert, " +
    "right-click a vertex (or <kbd>X</kbd>) delete, <kbd>M</kbd> smooth, <kbd>Enter</kbd> accept/save, " +
    "<kbd>Del</kbd> reject, <kbd>Ctrl</kbd>+<kbd>Z</kbd> undo, <kbd>Esc</kbd> done; <kbd>D</kbd>/<kbd>S</kbd> ED/ES frame.";
  contourBar.appendChild(opacityLabel);
  contourBar.appendChild(smoothBtn);
  contourBar.appendChild(volumeText);
  contourBar.appendChild(contourList);
  contourBar.appendChild(contourHint);
  notes.parentNode.insertBefore(contourBar, notes);
  let contourStatus = {};   // contour proposal id -> status decided here, until the clip is reopened
  let contourEdits = {};    // contour proposal id -> {polygon, saved}: vertices the reviewer moved
  // contour proposal id -> its latest review as a save from this page returned it (value.contour_reviews):
  // the state the next decision on it is made on (a decision on another state is refused as stale)
  let contourReviewIds = {};
  let editingContour = null; // id of the selected contour (its vertices are shown; keys act on it)
  let selectedVertex = 0;   // index of the selected vertex of that contour
  let vertexDrag = null;    // {id, index} while a vertex is dragged
  let contourQueued = false;
  let volumes = null;       // {edv_ml, esv_ml, ef_percent, ed_frame, es_frame, note, pending}
  let volumeRequest = { busy: false, again: false, seq: 0 };

  // ------------------------------------------------------------------ decisions on their way
  // One rule for every decision this page saves (a caliper review, a contour review): it is made
  // on the state the page shows (seen_review_id), and the store refuses one made on another state
  // as stale.  So a decision on something whose previous decision is still on its way waits for
  // that answer and goes out on the state the answer returned (sent at once, it was made on the
  // state before: an accept then at once a reject, an undo or a correction was refused).  A
  // decision is keyed by its clip and what it decides ("<clip>:caliper:<name>",
  // "<clip>:contour:<id>", decisionKey); "<clip>:*" waits for all of a clip's.  An answer that
  // never comes holds the ones waiting DECISION_WAIT_MS at most; a refusal as stale drops those on
  // what it reloaded.  Opening another clip keeps the decisions waiting to go out: each goes out
  // for the clip it was made on, on the state the last answer about it returned (answers about a
  // clip no longer shown are read for that alone, otherThanShownAnswers), and a notice says what
  // of it was not saved; only actions of the page itself (an undo waiting) go with the clip.  A new
  // description of the clip shown drops that clip's decisions waiting.
  const DECISION_WAIT_MS = 15000;
  let decisionsOnTheirWay = {};  // key -> Date.now() when its decision was sent
  let decisionsWaiting = [];     // [{keys, run, carried}], in the order they were made
  let decisionTimer = null;
  // decision key -> the review id an answer returned for it, for decisions that go out while
  // another clip is shown (forgotten when its clip is opened again: the clip then says it)
  let answeredReviewIds = {};
  function decisionKey(clipId, kind, what) { return clipId + ":" + kind + ":" + what; }
  function keyOfClip(key) { return key.slice(0, key.indexOf(":")); }
  function decisionKeyMeets(a, b) {
    const wide = (w, k) => w.endsWith(":*") && k.startsWith(w.slice(0, -1));
    return a === b || wide(a, b) || wide(b, a);
  }
  function decisionKeysMeet(a, b) {
    return a.some((k) => b.some((j) => decisionKeyMeets(k, j)));
  }
  function decisionFree(keys) {
    const now = Date.now();
    for (const k of Object.keys(decisionsOnTheirWay)) if (now - decisionsOnTheirWay[k] >= DECISION_WAIT_MS) delete decisionsOnTheirWay[k];
    const onTheirWay = Object.keys(decisionsOnTheirWay);
    if (onTheirWay.length && decisionKeysMeet(onTheirWay, keys)) return false;
    return !decisionsWaiting.some((w) => decisionKeysMeet(w.keys, keys));
  }
  function whenDecided(keys, run, carried) {
    // run() now, or once no decision on keys is on its way or waiting before it; carried: it still
    // runs once another clip is open (a decision going out for its own clip)
    if (decisionFree(keys)) { run(); return; }
    decisionsWaiting.push({ keys: keys, run: run, carried: !!carried });
    armDecisionTimer();
  }
  function sendDecision(keys, send) {
    // send() (it reads the state it is made on when it runs) once the decisions before it on keys are answered
    whenDecided(keys, () => { const now = Date.now(); for (const k of keys) decisionsOnTheirWay[k] = now; send(); }, true);
  }
  function decisionAnswered(key, stale) {
    // -> how many decisions waiting on it were dropped (refused as stale: made on a state gone)
    delete decisionsOnTheirWay[key];
    const before = decisionsWaiting.length;
    if (stale) decisionsWaiting = decisionsWaiting.filter((w) => !w.keys.includes(key));
    const dropped = before - decisionsWaiting.length;
    flushDecisions();
    return dropped;
  }
  function flushDecisions() {
    const waiting = decisionsWaiting;
    decisionsWaiting = [];
    for (const w of waiting) whenDecided(w.keys, w.run, w.carried);  // in order: a later one stays behind an earlier one it meets
    armDecisionTimer();
  }
  function armDecisionTimer() {
    if (decisionTimer !== null || !decisionsWaiting.length) return;
    decisionTimer = setTimeout(() => { decisionTimer = null; flushDecisions(); }, DECISION_WAIT_MS);
  }
  function dropDecisions(clipId) {
    // a new description of the clip shown: its decisions waiting were made on the one before
    const ofClip = (k) => keyOfClip(k) === String(clipId);
    for (const k of Object.keys(decisionsOnTheirWay)) if (ofClip(k)) delete decisionsOnTheirWay[k];
    decisionsWaiting = decisionsWaiting.filter((w) => !w.keys.some(ofClip));
  }
  function leaveClipDecisions(nextId) {
    // another clip opens: decisions waiting to go out stay (for their own clip), the page's own actions go;
    // the clip opened says the state of its measurements and contours itself
    decisionsWaiting = decisionsWaiting.filter((w) => w.carried);
    for (const k of Object.keys(answeredReviewIds)) if (keyOfClip(k) === String(nextId)) delete answeredReviewIds[k];
  }
  function seenOnOtherClip(key, seen) {
    // the state a decision for a clip no longer shown goes out on: the last answer about it, else the one it was made on
    return Object.prototype.hasOwnProperty.call(answeredReviewIds, key) ? answeredReviewIds[key] : seen;
  }
  function caliperDecisionsBusy() {
    const busy = (k) => clip !== null && k.startsWith(decisionKey(clip.id, "caliper", ""));
    return Object.keys(decisionsOnTheirWay).some(busy) || decisionsWaiting.some((w) => w.keys.some(busy));
  }
  function otherThanShownAnswers(v) {
    // the answer to a decision about a clip no longer shown: the decisions waiting on it go out (or,
    // refused as stale, are dropped), and a notice names that clip when something was not saved
    if (!v || v.clip_id === undefined || v.clip_id === null || v.nonce === answersNonce) return;
    const answered = v.answered || [], saved = v.contour_reviews || [], reloaded = v.contours_reloaded || [];
    if (!answered.length && !saved.length && !reloaded.length) return;  // not an answer (e.g. a clip opening)
    answersNonce = v.nonce;
    const cid = v.clip_id, stale = v.stale || [];
    for (const m of v.measurements || []) {
      if (answered.includes(m.name)) answeredReviewIds[decisionKey(cid, "caliper", m.name)] = m.review_id === undefined ? null : m.review_id;
    }
    for (const r of saved) answeredReviewIds[decisionKey(cid, "contour", r.id)] = r.review_id;
    let dropped = 0;
    for (const name of answered) dropped += decisionAnswered(decisionKey(cid, "caliper", name), stale.includes(name));
    for (const r of saved) decisionAnswered(decisionKey(cid, "contour", r.id), false);
    for (const f of reloaded) dropped += decisionAnswered(decisionKey(cid, "contour", f.id), true);
    const refused = stale.length || reloaded.length || (v.notice && v.notice.startsWith("Not saved"));
    if (refused || dropped) {
      setBanner("Clip " + cid + ": " + (v.notice || "a decision was not saved") +
        (dropped ? " (" + dropped + " later decision" + (dropped > 1 ? "s" : "") + " on it not saved either)" : ""), 12000);
    }
  }

  function contourColor(structure) { return CONTOUR_COLORS[structure] || "#e6ebf0"; }
  function seenContourReview(c) {
    if (c.id !== null && Object.prototype.hasOwnProperty.call(contourReviewIds, c.id)) return contourReviewIds[c.id];
    return c.review_id === undefined ? null : c.review_id;
  }
  function sendContourReview(c, payload) {
    // c.id null: a contour the store has not numbered, nothing to wait for
    const clipId = payload.clip_id;
    const key = decisionKey(clipId, "contour", c.id);
    const made = seenContourReview(c);  // the state it was made on
    sendDecision(c.id !== null ? [key] : [], () => {
      // made on the state the last answer returned: the page's, or (another clip open now) that answer's
      const seen = clip && clip.id === clipId ? seenContourReview(contourById(c.id) || c) : seenOnOtherClip(key, made);
      trigger("contour_review", Object.assign({}, payload, { seen_review_id: seen }));
    });
  }
  function contourById(id) { return ((clip && clip.contours) || []).find((k) => k.id === id) || null; }
  function currentPolygon(c) { const e = c.id !== null ? contourEdits[c.id] : null; return e ? e.polygon : c.polygon; }
  function contourState(c) {
    const edit = c.id !== null ? contourEdits[c.id] : null;
    let status = c.id !== null && contourStatus[c.id] ? contourStatus[c.id] : c.status;
    if (edit && !edit.saved) status = "draft";
    return Object.assign({}, c, { status: status, polygon: edit ? edit.polygon : c.polygon });
  }
  function contoursOnFrame() {
    return ((clip && clip.contours) || []).filter((c) => c.frame === frame).map(contourState);
  }
  function editablePolygon(c) {
    // the polygon to change: a draft copy (the first change of a contour starts one)
    if (!contourEdits[c.id] || contourEdits[c.id].saved) {
      // base: the polygon as last saved, which a draft kept across clips must still find
      contourEdits[c.id] = { polygon: copy(currentPolygon(c)), saved: false, base: copy(currentPolygon(c)) };
    }
    return contourEdits[c.id].polygon;
  }
  function clampImage(p) {
    return [Math.round(clamp(p[0], 0, clip.width - 1) * 10) / 10, Math.round(clamp(p[1], 0, clip.height - 1) * 10) / 10];
  }
  function polygonArea(poly) {
    let a = 0;
    for (let i = 0; i < poly.length; i++) {
      const p = poly[i], q2 = poly[(i + 1) % poly.length];
      a += p[0] * q2[1] - q2[0] * p[1];
    }
    return Math.abs(a) / 2;
  }
  function nearestEdge(poly, p) {
    // -> {index, point}: the edge (index, index + 1) closest to p and the closest point on it
    let best = null;
    for (let i = 0; i < poly.length; i++) {
      const a = poly[i], b = poly[(i + 1) % poly.length];
      const dx = b[0] - a[0], dy = b[1] - a[1];
      const len2 = dx * dx + dy * dy;
      const t = len2 > 0 ? clamp(((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2, 0, 1) : 0;
      const x = a[0] + t * dx, y = a[1] + t * dy;
      const d = Math.hypot(p[0] - x, p[1] - y);
      if (!best || d < best.d) best = { index: i, point: [x, y], d: d };
    }
    return best;
  }
  function pushContourUndo(c) {
    // Ctrl+Z brings the contour back to how it stood before this change (a local draft again)
    const e = contourEdits[c.id];
    undoStack.push({ type: "contour", id: c.id, edit: e ? copy(e) : null, vertex: selectedVertex });
    if (undoStack.length > 200) undoStack.shift();
  }
  function undoContourSave(entry) {
    // Reviews are append-only: undoing a saved contour decision writes a new review that
    // restores the contour as it stood before (its proposal, its earlier correction, or rejected).
    const c = contourById(entry.id);
    if (!c) return;
    const before = entry.before;
    if (c.frame !== frame) showFrame(c.frame);
    editingContour = c.id;
    const stored = contourStatus[c.id] || c.status;
    if (before.status === "proposed" && stored === "rejected") {
      // the rejection of a proposal never reviewed: back to review, saved as a "reopened" review
      // (an accept would record a decision never made); undoing a correction restores the proposal
      contourStatus[c.id] = "proposed";
      contourEdits[c.id] = { polygon: copy(before.polygon), saved: true };
      contourChanged();
      sendContourReview(c, { clip_id: clip.id, contour_proposal_id: c.id, action: "reopened", polygon: null });
      setBanner("Undo: " + c.structure + " contour is back to review (saved as reopened; the rejection stays in the history)", 8000);
      return;
    }
    if (before.status === "rejected") {
      reviewContour(c, "rejected", true);
    } else if (before.status === "corrected" || before.status === "added") {
      contourEdits[c.id] = { polygon: copy(before.polygon), saved: false, base: copy(before.polygon) };
      reviewContour(c, "corrected", true);
    } else {
      delete contourEdits[c.id];
      reviewContour(c, "accepted", true);
    }
    setBanner("Undo: " + c.structure + " contour restored and saved as a new review (the earlier one stays in the history)", 5000);
  }
  function undoContour(entry) {
    const c = contourById(entry.id);
    if (!c) return;
    if (entry.edit) contourEdits[c.id] = entry.edit; else delete contourEdits[c.id];
    editingContour = c.id;
    selectedVertex = entry.vertex;
    if (c.frame !== frame) showFrame(c.frame);
    contourChanged();
  }
  function contourChanged() {
    drawContours();
    requestVolumes();
  }
  function insertVertex(c, p) {
    pushContourUndo(c);
    const poly = editablePolygon(c);
    const edge = nearestEdge(poly, p || midpointAfter(poly, selectedVertex));
    poly.splice(edge.index + 1, 0, clampImage(edge.point));
    selectedVertex = edge.index + 1;
    contourChanged();
  }
  function midpointAfter(poly, i) {
    const a = poly[i % poly.length], b = poly[(i + 1) % poly.length];
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  }
  function deleteVertex(c, index) {
    if (currentPolygon(c).length <= MIN_VERTICES) {
      setBanner("A contour keeps at least " + MIN_VERTICES + " vertices", 3000);
      return;
    }
    pushContourUndo(c);
    const poly = editablePolygon(c);
    poly.splice(index, 1);
    selectedVertex = Math.min(index, poly.length - 1);
    contourChanged();
  }
  function smoothPolygon(poly) {
    // one pass of a (1/4, 1/2, 1/4) moving average on the closed polygon, then scaled about its
    // centroid back to the area it had (the average alone shrinks a contour)
    const n = poly.length;
    const out = poly.map((p, i) => {
      const a = poly[(i - 1 + n) % n], b = poly[(i + 1) % n];
      return [0.25 * a[0] + 0.5 * p[0] + 0.25 * b[0], 0.25 * a[1] + 0.5 * p[1] + 0.25 * b[1]];
    });
    const before = polygonArea(poly), after = polygonArea(out);
    const k = after > 0 ? Math.sqrt(before / after) : 1;
    const cx = out.reduce((s, p) => s + p[0], 0) / n, cy = out.reduce((s, p) => s + p[1], 0) / n;
    return out.map((p) => clampImage([cx + (p[0] - cx) * k, cy + (p[1] - cy) * k]));
  }
  function smoothContour(c) {
    pushContourUndo(c);
    const smoothed = smoothPolygon(currentPolygon(c));
    const poly = editablePolygon(c);
    poly.splice(0, poly.length, ...smoothed);
    contourChanged();
  }
  function nudgeVertex(c, dx, dy) {
    pushContourUndo(c);
    const poly = editablePolygon(c);
    const i = clamp(selectedVertex, 0, poly.length - 1);
    poly[i] = clampImage([poly[i][0] + dx, poly[i][1] + dy]);
    contourChanged();
  }
  function selectContour(step) {
    const shown = contoursOnFrame().filter((c) => c.id !== null);
    if (!shown.length) { setBanner("No contour on this frame", 2000); return; }
    const at = shown.findIndex((c) => c.id === editingContour);
    const next = at < 0 ? (step > 0 ? 0 : shown.length - 1) : (at + step + shown.length) % shown.length;
    editingContour = shown[next].id;
    selectedVertex = 0;
    drawContours();
  }

  function drawContours() {
    while (contourLayer.firstChild) contourLayer.removeChild(contourLayer.firstChild);
    const shown = contoursOnFrame();
    contourBar.classList.toggle("em-hidden", !((clip && clip.contours) || []).length);
    const opacity = Number(opacityInput.value);
    const s = clip ? imageScale() : 1;
    for (const c of shown) {
      if (c.status === "rejected") continue;
      const color = contourColor(c.structure);
      const points = c.polygon.map((p) => p[0] + "," + p[1]).join(" ");
      const editing = c.id !== null && c.id === editingContour;
      el("polygon", {
        class: "em-contour", "data-structure": c.structure, "data-status": c.status, points: points,
        fill: color, "fill-opacity": opacity, stroke: color, "stroke-opacity": Math.min(1, opacity + 0.4),
        "stroke-width": (editing ? 2.2 : 1.5) * s, "pointer-events": "none",
      }, contourLayer);
      if (!editing) continue;
      // a wide invisible edge to double-click (insert a vertex) without hitting the fill
      el("polygon", { class: "em-contour-edge", "data-structure": c.structure, points: points, fill: "none",
        stroke: "transparent", "stroke-width": 10 * s, "pointer-events": "stroke" }, contourLayer);
      c.polygon.forEach((p, i) => el("circle", {
        class: "em-vertex" + (i === selectedVertex ? " em-vertex-selected" : ""), "data-structure": c.structure,
        "data-index": i, cx: p[0], cy: p[1], r: (i === selectedVertex ? 5.5 : 4) * s,
        fill: color, stroke: i === selectedVertex ? "#fff" : "#111", "stroke-width": (i === selectedVertex ? 1.6 : 1) * s,
      }, contourLayer));
    }
    smoothBtn.disabled = editingContour === null || !shown.some((c) => c.id === editingContour && c.status !== "rejected");
    renderContourList(shown);
    renderVolumes();
  }
  function redrawEditingShape() {
    // during a drag only the moving contour's outline and vertex change
    contourQueued = false;
    const c = contourById(editingContour);
    if (!c) return;
    const poly = currentPolygon(c);
    const points = poly.map((p) => p[0] + "," + p[1]).join(" ");
    for (const node of contourLayer.querySelectorAll('[data-structure="' + c.structure + '"]')) {
      if (node.tagName === "polygon") node.setAttribute("points", points);
      else if (vertexDrag && Number(node.dataset.index) === vertexDrag.index) {
        node.setAttribute("cx", poly[vertexDrag.index][0]); node.setAttribute("cy", poly[vertexDrag.index][1]);
      }
    }
  }
  function renderContourList(shown) {
    while (contourList.firstChild) contourList.removeChild(contourList.firstChild);
    for (const c of shown) {
      const item = document.createElement("span");
      item.className = "em-contour-item" + (c.id !== null && c.id === editingContour ? " em-contour-selected" : "");
      item.dataset.structure = c.structure;
      const name = document.createElement("span");
      name.className = "em-contour-name em-s-" + c.status;
      name.style.borderBottom = "3px solid " + contourColor(c.structure);
      name.textContent = c.structure + " (" + c.status + ")";
      name.title = (c.confidence === null ? "drawn by a reviewer" : "confidence " + c.confidence) +
        (c.id !== null ? " · click to edit its vertices" : "");
      if (c.id !== null) {
        name.style.cursor = "pointer";
        name.addEventListener("click", () => {
          editingContour = editingContour === c.id ? null : c.id; selectedVertex = 0; drawContours();
          root.focus({ preventScroll: true });
        });
      }
      item.appendChild(name);
      if (c.status === "draft") {
        const save = document.createElement("button");
        save.className = "em-contour-save"; save.textContent = "Save"; save.title = "Save the edited contour as a correction (Enter)";
        save.addEventListener("click", () => reviewContour(c, "corrected"));
        item.appendChild(save);
      }
      if (c.id !== null) {
        for (const [action, text, cls] of [["accepted", "\u2713", "em-contour-ok"], ["rejected", "\u2717", "em-contour-no"]]) {
          const b = document.createElement("button");
          b.className = cls; b.textContent = text; b.title = (action === "accepted" ? "Accept " : "Reject ") + c.structure;
          b.setAttribute("aria-label", b.title + " contour");
          b.disabled = c.status === action;
          b.addEventListener("click", () => reviewContour(c, action));
          item.appendChild(b);
        }
      }
      contourList.appendChild(item);
    }
  }
  function savedContour(c) {
    // the contour as last saved (a draft's base), before the change being saved now
    const e = contourEdits[c.id];
    const polygon = e ? (e.saved ? e.polygon : e.base || c.polygon) : c.polygon;
    return { status: contourStatus[c.id] || c.status, polygon: copy(polygon) };
  }
  function reviewContour(c, action, isUndo) {
    if (!clip) return;
    if (!isUndo) {
      undoStack.push({ type: "contour-save", id: c.id, before: savedContour(c) });
      if (undoStack.length > 200) undoStack.shift();
    }
    const state = contourState(c);
    contourStatus[c.id] = action;
    if (action === "corrected") contourEdits[c.id] = { polygon: state.polygon, saved: true };
    else delete contourEdits[c.id];
    if (action !== "corrected") editingContour = null;
    contourChanged();
    sendContourReview(c, {
      clip_id: clip.id, contour_proposal_id: c.id, action: action, polygon: action === "corrected" ? state.polygon : null,
    });
  }
  function contourKey(evt) {
    // keys for the selected contour; true when handled
    const c = contourById(editingContour);
    if (!c || c.frame !== frame) return false;
    const k = evt.key, step = evt.shiftKey ? 10 : 1;
    const state = contourState(c);
    if (k === "ArrowLeft") nudgeVertex(c, -step, 0);
    else if (k === "ArrowRight") nudgeVertex(c, step, 0);
    else if (k === "ArrowUp") nudgeVertex(c, 0, -step);
    else if (k === "ArrowDown") nudgeVertex(c, 0, step);
    else if (k === "Tab") {
      const n = currentPolygon(c).length;
      selectedVertex = (selectedVertex + (evt.shiftKey ? -1 : 1) + n) % n; drawContours();
    }
    else if (k === "Enter") reviewContour(c, state.status === "draft" ? "corrected" : "accepted");
    else if (k === "Delete" || k === "Backspace") reviewContour(c, "rejected");
    else if (k === "i" || k === "I") insertVertex(c, null);
    else if (k === "x" || k === "X") deleteVertex(c, selectedVertex);
    else if (k === "m" || k === "M") smoothContour(c);
    else if (k === "Escape") { editingContour = null; drawContours(); }
    else return false;
    return true;
  }

  // ---- live volumes
  function volumePayload() {
    if (!clip || !volumes) return null;
    const phases = [volumes.ed_frame, volumes.es_frame];
    const out = [];
    for (const c of (clip.contours || []).map(contourState)) {
      if (c.status === "rejected" || !phases.includes(c.frame) || !VOLUME_STRUCTURES.includes(c.structure)) continue;
      out.push({ frame: c.frame, structure: c.structure, polygon: c.polygon });
    }
    return { clip_id: clip.id, ed_frame: volumes.ed_frame, es_frame: volumes.es_frame, contours: out };
  }
  function requestVolumes() {
    if (!volumes || typeof server === "undefined" || !server || !server.live_volumes) return;
    if (volumes.ed_frame === null || volumes.ed_frame === undefined || volumes.es_frame === null
        || volumes.es_frame === undefined) return;  // no ED/ES pair of LV contours: nothing to measure
    if (volumeRequest.busy) { volumeRequest.again = true; return; }
    const payload = volumePayload();
    if (!payload) return;
    volumeRequest.busy = true; volumeRequest.again = false;
    const seq = ++volumeRequest.seq;
    const clipId = clip.id;
    volumes.pending = true;
    renderVolumes();
    Promise.resolve(server.live_volumes(payload)).then((got) => {
      if (clip && clip.id === clipId && seq === volumeRequest.seq && got) {
        volumes = Object.assign({}, volumes, got, { ed_frame: volumes.ed_frame, es_frame: volumes.es_frame });
      }
    }).catch(() => { /* the last figures stay; the next edit asks again */ }).finally(() => {
      volumeRequest.busy = false;
      if (volumes && clip && clip.id === clipId) {
        if (volumeRequest.again) requestVolumes();
        else { volumes.pending = false; renderVolumes(); }
      }
    });
  }
  function renderVolumes() {
    volumeText.classList.toggle("em-hidden", !volumes);
    if (!volumes) return;
    const f = (v, unit) => (v === null || v === undefined ? "—" : v.toFixed(unit === "%" ? 0 : 1) + " " + unit);
    volumeText.textContent = "EDV " + f(volumes.edv_ml, "ml") + " · ESV " + f(volumes.esv_ml, "ml") +
      " · EF " + f(volumes.ef_percent, "%") + (volumes.pending ? " …" : "");
    volumeText.title = "LV single-plane method of discs, ED frame " + volumes.ed_frame + ", ES frame " + volumes.es_frame +
      (volumes.note ? " · " + volumes.note : "");
    volumeText.dataset.edv = volumes.edv_ml === null || volumes.edv_ml === undefined ? "" : String(volumes.edv_ml);
    volumeText.dataset.esv = volumes.esv_ml === null || volumes.esv_ml === undefined ? "" : String(volumes.esv_ml);
    volumeText.dataset.ef = volumes.ef_percent === null || volumes.ef_percent === undefined ? "" : String(volumes.ef_percent);
    volumeText.dataset.pending = volumes.pending ? "1" : "";
  }

  // ---- mouse on contours (caught before the caliper handlers, in the capture phase)
  opacityInput.addEventListener("input", () => drawContours());
  smoothBtn.addEventListener("click", () => {
    const c = contourById(editingContour);
    if (c) smoothContour(c);
    root.focus({ preventScroll: true });
  });
  svg.addEventListener("pointerdown", (evt) => {
    const t = evt.target;
    if (!clip || editingContour === null || !t.classList) return;
    const c = contourById(editingContour);
    if (!c) return;
    if (t.classList.contains("em-vertex")) {
      evt.stopImmediatePropagation(); evt.preventDefault();
      root.focus({ preventScroll: true });
      const index = Number(t.dataset.index);
      if (evt.button === 2) { deleteVertex(c, index); return; }  // right-click a vertex: delete it
      if (evt.button !== 0) return;
      if (evt.altKey) { deleteVertex(c, index); return; }
      pushContourUndo(c);
      editablePolygon(c);
      selectedVertex = index;
      vertexDrag = { id: c.id, index: index, moved: false };
      drawContours();
      svg.setPointerCapture(evt.pointerId);
    } else if (t.classList.contains("em-contour-edge") && evt.button === 0) {
      // an edge is not the background: no pan from it (a double-click or Alt+click inserts)
      evt.stopImmediatePropagation(); evt.preventDefault();
      root.focus({ preventScroll: true });
      if (evt.altKey) insertVertex(c, toImage(evt));
    }
  }, true);
  svg.addEventListener("dblclick", (evt) => {
    const t = evt.target;
    if (!clip || editingContour === null || !t.classList || !t.classList.contains("em-contour-edge")) return;
    const c = contourById(editingContour);
    if (c) { evt.preventDefault(); insertVertex(c, toImage(evt)); }
  });
  svg.addEventListener("pointermove", (evt) => {
    if (!vertexDrag) return;
    evt.stopImmediatePropagation();
    contourEdits[vertexDrag.id].polygon[vertexDrag.index] = clampImage(toImage(evt));
    vertexDrag.moved = true;
    if (!contourQueued) { contourQueued = true; requestAnimationFrame(redrawEditingShape); }
    requestVolumes();
  }, true);
  for (const type of ["pointerup", "pointercancel"]) {
    svg.addEventListener(type, (evt) => {
      if (!vertexDrag) return;
      evt.stopImmediatePropagation();
      if (!vertexDrag.moved) undoStack.pop();  // a click on a vertex only selects it
      vertexDrag = null;
      contourChanged();
    }, true);
  }

  // ------------------------------------------------------------------ calibration
  // The live readout while dragging comes from calibration.js (EchoCalibration, loaded before
  // this script), the port of echomeasure.ingest.calibration tested on the same table; the
  // value stored is recomputed on the server by that module.
  function regions() { return (clip && clip.calibration && clip.calibration.regions) || []; }
  function userCmPerPx() { return (clip && clip.calibration && clip.calibration.user_cm_per_px) || null; }
  function liveValue(m) {
    // -> {value, unit, text, error, baseline}
    const pts = m.points || [];
    if (m.mode === "2d" && pts.length === 2) {
      const got = EchoCalibration.calibratedValue(regions(), userCmPerPx(), "2d", pts);
      if (got.value === null) {
        const lengthPx = Math.hypot(pts[1][0] - pts[0][0], pts[1][1] - pts[0][1]);
        const px = { value: null, unit: "px", text: lengthPx.toFixed(1) + " px" };
        return got.error ? Object.assign(px, { error: got.error }) : px;
      }
      return { value: got.value, unit: got.unit, text: got.value.toFixed(2) + " " + got.unit };
    }
    if (m.mode === "doppler" && pts.length >= 1) {
      const p = pts[0];
      const got = EchoCalibration.calibratedValue(regions(), null, "doppler", pts);
      if (got.value === null) {
        const px = { value: null, unit: "px", text: "y " + p[1].toFixed(1) + " px" };
        return got.error ? Object.assign(px, { error: got.error }) : px;
      }
      let mS = got.value;
      // untouched proposal: its value is the mean over every beat of the strip, not this one
      // marker's beat; once the marker is moved the value is the marker's own velocity
      if (m.value !== null && m.value !== undefined && m.unit === "m/s" && samePoints(pts, m.saved_points)) mS = m.value;
      return { value: mS, unit: "m/s", text: mS.toFixed(2) + " m/s", baseline: got.baseline };
    }
    if (m.value !== null && m.value !== undefined) return { value: m.value, unit: m.unit, text: fmt(m.value, m.unit) + " " + (m.unit || "") };
    return { value: null, unit: m.unit, text: "—" };
  }
  function fmt(v, unit) {
    if (v === null || v === undefined) return "—";
    if (unit === "px") return v.toFixed(1);
    if (unit === "ratio") return v.toFixed(2);
    return v.toFixed(2);
  }

  // ------------------------------------------------------------------ helpers
  function samePoints(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    return a.every((p, i) => Math.abs(p[0] - b[i][0]) < 1e-6 && Math.abs(p[1] - b[i][1]) < 1e-6);
  }
  function isEdited(m) {
    if (m.status === "draft") return true;
    return !(samePoints(m.points, m.saved_points) && m.frame === m.saved_frame);
  }
  function isPending(m) {
    return m.status === "proposed" || m.status === "draft" || (isEdited(m) && m.status !== "rejected");
  }
  // "check": the model flagged it and no human has touched it yet
  function flagged(m) { return !!m.low_confidence && m.status === "proposed" && !isEdited(m); }
  function plausibleRange(m) { return (clip && clip.plausible && clip.plausible[m.name]) || null; }
  function isPlausible(m) {
    const range = plausibleRange(m);
    if (!range || m.status === "rejected") return true;
    const lv = liveValue(m);
    if (lv.value === null || lv.value === undefined || lv.unit !== range[2]) return true;
    return range[0] <= Math.abs(lv.value) && Math.abs(lv.value) <= range[1];
  }
  function colorOf(m) {
    if (flagged(m) || (m.status !== "rejected" && !isPlausible(m))) return LOW_COLOR;
    return COLORS[m.status] || COLORS.proposed;
  }
  function imageScale() {
    // image pixels per screen pixel: handles and labels keep their screen size at any zoom
    const ctm = svg.getScreenCTM();
    return ctm && ctm.a > 0 ? 1 / ctm.a : 1;
  }
  function toImage(evt) {
    const pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    const ctm = svg.getScreenCTM();
    if (!ctm) return [0, 0];
    const p = pt.matrixTransform(ctm.inverse());
    return [p.x, p.y];
  }
  function clampPoint(p) {
    const w = clip ? clip.width : 1, h = clip ? clip.height : 1;
    // No rounding: a 1 px nudge must move a point by exactly 1 px.
    return [clamp(p[0], -0.5, w - 0.5), clamp(p[1], -0.5, h - 0.5)];
  }
  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVGNS, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function setBanner(text, ms) {
    if (bannerTimer !== null) { clearTimeout(bannerTimer); bannerTimer = null; }
    banner.textContent = text || "";
    banner.classList.toggle("em-hidden", !text);
    if (text && ms) bannerTimer = setTimeout(() => setBanner(""), ms);
  }
  function isTextField(node) {
    if (!node) return false;
    if (node.isContentEditable || node.tagName === "TEXTAREA" || node.tagName === "SELECT") return true;
    return node.tagName === "INPUT" && !["range", "checkbox", "button"].includes(node.type);
  }

  // ------------------------------------------------------------------ time spent
  // Time counts only while the reviewer acts: the gaps between inputs in the viewer (each
  // capped at IDLE_MS) go to the measurement selected, and nothing counts before the first
  // input after a clip opens (a measurement selected automatically is not being reviewed).
  function activity(engage) {
    const now = performance.now();
    if (selected && engaged && lastActivity !== null) {
      const gap = now - lastActivity;
      if (gap <= IDLE_MS) spentMs[selected] = (spentMs[selected] || 0) + gap;
    }
    lastActivity = now;
    if (engage) engaged = true;
  }
  function secondsFor(name) { return Math.round((spentMs[name] || 0) / 100) / 10; }

  // ------------------------------------------------------------------ selection / frames
  function select(name, jump) {
    if (name !== selected) { selected = name; endpoint = 0; }
    const m = byName(name);
    if (jump && m && m.frame !== null && m.frame !== undefined && m.frame !== frame) showFrame(m.frame);
    render();
  }
  function showFrame(i) {
    if (!clip || !clip.frames || !clip.frames.length) return;
    const n = clip.frames.length;
    frame = ((i % n) + n) % n;
    frameImage.setAttribute("href", clip.frames[frame]);
    slider.value = String(frame);
    const ft = clip.frame_time_ms ? clip.frame_time_ms.toFixed(1) + " ms/frame" : "frame time unknown";
    let tag = "";
    if (frame === clip.ed_frame) tag = " · ED";
    else if (frame === clip.es_frame) tag = " · ES";
    frameInfo.textContent = "Frame " + frame + " (0–" + (n - 1) + ")" + tag + " · " + ft;
    drawOverlay();
  }
  function play() {
    if (!clip || !clip.frames || clip.frames.length < 2) return;
    const dt = clip.frame_time_ms && clip.frame_time_ms > 0 ? clip.frame_time_ms : 33.3;
    timer = setInterval(() => showFrame(frame + 1), dt);
    playBtn.textContent = "❚❚";
    playBtn.title = "Pause (Space)";
    playBtn.setAttribute("aria-label", "Pause");
  }
  function pause() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    playBtn.textContent = "▶";
    playBtn.title = "Play (Space)";
    playBtn.setAttribute("aria-label", "Play");
  }
  function togglePlay() { if (timer === null) play(); else pause(); }

  // ------------------------------------------------------------------ zoom, pan, window/level
  function zoomFactor() { return clip && view ? clip.width / view.w : 1; }
  function applyView() {
    if (!clip || !view) return;
    svg.setAttribute("viewBox", view.x + " " + view.y + " " + view.w + " " + view.h);
    zoomText.textContent = Math.round(zoomFactor() * 100) + "%";
    drawOverlay();
  }
  function clampView() {
    view.x = clamp(view.x, -0.5, -0.5 + clip.width - view.w);
    view.y = clamp(view.y, -0.5, -0.5 + clip.height - view.h);
  }
  function fitView() {
    if (!clip) return;
    view = { x: -0.5, y: -0.5, w: clip.width, h: clip.height };
    applyView();
  }
  function zoomAt(factor, cx, cy) {
    // zoom by `factor` keeping the image point (cx, cy) where it is on the screen
    if (!clip || !view) return;
    const z = clamp(zoomFactor() * factor, 1, MAX_ZOOM);
    const w = clip.width / z, h = clip.height / z;
    const rx = (cx - view.x) / view.w, ry = (cy - view.y) / view.h;
    view = { x: cx - rx * w, y: cy - ry * h, w: w, h: h };
    clampView();
    applyView();
  }
  function zoomCenter(factor) { if (view) zoomAt(factor, view.x + view.w / 2, view.y + view.h / 2); }
  function applyWL() {
    const slope = 1 / wl.width, intercept = 0.5 - wl.level / wl.width;
    for (const f of wlFuncs) { f.setAttribute("slope", slope); f.setAttribute("intercept", intercept); }
    const identity = Math.abs(wl.width - 1) < 1e-9 && Math.abs(wl.level - 0.5) < 1e-9;
    if (identity) frameImage.removeAttribute("filter"); else frameImage.setAttribute("filter", "url(#em-wl-filter)");
    wlText.textContent = "W/L " + Math.round(wl.width * 255) + "/" + Math.round(wl.level * 255);
    wlResetBtn.disabled = identity;
  }
  function resetWL() { wl = { width: 1, level: 0.5 }; applyWL(); }

  // ------------------------------------------------------------------ linked calipers
  function partnersOf(name, index) {
    if (!linkBox.checked) return [];
    const out = [];
    for (const [a, ai, b, bi] of LINKS) {
      let other = null, oi = null;
      if (a === name && ai === index) { other = b; oi = bi; }
      else if (b === name && bi === index) { other = a; oi = ai; }
      if (other === null) continue;
      const m = byName(other);
      if (!m || m.status === "rejected" || !m.points || m.points.length <= oi) continue;
      out.push({ name: other, index: oi, orig: copy(m.points[oi]) });
    }
    return out;
  }
  function moveLinked(partners, dx, dy) {
    for (const p of partners) {
      const m = byName(p.name);
      if (m) m.points[p.index] = clampPoint([p.orig[0] + dx, p.orig[1] + dy]);
    }
  }

  // ------------------------------------------------------------------ drawing
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; if (drag) renderDragging(); else render(); });
  }

  function placeLabels(labels, s) {
    // Greedy placement in priority order (selected first): each label takes the first spot
    // near its anchor that overlaps no label placed before it and stays inside the view;
    // a label moved away from its own spot gets a leader line to its caliper.
    if (!labels.length) return;
    const boxes = labels.map((l) => { try { return l.node.getBBox(); } catch (e) { return { width: 80 * s, height: 16 * s }; } });
    const placed = [];
    const vx0 = view ? view.x : 0, vy0 = view ? view.y : 0;
    const vx1 = view ? view.x + view.w : 1e9, vy1 = view ? view.y + view.h : 1e9;
    const pad = 2 * s;
    labels.forEach((l, i) => {
      const w = boxes[i].width + 2 * pad, h = boxes[i].height + pad;
      const gap = 10 * s;
      const preferLeft = clip && l.ax > vx0 + 0.72 * (vx1 - vx0);
      const sides = preferLeft ? [-1, 1] : [1, -1];
      let best = null;
      for (let k = 0; k < 24 && !best; k++) {
        const step = k === 0 ? 0 : (k % 2 ? 1 : -1) * Math.ceil(k / 2);
        for (const side of sides) {
          const x0 = side > 0 ? l.ax + gap : l.ax - gap - w;
          const y0 = l.ay - 6 * s - h + step * h;
          const box = { x0: x0, y0: y0, x1: x0 + w, y1: y0 + h };
          if (box.x0 < vx0 || box.x1 > vx1 || box.y0 < vy0 || box.y1 > vy1) continue;
          if (placed.some((b) => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1)) continue;
          best = { box: box, side: side, moved: k > 0 || side !== sides[0] };
          break;
        }
      }
      if (!best) { // no free spot in view: default spot
        const x0 = sides[0] > 0 ? l.ax + gap : l.ax - gap - w;
        best = { box: { x0: x0, y0: l.ay - 6 * s - h, x1: x0 + w, y1: l.ay - 6 * s }, side: sides[0], moved: false };
      }
      placed.push(best.box);
      const b = best.box;
      l.node.setAttribute("x", b.x0 + pad);
      l.node.setAttribute("y", b.y1 - pad - 0.2 * h);
      l.node.setAttribute("text-anchor", "start");
      if (best.moved) {
        const lx = best.side > 0 ? b.x0 : b.x1, ly = (b.y0 + b.y1) / 2;
        const leader = el("line", { x1: l.ax, y1: l.ay, x2: lx, y2: ly, stroke: l.color, "stroke-width": 1 * s,
          "stroke-opacity": 0.8, class: "em-leader", "data-name": l.name }, l.group);
        l.group.insertBefore(leader, l.node);
      }
    });
  }

  function drawOverlay() {
    while (overlay.firstChild) overlay.removeChild(overlay.firstChild);
    drawContours();
    if (!clip) return;
    const s = imageScale();
    const fontPx = LABEL_FONT_PX * s;
    // The selected measurement is drawn last, so its handles win where calipers share an
    // endpoint (LVIDd ends where LVPWd starts); its label is placed first.
    const order = items.filter((m) => m.name !== selected).concat(items.filter((m) => m.name === selected));
    const labels = [];
    for (const m of order) {
      if (!m.points || !m.points.length) continue;
      const isSel = m.name === selected;
      if (m.status === "rejected" && !isSel) continue;
      const onFrame = m.frame === frame || m.mode === "doppler";
      const color = colorOf(m);
      const g = el("g", {
        class: "em-caliper", "data-name": m.name, opacity: onFrame ? 1 : (isSel ? 0.55 : 0.28),
      }, overlay);
      const lv = liveValue(m);
      const label = m.short + " " + lv.text + (isEdited(m) && m.status !== "draft" ? " *" : "") +
        (flagged(m) ? " · check" : "") + (lv.error ? "  ⚠ " + lv.error : "");
      const dash = flagged(m) || m.status === "rejected" ? (6 * s) + " " + (4 * s) : "none";
      let anchor = null;
      if (m.mode === "2d" && m.points.length === 2) {
        const [p, qq] = m.points;
        el("line", { x1: p[0], y1: p[1], x2: qq[0], y2: qq[1], stroke: "#000", "stroke-opacity": 0.6,
          "stroke-width": (isSel ? 4.5 : 3.5) * s }, g);
        el("line", { x1: p[0], y1: p[1], x2: qq[0], y2: qq[1], stroke: color,
          "stroke-width": (isSel ? 2.2 : 1.5) * s, "stroke-dasharray": dash, class: "em-line" }, g);
        anchor = [(p[0] + qq[0]) / 2, (p[1] + qq[1]) / 2];
      } else if (m.mode === "doppler" && m.points.length === 1) {
        const [x, y] = m.points[0];
        if (lv.baseline !== undefined) {
          el("line", { x1: x, y1: lv.baseline, x2: x, y2: y, stroke: color, "stroke-opacity": 0.55,
            "stroke-width": 1 * s, "stroke-dasharray": (3 * s) + " " + (3 * s) }, g);
        }
        el("line", { x1: x - 14 * s, y1: y, x2: x + 14 * s, y2: y, stroke: color, "stroke-width": 1.6 * s,
          "stroke-dasharray": dash }, g);
        anchor = [x, y];
      }
      m.points.forEach((p, i) => {
        const hit = el("circle", { cx: p[0], cy: p[1], r: 11 * s, fill: "transparent", class: "em-handle",
          "data-name": m.name, "data-index": i }, g);
        hit.style.pointerEvents = m.status === "rejected" ? "none" : "all";
        el("circle", { cx: p[0], cy: p[1], r: (isSel ? 5 : 4) * s, fill: isSel ? color : "rgba(0,0,0,0.35)",
          stroke: color, "stroke-width": 1.6 * s, "pointer-events": "none", class: "em-point",
          "data-name": m.name, "data-index": i }, g);
        if (isSel && i === endpoint) {
          el("circle", { cx: p[0], cy: p[1], r: 9 * s, fill: "none", stroke: "#fff", "stroke-width": 1.2 * s,
            "pointer-events": "none" }, g);
        }
      });
      if (anchor) {
        const t = el("text", { x: anchor[0], y: anchor[1], fill: color, "font-size": fontPx,
          "stroke-width": 3 * s, class: "em-label", "data-name": m.name }, g);
        t.textContent = label;
        const entry = { node: t, group: g, ax: anchor[0], ay: anchor[1], color: color, name: m.name };
        if (isSel) labels.unshift(entry); else if (onFrame) labels.splice(countOnFrame(labels), 0, entry); else labels.push(entry);
      }
    }
    placeLabels(labels, s);
    const temp = placing ? placing.points : (calPoints || []);
    temp.forEach((p) => {
      el("circle", { cx: p[0], cy: p[1], r: 4 * s, fill: COLORS.draft, stroke: "#000", "stroke-width": 1 * s,
        class: "em-temp-point" }, overlay);
    });
    if (placing && placing.cursor) {
      const c = placing.cursor, r = 12 * s;
      const g = el("g", { class: "em-crosshair", role: "img", "aria-label": crosshairLabel(),
        "data-x": c[0], "data-y": c[1] }, overlay);
      for (const [w, color] of [[3.5 * s, "#000"], [1.5 * s, "#fff"]]) {
        el("line", { x1: c[0] - r, y1: c[1], x2: c[0] + r, y2: c[1], stroke: color, "stroke-width": w }, g);
        el("line", { x1: c[0], y1: c[1] - r, x2: c[0], y2: c[1] + r, stroke: color, "stroke-width": w }, g);
      }
    }
    if (calPoints && calPoints.length === 2) {
      el("line", { x1: calPoints[0][0], y1: calPoints[0][1], x2: calPoints[1][0], y2: calPoints[1][1],
        stroke: "#fff", "stroke-width": 1.5 * s, "stroke-dasharray": (5 * s) + " " + (3 * s), class: "em-cal-line" }, overlay);
    }
  }
  function countOnFrame(labels) {
    // labels of the selected and on-frame calipers come before the faint ones of other frames
    let n = 0;
    for (const l of labels) { const m = byName(l.name); if (m && (m.name === selected || m.frame === frame || m.mode === "doppler")) n++; }
    return n;
  }

  function confidenceCell(m) {
    if (m.confidence === null || m.confidence === undefined) return '<td class="em-conf" title="placed by a reviewer">—</td>';
    const num = m.confidence.toFixed(2);
    const thr = m.low_confidence_below === null || m.low_confidence_below === undefined ? "" : "; flagged below " + m.low_confidence_below.toFixed(2);
    if (flagged(m)) return '<td class="em-conf em-low" title="model confidence ' + num + thr + ': check this one">check</td>';
    const word = m.low_confidence && m.status !== "proposed" ? "reviewed" : (m.low_confidence ? "edited" : "ok");
    return '<td class="em-conf" title="model confidence ' + num + thr + '">' + word + "</td>";
  }

  function currentCell(m) {
    const lv = liveValue(m);
    const unit = lv.value !== null ? lv.unit : (m.status === "rejected" ? "" : (m.unit || ""));
    const cur = m.status === "rejected" ? "—" : (lv.value !== null ? fmt(lv.value, lv.unit) : (m.points && m.points.length ? lv.text.replace(/ px$/, "") : "—"));
    const edited = isEdited(m) && m.status !== "draft" && m.status !== "rejected";
    const range = plausibleRange(m);
    const implausible = !isPlausible(m);
    const title = implausible ? "outside the plausible range " + range[0] + "–" + range[1] + " " + range[2] : "current value";
    return '<td class="em-num em-current' + (edited ? " em-edited" : "") + (implausible ? " em-low" : "") + '" title="' + title + '">' +
      cur + (edited ? "*" : "") + (implausible ? "!" : "") + ' <span class="em-unit">' + unit + "</span></td>";
  }
  function renderDragging() {
    // while a handle moves only the overlay and the moving rows' values change: the full table
    // is rebuilt when the drag ends
    drawOverlay();
    if (!drag) return;
    for (const name of [drag.name].concat(drag.partners.map((p) => p.name))) {
      const cell = tbody.querySelector('tr[data-name="' + name + '"] .em-current');
      const m = byName(name);
      if (cell && m) cell.outerHTML = currentCell(m);
    }
  }

  function renderTable() {
    const first = clip && clip.first_frame_number ? clip.first_frame_number : 0;
    tbody.textContent = "";
    for (const m of items) {
      const tr = document.createElement("tr");
      tr.className = "em-row" + (m.name === selected ? " em-selected" : "");
      tr.dataset.name = m.name;
      const prop = m.proposed_value !== null && m.proposed_value !== undefined ? fmt(m.proposed_value, m.proposed_unit || m.unit) : "—";
      const frameTag = m.frame !== null && m.frame !== undefined ? ' <span class="em-frame-no">f' + (m.frame + first) + "</span>" : "";
      const cells = [
        '<td><span class="em-dot" style="background:' + colorOf(m) + '"></span></td>',
        '<td class="em-name" title="' + m.title + '">' + m.short + frameTag + "</td>",
        '<td class="em-num">' + prop + "</td>",
        currentCell(m),
        confidenceCell(m),
        '<td><span class="em-status em-s-' + m.status + '">' + m.status + "</span></td>",
        '<td class="em-actions"><button class="em-ok" data-act="accept" title="Accept (Enter)" aria-label="Accept ' + m.short + '">✓</button>' +
          '<button class="em-no" data-act="reject" title="Reject (Delete)" aria-label="Reject ' + m.short + '">✗</button></td>',
      ];
      tr.innerHTML = cells.join("");
      tbody.appendChild(tr);
    }
    const pending = items.filter(isPending);
    const eligible = pending.filter((m) => !flagged(m) && isPlausible(m));
    acceptAllBtn.disabled = !eligible.length;
    acceptAllBtn.textContent = eligible.length ? "Accept all (" + eligible.length + ")" : "Accept all";
    const reviewed = items.filter((m) => m.status !== "proposed" && m.status !== "draft").length;
    const toCheck = pending.length - eligible.length;
    const unsaved = items.filter((m) => isEdited(m) && m.status !== "rejected").length;
    let text = items.length ? reviewed + " of " + items.length + " reviewed" : "";
    if (toCheck) text += " · " + toCheck + " to check one by one";
    if (unsaved) text += " · " + unsaved + " unsaved";
    summary.textContent = text;
    // measurements that can be added: catalogue names of this clip's mode not shown yet
    const addable = (clip && clip.addable) || [];
    const current = addSelect.value;
    addSelect.textContent = "";
    for (const a of addable) {
      const existing = byName(a.name);
      if (existing && existing.status !== "rejected") continue;
      const opt = document.createElement("option");
      opt.value = a.name; opt.textContent = a.short;
      addSelect.appendChild(opt);
    }
    // keep the user's choice only while it is still an option (never a stale, blank value)
    const values = Array.from(addSelect.options).map((o) => o.value);
    addSelect.value = values.includes(current) ? current : (values[0] || "");
    addBtn.disabled = !values.length || !clip;
    addSelect.style.visibility = values.length ? "visible" : "hidden";
    const canCalibrate = !!clip && clip.kind === "2d" && !regions().length;
    calibrateBtn.disabled = !canCalibrate;
    calibrateBtn.title = canCalibrate ? "Draw a known length (e.g. the depth scale) and type it in cm"
      : "This clip is calibrated by its DICOM regions";
    calibrateBtn.style.display = clip && !regions().length ? "" : "none";
  }

  function render() {
    empty.classList.toggle("em-hidden", !!clip);
    drawOverlay();
    renderTable();
  }

  // ------------------------------------------------------------------ edits
  function pushUndo(m, partners) {
    undoStack.push({ type: "edit", name: m.name, points: copy(m.points), frame: m.frame,
      linked: (partners || []).map((p) => ({ name: p.name, index: p.index, point: copy(p.orig) })) });
    if (undoStack.length > 200) undoStack.shift();
  }
  function undo() {
    // a caliper save on its way puts its own entry on the undo stack when answered: wait for it
    if (caliperDecisionsBusy()) { whenDecided([clip.id + ":*"], undo); return; }
    const last = undoStack.pop();
    if (!last) { setBanner("Nothing to undo", 2000); return; }
    if (last.type === "contour") { undoContour(last); return; }
    if (last.type === "contour-save") { undoContourSave(last); return; }
    const m = byName(last.name);
    if (!m) return;
    if (last.type === "save") { undoSave(last, m); return; }
    m.points = last.points; m.frame = last.frame;
    for (const l of last.linked || []) { const o = byName(l.name); if (o && o.points && o.points.length > l.index) o.points[l.index] = l.point; }
    select(m.name, true);
  }
  function undoSave(entry, m) {
    // Reviews are append-only: undoing a save writes a new review that restores the
    // measurement as it stood before that save.
    const before = entry.before;
    if (before.status === "draft" || !m.proposal_id && before.status !== "rejected" && m.status === "added") {
      setBanner(m.short + " was added and saved; saved reviews stay in the history. Press Delete to reject it.", 6000);
      return;
    }
    if (before.status === "proposed" && m.status === "rejected") {
      // The rejection of a proposal never reviewed: it comes back to review, and the store says
      // so with a "reopened" review (an accept would record a decision never given, past the
      // check flag and the plausibility confirmation).  Undoing a correction restores the
      // proposal, as below.
      m.points = copy(before.points || []); m.frame = before.frame;
      m.saved_points = copy(before.points || []); m.saved_frame = before.frame;
      m.status = "proposed"; m.low_confidence = !!before.low_confidence;
      select(m.name, true);
      commit([Object.assign(review(m), { action: "reopen", points: [] })], true);
      setBanner("Undo: " + m.short + " is back to review (saved as reopened; the rejection stays in the history)", 8000);
      return;
    }
    select(m.name, true);
    if (before.status === "rejected") {
      commit([Object.assign(review(m), { action: "rejected", points: [] })], true);
      setBanner("Undo: " + m.short + " rejected again, as a new review (reviews are append-only)", 5000);
      return;
    }
    if (m.status !== "rejected" && samePoints(before.points, m.saved_points) && before.frame === m.saved_frame) {
      setBanner(m.short + " was saved as it was; saved reviews stay in the history. Edit it or press Delete to reject it.", 6000);
      return;
    }
    m.points = copy(before.points || []); m.frame = before.frame;
    commit([Object.assign(review(m), { action: "accept" })], true);
    setBanner("Undo: " + m.short + " restored and saved as a new review (the earlier one stays in the history)", 5000);
  }
  function nudge(dx, dy) {
    const m = byName(selected);
    if (!m || !m.points || !m.points.length || m.status === "rejected") return;
    const i = Math.min(endpoint, m.points.length - 1);
    const partners = m.mode === "2d" ? partnersOf(m.name, i) : [];
    pushUndo(m, partners);
    const before = m.points[i];
    m.points[i] = clampPoint([before[0] + dx, before[1] + dy]);
    moveLinked(partners, m.points[i][0] - before[0], m.points[i][1] - before[1]);
    if (m.mode === "2d") m.frame = frame;
    render();
  }

  function review(m) {
    return { name: m.name, frame: m.frame, points: copy(m.points || []), seconds: secondsFor(m.name),
      proposal_id: m.proposal_id === undefined ? null : m.proposal_id,
      // the state this decision was made on: refused if the store's latest review is another one
      seen_review_id: m.review_id === undefined ? null : m.review_id };
  }
  function seenReview(r, clipId) {
    // the state a caliper decision goes out on: its measurement as the page shows it when it is
    // sent, or (another clip open now) as the last answer about it returned
    if (!clip || clip.id !== clipId) return seenOnOtherClip(decisionKey(clipId, "caliper", r.name), r.seen_review_id);
    const m = byName(r.name);
    return m && m.review_id !== undefined ? m.review_id : r.seen_review_id;
  }
  function commit(reviews, isUndo) {
    if (!reviews.length || !clip) return;
    const clipId = clip.id;
    sendDecision(reviews.map((r) => decisionKey(clipId, "caliper", r.name)), () => trigger("commit", {
      clip_id: clipId, reviews: reviews.map((r) => Object.assign({}, r, { seen_review_id: seenReview(r, clipId) })),
      undo: !!isUndo,
    }));
    for (const r of reviews) spentMs[r.name] = 0;
  }
  function hideConfirm() { pendingConfirm = null; confirmBar.classList.add("em-hidden"); }
  function accept(name, confirmed) {
    const m = byName(name);
    if (!m) return;
    if (!confirmed && !isPlausible(m)) {
      // an impossible value is accepted only on its own, after a confirmation
      const lv = liveValue(m), range = plausibleRange(m);
      pendingConfirm = name;
      confirmText.textContent = m.short + " " + lv.text + " is outside the plausible range " + range[0] + "–" + range[1] +
        " " + range[2] + ". Accept it anyway?";
      confirmBar.classList.remove("em-hidden");
      select(name, true);
      return;
    }
    hideConfirm();
    const r = Object.assign(review(m), { action: m.status === "draft" ? "added" : "accept" });
    if (confirmed) r.confirmed = true;
    commit([r]);
  }
  function reject(name) {
    const m = byName(name);
    if (!m) return;
    hideConfirm();
    if (m.status === "draft") { // never saved: just drop it
      items = items.filter((x) => x !== m);
      selected = null;
      render();
      return;
    }
    commit([Object.assign(review(m), { action: "rejected", points: [] })]);
  }
  function acceptAll() {
    // Only what needs no second look: not flagged by the model, within the plausible range.
    const pending = items.filter(isPending);
    const todo = pending.filter((m) => !flagged(m) && isPlausible(m));
    const left = pending.filter((m) => !todo.includes(m));
    commit(todo.map((m) => Object.assign(review(m), { action: m.status === "draft" ? "added" : "accept" })));
    const why = (m) => m.short + (isPlausible(m) ? " (check)" : " (implausible)");
    setBanner("Accepted " + todo.length + (left.length ? "; " + left.length + " left to check one by one: " + left.map(why).join(", ") : ""), 8000);
    notes.textContent = left.length ? left.length + " left to check one by one: " + left.map(why).join(", ") : "";
  }
  function nextMeasurement(step) {
    // -> false past the last (or before the first) measurement: the Tab then moves the focus
    // on as usual (to the viewer's buttons, or out of the viewer), so the keys never trap it
    if (!items.length) return false;
    let i = items.findIndex((m) => m.name === selected);
    if (i >= 0 && (i + step < 0 || i + step >= items.length)) return false;
    i = i < 0 ? (step > 0 ? 0 : items.length - 1) : i + step;
    select(items[i].name, true);
    return true;
  }
  function startPlacing(name) {
    const spec = ((clip && clip.addable) || []).find((a) => a.name === name);
    if (!spec) return;
    pause();
    placing = { name: name, spec: spec, points: [], cursor: viewCentre() };
    svg.classList.add("em-placing");
    setBanner("Click " + spec.n_points + " point" + (spec.n_points > 1 ? "s" : "") + " for " + spec.short +
      ", or move the crosshair with the arrow keys and press Enter (Esc cancels)");
    root.focus({ preventScroll: true });
    render();
  }
  function startCalibrating() {
    if (!clip) return;
    pause();
    calPoints = null;
    calForm.classList.add("em-hidden");
    placing = { calibrate: true, spec: { n_points: 2, short: "a known length" }, points: [], cursor: viewCentre() };
    svg.classList.add("em-placing");
    setBanner("Click both ends of a known length, e.g. two marks of the depth scale, or move the crosshair " +
      "with the arrow keys and press Enter (Esc cancels)");
    root.focus({ preventScroll: true });
    render();
  }
  // Keyboard placement (Calibrate, + Add): a crosshair stands for the pointer; the arrow keys move
  // it (Shift: 10 px) and Enter places a point there, so placing needs no mouse.
  function viewCentre() {
    return clampPoint(view ? [view.x + view.w / 2, view.y + view.h / 2] : [0, 0]);
  }
  function placingKey(evt) {
    const k = evt.key, step = evt.shiftKey ? 10 : 1;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[k]) {
      const c = placing.cursor || viewCentre();
      placing.cursor = clampPoint([c[0] + moves[k][0], c[1] + moves[k][1]]);
      render();
      return true;
    }
    if (k === "Enter") { placePoint(placing.cursor || viewCentre()); return true; }
    return false;
  }
  function crosshairLabel() {
    const c = placing.cursor;
    return "crosshair for " + placing.spec.short + ", point " + (placing.points.length + 1) + " of " +
      placing.spec.n_points + ", at x " + Math.round(c[0]) + ", y " + Math.round(c[1]) +
      " px: arrow keys move it, Enter places the point, Esc cancels";
  }
  function cancelPlacing() {
    placing = null;
    calPoints = null;
    calForm.classList.add("em-hidden");
    svg.classList.remove("em-placing");
    setBanner("");
    render();
  }
  function placePoint(p) {
    placing.points.push(clampPoint(p));
    placing.cursor = clampPoint(p);  // the next point starts from this one
    if (placing.points.length < placing.spec.n_points) { render(); return; }
    svg.classList.remove("em-placing");
    if (placing.calibrate) {
      calPoints = placing.points;
      placing = null;
      const px = Math.hypot(calPoints[1][0] - calPoints[0][0], calPoints[1][1] - calPoints[0][1]);
      calFormText.textContent = "Line drawn: " + px.toFixed(1) + " px. Its length:";
      calForm.classList.remove("em-hidden");
      setBanner("Type the length of the line in cm, then Set scale");
      calCm.focus();
      render();
      return;
    }
    const spec = placing.spec;
    items = items.filter((m) => m.name !== spec.name);
    items.push({ name: spec.name, short: spec.short, title: spec.title, mode: spec.mode, unit: spec.unit,
      n_points: spec.n_points, frame: frame, points: placing.points, saved_points: null, saved_frame: null,
      proposed_value: null, proposed_unit: null, value: null, confidence: null, low_confidence: false,
      status: "draft", proposal_id: null });
    sortItems();
    placing = null;
    setBanner("Drag to adjust, then Enter or ✓ to save " + spec.short, 2500);
    select(spec.name, false);
  }
  function sortItems() {
    const order = ((clip && clip.addable) || []).map((a) => a.name);
    items.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  }
  function submitCalibration() {
    const cm = Number(calCm.value);
    if (!calPoints || !(cm > 0) || !isFinite(cm)) { setBanner("Type the length in cm (a number above 0)", 4000); return; }
    trigger("calibrate", { clip_id: clip.id, points: calPoints, length_cm: cm });
    calPoints = null;
    calForm.classList.add("em-hidden");
    setBanner("Setting the scale…", 3000);
    render();
  }

  // ------------------------------------------------------------------ pointer events
  function capture(evt) {
    try { svg.setPointerCapture(evt.pointerId); } catch (e) { /* pointer already gone */ }
  }
  svg.addEventListener("contextmenu", (evt) => evt.preventDefault());
  // The frame on screen, for tests and timing: "<clip id>:<frame>" once its image has loaded.
  frameImage.addEventListener("load", () => { if (clip) root.dataset.frameShown = clip.id + ":" + frame; });
  svg.addEventListener("pointerdown", (evt) => {
    if (!clip) return;
    activity(true);
    root.focus({ preventScroll: true });
    if (timer !== null) pause();
    const p = toImage(evt);
    if (evt.button === 2) { // right-drag: window/level, as in OHIF
      wlDrag = { x: evt.clientX, y: evt.clientY, width: wl.width, level: wl.level };
      capture(evt);
      evt.preventDefault();
      return;
    }
    if (placing && evt.button === 0) { placePoint(p); evt.preventDefault(); return; }
    const target = evt.button === 0 && evt.target.closest ? evt.target.closest(".em-handle") : null;
    if (target) {
      const name = target.getAttribute("data-name");
      const index = Number(target.getAttribute("data-index"));
      const m = byName(name);
      if (!m) return;
      selected = name;
      endpoint = index;
      const partners = m.mode === "2d" ? partnersOf(name, index) : [];
      pushUndo(m, partners);
      drag = { name: name, index: index, startImg: p, orig: copy(m.points[index]), partners: partners, moved: false };
      capture(evt);
      evt.preventDefault();
      render();
      return;
    }
    const cal = evt.button === 0 && evt.target.closest ? evt.target.closest(".em-caliper") : null;
    if (cal) { select(cal.getAttribute("data-name"), false); return; }
    if (evt.button === 0 || evt.button === 1) { // drag the background: pan
      pan = { x: evt.clientX, y: evt.clientY, view: Object.assign({}, view) };
      capture(evt);
      svg.classList.add("em-panning");
      evt.preventDefault();
    }
  });
  svg.addEventListener("pointermove", (evt) => {
    activity(false);
    if (wlDrag) {
      wl.width = clamp(wlDrag.width * Math.exp((evt.clientX - wlDrag.x) / 150), 0.05, 4);
      wl.level = clamp(wlDrag.level + (evt.clientY - wlDrag.y) / 300, -0.5, 1.5);
      applyWL();
      return;
    }
    if (pan) {
      const a = svg.getScreenCTM().a;
      view.x = pan.view.x - (evt.clientX - pan.x) / a;
      view.y = pan.view.y - (evt.clientY - pan.y) / a;
      clampView();
      svg.setAttribute("viewBox", view.x + " " + view.y + " " + view.w + " " + view.h);
      return;
    }
    if (!drag) return;
    const m = byName(drag.name);
    if (!m) return;
    const p = toImage(evt);
    m.points[drag.index] = clampPoint([drag.orig[0] + (p[0] - drag.startImg[0]), drag.orig[1] + (p[1] - drag.startImg[1])]);
    moveLinked(drag.partners, m.points[drag.index][0] - drag.orig[0], m.points[drag.index][1] - drag.orig[1]);
    if (m.mode === "2d") m.frame = frame; // a caliper dragged on another frame moves to the frame shown
    drag.moved = true;
    scheduleRender();
  });
  function endDrag(evt) {
    try { svg.releasePointerCapture(evt.pointerId); } catch (e) { /* already released */ }
    if (wlDrag) { wlDrag = null; return; }
    if (pan) { pan = null; svg.classList.remove("em-panning"); drawOverlay(); return; }
    if (!drag) return;
    if (!drag.moved) undoStack.pop();
    drag = null;
    render();
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("wheel", (evt) => {
    if (!clip) return;
    evt.preventDefault(); // trackpad pinch arrives as a wheel event with ctrlKey
    activity(true);
    const p = toImage(evt);
    zoomAt(Math.exp(-evt.deltaY * (evt.ctrlKey ? 0.01 : 0.0015)), p[0], p[1]);
  }, { passive: false });

  // ------------------------------------------------------------------ keyboard
  function ownKeys(evt) {
    // A focused button, checkbox or slider of the viewer keeps the keys that operate it (Tab
    // moves on, Enter and Space press it, arrows move a slider); the viewer's other keys work.
    const t = evt.target;
    if (t === root || !t.closest || !t.closest("button, input, select, a[href]")) return false;
    if (evt.key === "Tab" || evt.key === "Enter" || evt.key === " ") return true;
    return t.tagName === "INPUT" && t.type === "range" && /^(Arrow|Home$|End$|Page)/.test(evt.key);
  }
  // A mouse click on a button gives the keys back to the viewer (Enter then accepts, as before
  // the click); a button pressed from the keyboard keeps the focus, so Tab goes on from it.
  root.addEventListener("click", (evt) => {
    const b = evt.target.closest ? evt.target.closest("button, input[type=checkbox]") : null;
    // (a button redrawn by its own click is gone: the focus comes back here, not to the page)
    if (b && (evt.detail > 0 || !b.isConnected)) root.focus({ preventScroll: true });
  });
  root.addEventListener("keydown", (evt) => {
    if (isTextField(evt.target)) {
      if (evt.target === calCm && evt.key === "Enter") { submitCalibration(); evt.preventDefault(); }
      else if (evt.target === calCm && evt.key === "Escape") { cancelPlacing(); root.focus({ preventScroll: true }); }
      return;
    }
    if (ownKeys(evt)) return;
    activity(true);
    const k = evt.key;
    const step = evt.shiftKey ? 10 : 1;
    let handled = true;
    if ((evt.ctrlKey || evt.metaKey) && (k === "z" || k === "Z")) undo();
    else if (evt.ctrlKey || evt.metaKey || evt.altKey) handled = false;
    else if (placing && placingKey(evt)) handled = true;  // placing points: the crosshair takes the arrows and Enter
    else if (!placing && !calPoints && contourKey(evt)) handled = true;  // a selected contour takes the keys first
    else if (k === "c" || k === "C") selectContour(evt.shiftKey ? -1 : 1);
    else if (k === "d" || k === "D") jumpToPhase("ed");
    else if (k === "s" || k === "S") jumpToPhase("es");
    else if (k === "ArrowLeft") nudge(-step, 0);
    else if (k === "ArrowRight") nudge(step, 0);
    else if (k === "ArrowUp") nudge(0, -step);
    else if (k === "ArrowDown") nudge(0, step);
    else if (k === "Enter") { if (selected && pendingConfirm !== selected) accept(selected); }
    else if (k === "Delete" || k === "Backspace") { if (selected) reject(selected); }
    else if (k === "Tab") handled = nextMeasurement(evt.shiftKey ? -1 : 1);
    else if (k === "Escape") { if (placing || calPoints) cancelPlacing(); else if (pendingConfirm) hideConfirm(); else { selected = null; render(); } }
    else if (k === " ") togglePlay();
    else if (k === "1" || k === "2") { const m = byName(selected); if (m && m.points && m.points.length > Number(k) - 1) { endpoint = Number(k) - 1; render(); } }
    else if (k === ",") { pause(); showFrame(frame - 1); }
    else if (k === ".") { pause(); showFrame(frame + 1); }
    else if (k === "+" || k === "=") zoomCenter(ZOOM_STEP);
    else if (k === "-" || k === "_") zoomCenter(1 / ZOOM_STEP);
    else if (k === "f" || k === "F" || k === "0") fitView();
    else if (k === "r" || k === "R") resetWL();
    else if (k === "n" || k === "N") { if (clip) trigger("next_clip", { clip_id: clip.id }); }
    else handled = false;
    if (handled) { evt.preventDefault(); evt.stopPropagation(); }
  });
  root.addEventListener("focusin", () => { focusText.textContent = "keys active"; focusText.classList.add("em-active"); });
  root.addEventListener("focusout", (evt) => {
    if (evt.relatedTarget && root.contains(evt.relatedTarget)) return;
    focusText.textContent = "click the image to use the keys"; focusText.classList.remove("em-active");
  });

  // ------------------------------------------------------------------ controls
  playBtn.addEventListener("click", () => togglePlay());
  slider.addEventListener("input", () => { pause(); showFrame(Number(slider.value)); });
  function jumpToPhase(phase) {
    const target = clip ? clip[phase + "_frame"] : null;
    pause();
    if (target !== null && target !== undefined) showFrame(target);
    else setBanner("This clip has no " + (phase === "ed" ? "end-diastolic" : "end-systolic") + " frame", 2500);
  }
  edBtn.addEventListener("click", () => { jumpToPhase("ed"); root.focus({ preventScroll: true }); });
  esBtn.addEventListener("click", () => { jumpToPhase("es"); root.focus({ preventScroll: true }); });
  acceptAllBtn.addEventListener("click", () => { activity(true); acceptAll(); });
  addBtn.addEventListener("click", () => { if (addSelect.value) startPlacing(addSelect.value); });
  fitBtn.addEventListener("click", () => fitView());
  zoomInBtn.addEventListener("click", () => zoomCenter(ZOOM_STEP));
  zoomOutBtn.addEventListener("click", () => zoomCenter(1 / ZOOM_STEP));
  wlResetBtn.addEventListener("click", () => resetWL());
  linkBox.addEventListener("change", () => root.focus({ preventScroll: true }));
  calibrateBtn.addEventListener("click", () => startCalibrating());
  calSet.addEventListener("click", () => submitCalibration());
  calCancel.addEventListener("click", () => cancelPlacing());
  confirmYes.addEventListener("click", () => { activity(true); if (pendingConfirm) accept(pendingConfirm, true); root.focus({ preventScroll: true }); });
  confirmNo.addEventListener("click", () => { hideConfirm(); root.focus({ preventScroll: true }); });
  tbody.addEventListener("click", (evt) => {
    const tr = evt.target.closest("tr");
    if (!tr) return;
    activity(true);
    const name = tr.dataset.name;
    const btn = evt.target.closest("button");
    if (btn && btn.dataset.act === "accept") accept(name);
    else if (btn && btn.dataset.act === "reject") reject(name);
    else select(name, true);
    root.focus({ preventScroll: true });
  });
  window.addEventListener("resize", () => drawOverlay());

  // ------------------------------------------------------------------ drafts (unsaved work per clip)
  function stashDraft() {
    if (!clip) return;
    const edits = items.filter((m) => m.status === "draft" || (m.status !== "rejected" && isEdited(m))).map((m) => ({
      name: m.name, points: copy(m.points), frame: m.frame, base_points: copy(m.saved_points), base_frame: m.saved_frame,
      item: m.status === "draft" ? copy(m) : null,
    }));
    // unsaved contour edits, each with the polygon it was made on
    const contourDrafts = Object.keys(contourEdits).filter((id) => !contourEdits[id].saved).map((id) => {
      const c = contourById(Number(id));
      return c ? { id: c.id, base: copy(contourEdits[id].base || c.polygon), polygon: copy(contourEdits[id].polygon) } : null;
    }).filter((d) => d !== null);
    if (edits.length || undoStack.length || contourDrafts.length) {
      drafts[clip.id] = { edits: edits, undo: undoStack, contours: contourDrafts };
    } else delete drafts[clip.id];
  }
  // Unsaved work also survives a reload of the page: kept in this tab's sessionStorage (clip
  // ids, measurement names and pixel points only) when the page goes, read back when it loads.
  const DRAFTS_KEY = "echomeasure-unsaved-drafts";
  function keepDraftsForReload() {
    stashDraft();
    const out = {};
    for (const id in drafts) {
      const d = drafts[id];
      if ((d.edits && d.edits.length) || (d.contours && d.contours.length)) out[id] = { edits: d.edits, contours: d.contours || [] };
    }
    try {
      if (Object.keys(out).length) sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(out));
      else sessionStorage.removeItem(DRAFTS_KEY);
    } catch (e) { /* storage off or full: the drafts go with the page, as without it */ }
  }
  function draftsFromLastPage() {
    try {
      // (left in place: the page rewrites it when it goes, restored drafts no longer in it)
      const kept = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || "{}");
      for (const id in kept) if (!drafts[id]) drafts[id] = { edits: kept[id].edits || [], undo: [], contours: kept[id].contours || [] };
    } catch (e) { /* nothing kept, or unreadable: start clean */ }
  }
  window.addEventListener("pagehide", keepDraftsForReload);
  draftsFromLastPage();
  function restoreDraft() {
    const d = clip ? drafts[clip.id] : null;
    if (!d) return 0;
    delete drafts[clip.id];
    let n = 0;
    for (const e of d.edits) {
      const m = byName(e.name);
      if (e.item) {
        if (!m || m.status === "rejected") { items = items.filter((x) => x.name !== e.name); items.push(e.item); n++; }
        continue;
      }
      // an edit is restored only onto the state it was made on (not if someone saved since)
      if (!m || !samePoints(m.saved_points, e.base_points) || m.saved_frame !== e.base_frame) continue;
      m.points = e.points; m.frame = e.frame; n++;
    }
    for (const e of d.contours || []) {
      const c = contourById(e.id);
      // restored only onto the contour it was made on (not if someone reviewed it since)
      if (!c || c.status === "rejected" || !samePoints(c.polygon, e.base)) continue;
      contourEdits[e.id] = { polygon: e.polygon, saved: false, base: e.base }; n++;
      if (VOLUME_STRUCTURES.includes(c.structure)) setTimeout(requestVolumes, 0);
    }
    sortItems();
    undoStack = d.undo || [];
    return n;
  }

  // ------------------------------------------------------------------ server -> browser
  function focusViewer() {
    // keys work right after a clip opens, unless the user is typing somewhere
    if (!isTextField(document.activeElement)) root.focus({ preventScroll: true });
  }
  function bringIntoView() {
    // a clip opened from a list above the viewer (a phone's single column) shows where it is
    const r = svg.getBoundingClientRect();
    const visible = Math.min(r.bottom, window.innerHeight) - Math.max(r.top, 0);
    if (visible < r.height / 2) root.scrollIntoView({ block: "start" });
  }
  function loadClip(next) {
    pause();
    clip = next && next.frames ? next : null;
    leaveClipDecisions(clip ? clip.id : null);
    contourStatus = {}; contourEdits = {}; contourReviewIds = {}; editingContour = null; vertexDrag = null; selectedVertex = 0;
    volumes = clip && clip.volumes ? copy(clip.volumes) : null;
    volumeRequest = { busy: false, again: false, seq: volumeRequest.seq + 1 };
    preloaded = [];
    undoStack = [];
    placing = null;
    calPoints = null;
    calForm.classList.add("em-hidden");
    hideConfirm();
    notes.textContent = "";
    setBanner("");
    const enabled = !!clip;
    for (const b of [fitBtn, zoomInBtn, zoomOutBtn]) b.disabled = !enabled;
    if (!clip) { frameImage.removeAttribute("href"); view = null; render(); return; }
    svg.style.aspectRatio = clip.width + " / " + clip.height;
    frameImage.setAttribute("x", -0.5); frameImage.setAttribute("y", -0.5);
    frameImage.setAttribute("width", clip.width); frameImage.setAttribute("height", clip.height);
    view = { x: -0.5, y: -0.5, w: clip.width, h: clip.height };
    svg.setAttribute("viewBox", view.x + " " + view.y + " " + view.w + " " + view.h);
    zoomText.textContent = "100%";
    resetWL();
    for (const url of clip.frames) { const im = new Image(); im.src = url; preloaded.push(im); }
    slider.max = String(Math.max(clip.frames.length - 1, 0));
    slider.disabled = clip.frames.length < 2;
    playBtn.disabled = clip.frames.length < 2;
    edBtn.disabled = clip.ed_frame === null || clip.ed_frame === undefined;
    esBtn.disabled = clip.es_frame === null || clip.es_frame === undefined;
  }

  function applyValue(value, fresh) {
    const incoming = (value && value.measurements) || [];
    const committed = (value && value.committed) || [];
    const undone = new Set((value && value.undone) || []);
    let restored = 0;
    if (fresh) {
      items = copy(incoming);
      spentMs = {}; selected = null; engaged = false; lastActivity = null;
      restored = restoreDraft();
    } else {
      // Only the measurements the server just saved are replaced; local edits elsewhere stay.
      const saved = new Set(committed);
      const merged = [];
      for (const m of incoming) {
        const local = byName(m.name);
        if (saved.has(m.name) && local && !undone.has(m.name)) {
          // remember how it stood before this save: Ctrl+Z writes a review that restores it
          undoStack.push({ type: "save", name: m.name,
            before: { points: copy(local.saved_points), frame: local.saved_frame, status: local.status,
              low_confidence: !!local.low_confidence } });
        }
        merged.push(saved.has(m.name) || !local ? copy(m) : local);
      }
      for (const local of items) if (local.status === "draft" && !merged.some((m) => m.name === local.name)) merged.push(local);
      items = merged;
    }
    if (value && value.notice) setBanner(value.notice + (notes.textContent ? " · " + notes.textContent : ""), 8000);
    else if (committed.length && banner.textContent.startsWith("Not saved")) setBanner("");  // a later save succeeded
    if (fresh) {
      const first = items.find((m) => flagged(m)) || items.find((m) => m.status === "proposed") || items[0];
      const start = openingFrame(value, first);
      if (first) selected = first.name;
      showFrame(start);
      if (restored) setBanner(restored + " unsaved edit" + (restored > 1 ? "s" : "") + " kept from before (not saved yet)", 6000);
    } else if (selected && !byName(selected)) {
      selected = null;
    } else if (selected && committed.includes(selected) && !undone.has(selected)) {
      // The reviewer just saved the selected one: move on to the next one still to review.
      const next = items.find((m) => m.status === "proposed" || m.status === "draft");
      if (next) { select(next.name, true); return; }
    }
    render();
  }

  function openingFrame(value, first) {
    if (value && value.frame !== undefined && value.frame !== null) return value.frame;
    if (first && first.frame !== null && first.frame !== undefined) return first.frame;
    // no measurement (an apical clip): the frame of its contours, ED first, not an empty frame 0
    const contours = (clip && clip.contours) || [];
    if (contours.some((c) => c.frame === clip.ed_frame)) return clip.ed_frame;
    return contours.length ? contours[0].frame : 0;
  }

  let lastClipId = null;
  let lastClipNonce;  // the nonce of the clip prop last seen
  function sync() {
    const c = props.clip;
    const newId = c && c.frames ? c.id + ":" + (c.frames[0] || "") : null;
    const v = props.value;
    // A clip switch updates two props, one watch call each: act once both name the same clip
    // (also for the first clip of the page, whose value names none before it arrives: acting
    // then would use up a kept draft on a clip without its measurements yet).
    if (c && c.frames && (!v || v.clip_id !== c.id)) { otherThanShownAnswers(v); return; }
    const fresh = newId !== lastClipId;
    const reload = fresh || !!(v && v.reload);
    if (reload) stashDraft();           // unsaved work survives switching clips
    // a new description of the clip (its nonce): a value alone (a save) leaves the page's contour decisions as they are
    const described = !(c && c.nonce !== undefined && c.nonce === lastClipNonce);
    lastClipNonce = c ? c.nonce : undefined;
    if (fresh) { loadClip(c); lastClipId = newId; if (clip) { focusViewer(); bringIntoView(); } }
    else if (c && c.frames && described) {  // same clip, new description (e.g. a user calibration, a refused contour review)
      clip = c; contourStatus = {}; contourEdits = {}; contourReviewIds = {}; vertexDrag = null; dropDecisions(c.id);
      volumes = clip.volumes ? copy(clip.volumes) : null;
    }
    applyValue(v, reload);
    applyAnswers(v);
  }
  let answersNonce = null;  // the value whose answers to decisions were applied
  function applyAnswers(v) {
    // once per server value (a later clip prop change runs sync again with the same value)
    if (!v || !clip || v.nonce === answersNonce) return;
    answersNonce = v.nonce;
    applyContourAnswers(v);
    // caliper decisions answered (saved, refused or not saved): the ones waiting on them go out,
    // made on the measurements this value carries (applyValue took them in)
    const stale = v.stale || [];
    for (const name of v.answered || []) decisionAnswered(decisionKey(clip.id, "caliper", name), stale.includes(name));
  }
  function applyContourAnswers(v) {
    // a decision saved: the next one on that contour is made on its new review
    for (const r of v.contour_reviews || []) {
      contourReviewIds[r.id] = r.review_id; decisionAnswered(decisionKey(clip.id, "contour", r.id), false);
    }
    // a decision refused as stale: that contour as it stands now, local edits, undo and decisions
    // waiting on it dropped (they were made on the state the store no longer has)
    const reloaded = v.contours_reloaded || [];
    if (!reloaded.length) return;
    const shapes = (clip.contours || []).slice();  // the clip prop itself stays as the server sent it
    for (const fresh of reloaded) {
      const i = shapes.findIndex((k) => k.id === fresh.id);
      if (i >= 0) shapes[i] = fresh; else shapes.push(fresh);
      delete contourStatus[fresh.id]; delete contourEdits[fresh.id]; delete contourReviewIds[fresh.id];
      undoStack = undoStack.filter((u) => !((u.type === "contour" || u.type === "contour-save") && u.id === fresh.id));
    }
    clip = Object.assign({}, clip, { contours: shapes });
    contourChanged();
    for (const fresh of reloaded) decisionAnswered(decisionKey(clip.id, "contour", fresh.id), true);
  }
  // Every prop: naming the clip prop in quotes here would make gr.HTML treat it as an event name.
  watch(Object.keys(props), () => sync());
  sync();
})();
