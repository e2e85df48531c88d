// Caliper viewer (runs as gr.HTML js_on_load: element, trigger, props, server, upload, watch).
//
// The HTML template is static; this script owns the DOM below it.  Server -> browser: the
// `value` prop (measurements, statuses) and the `clip` prop (frame URLs, size, frame time,
// calibration).  Browser -> server: only the explicit custom event `commit` (reviews to save).
// Nothing is sent while dragging or playing; frames are preloaded and played locally.
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const root = element.querySelector(".em-viewer");
  const svg = element.querySelector(".em-svg");
  const frameImage = element.querySelector(".em-frame");
  const overlay = element.querySelector(".em-overlay");
  const empty = element.querySelector(".em-empty");
  const banner = element.querySelector(".em-banner");
  const playBtn = element.querySelector(".em-play");
  const slider = element.querySelector(".em-slider");
  const frameInfo = element.querySelector(".em-frameinfo");
  const edBtn = element.querySelector(".em-ed");
  const esBtn = element.querySelector(".em-es");
  const tbody = element.querySelector(".em-tbody");
  const acceptAllBtn = element.querySelector(".em-accept-all");
  const addSelect = element.querySelector(".em-add-name");
  const addBtn = element.querySelector(".em-add");
  const summary = element.querySelector(".em-summary");

  const COLORS = {
    proposed: "#f5c242", accepted: "#3ddc84", corrected: "#4fc3f7",
    rejected: "#ff6b6b", added: "#b388ff", draft: "#e6ebf0",
  };
  const LOW_COLOR = "#ff9f43";

  // ------------------------------------------------------------------ state
  let clip = null;          // the `clip` prop
  let items = [];           // measurements (deep copies of value.measurements, edited locally)
  let selected = null;      // name of the selected measurement
  let endpoint = 0;         // index of the selected endpoint of the selected measurement
  let frame = 0;            // frame shown
  let timer = null;         // cine interval
  let placing = null;       // {name, points: []} while the user places a new measurement
  let undoStack = [];       // [{name, points, frame}] states before each edit
  let drag = null;          // {name, index, startImg, orig}
  let spentMs = {};         // name -> milliseconds spent with the measurement selected
  let selectedSince = null; // performance.now() when the current selection started
  let preloaded = [];

  const copy = (o) => JSON.parse(JSON.stringify(o));
  const byName = (name) => items.find((m) => m.name === name) || null;

  // ------------------------------------------------------------------ calibration
  // Mirrors echomeasure.ingest.calibration (distance_cm / velocity_m_s / physical_value); the
  // value stored is recomputed on the server by that module.
  //  2D: the regions containing both points, keeping 2D regions in cm (units 3/3), preferring
  //      imaging data types (1, 2, 15), then tissue (1), then the smallest box;
  //      cm = hypot(dx * |deltaX|, dy * |deltaY|).  No regions: the user's cm/px, else pixels.
  //  Doppler: the spectral regions (format 3) containing the point with Y in cm/s (units 7), a
  //      velocity scale (flags bit 2 clear) and deltaY != 0, the smallest box;
  //      v = refPhysY + (y - (y0 + refY0)) * deltaY cm/s, shown as |v| in m/s.
  const IMAGING_TYPES = [1, 2, 15];
  function regions() { return (clip && clip.calibration && clip.calibration.regions) || []; }
  function contains(r, p) { return r.x0 <= p[0] && p[0] <= r.x1 && r.y0 <= p[1] && p[1] <= r.y1; }
  function area(r) { return (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1); }
  function spectralOk(r) { return r.spatial_format === 3 && !(r.flags & 4) && r.units_y === 7 && r.delta_y !== 0; }

  function labelSide(x, gap) {
    // a label near the right edge goes to the left of its point so that it stays readable
    if (!clip || x < 0.72 * clip.width) return {};
    return { x: x - gap, "text-anchor": "end" };
  }

  function liveValue(m) {
    // -> {value, unit, text, error, baseline}
    const pts = m.points || [];
    const regs = regions();
    if (m.mode === "2d" && pts.length === 2) {
      const [p, q] = pts;
      const dx = q[0] - p[0], dy = q[1] - p[1];
      const lengthPx = Math.hypot(dx, dy);
      const px = { value: null, unit: "px", text: lengthPx.toFixed(1) + " px" };
      if (!regs.length) {
        const scale = clip && clip.calibration && clip.calibration.user_cm_per_px;
        if (scale) { const cm = lengthPx * scale; return { value: cm, unit: "cm", text: cm.toFixed(2) + " cm" }; }
        return px;
      }
      if (!regs.some((r) => contains(r, p)) || !regs.some((r) => contains(r, q))) return Object.assign(px, { error: "outside the image sector" });
      const common = regs.filter((r) => contains(r, p) && contains(r, q));
      if (!common.length) return Object.assign(px, { error: "points in two regions" });
      const usable = common.filter((r) => r.spatial_format === 1 && r.units_x === 3 && r.units_y === 3);
      if (!usable.length) return Object.assign(px, { error: "region not 2D in cm" });
      const key = (r) => [IMAGING_TYPES.includes(r.data_type) ? 0 : 1, r.data_type === 1 ? 0 : 1, area(r)];
      usable.sort((a, b) => { const ka = key(a), kb = key(b); for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i]; return 0; });
      const r = usable[0];
      const cm = Math.hypot(dx * Math.abs(r.delta_x), dy * Math.abs(r.delta_y));
      return { value: cm, unit: "cm", text: cm.toFixed(2) + " cm" };
    }
    if (m.mode === "doppler" && pts.length >= 1) {
      const p = pts[0];
      const px = { value: null, unit: "px", text: "y " + p[1].toFixed(1) + " px" };
      if (!regs.length) return px;
      const good = regs.filter((r) => contains(r, p) && spectralOk(r)).sort((a, b) => area(a) - area(b));
      if (!good.length) return Object.assign(px, { error: "outside the spectral strip" });
      const r = good[0];
      const baseline = r.y0 + (r.ref_y0 === null || r.ref_y0 === undefined ? 0 : r.ref_y0);
      const cmS = (r.ref_phys_y || 0) + (p[1] - baseline) * r.delta_y;
      let mS = Math.abs(cmS) / 100;
      // untouched proposal: its value is the mean over every beat of the strip, not this one
      // marker's beat; once the marker is moved the value is the marker's own velocity
      if (m.value !== null && m.value !== undefined && m.unit === "m/s" && samePoints(pts, m.saved_points)) mS = m.value;
      return { value: mS, unit: "m/s", text: mS.toFixed(2) + " m/s", baseline: baseline };
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
  function displayStatus(m) { return m.status; }
  function colorOf(m) {
    if (m.status === "proposed" && m.low_confidence) return LOW_COLOR;
    return COLORS[m.status] || COLORS.proposed;
  }
  function imageScale() {
    // image pixels per screen pixel, to keep handles a constant size on screen
    if (!clip) return 1;
    const box = svg.getBoundingClientRect();
    return box.width > 0 ? clip.width / box.width : 1;
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
    return [Math.min(Math.max(p[0], -0.5), w - 0.5), Math.min(Math.max(p[1], -0.5), h - 0.5)];
  }
  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVGNS, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function setBanner(text) {
    banner.textContent = text || "";
    banner.classList.toggle("em-hidden", !text);
  }

  // ------------------------------------------------------------------ time spent
  function stopClock() {
    if (selected && selectedSince !== null) {
      spentMs[selected] = (spentMs[selected] || 0) + (performance.now() - selectedSince);
    }
    selectedSince = null;
  }
  function startClock() { selectedSince = selected ? performance.now() : null; }
  function secondsFor(name) {
    let ms = spentMs[name] || 0;
    if (name === selected && selectedSince !== null) ms += performance.now() - selectedSince;
    return Math.round(ms / 100) / 10;
  }

  // ------------------------------------------------------------------ selection / frames
  function select(name, jump) {
    if (name !== selected) {
      stopClock();
      selected = name;
      endpoint = 0;
      startClock();
    }
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
    frameInfo.textContent = "Frame " + (frame + 1) + "/" + n + tag + " · " + ft;
    drawOverlay();
  }
  function play() {
    if (!clip || !clip.frames || clip.frames.length < 2) return;
    const dt = clip.frame_time_ms && clip.frame_time_ms > 0 ? clip.frame_time_ms : 33.3;
    timer = setInterval(() => showFrame(frame + 1), dt);
    playBtn.textContent = "❚❚";
    playBtn.title = "Pause (Space)";
  }
  function pause() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    playBtn.textContent = "▶";
    playBtn.title = "Play (Space)";
  }
  function togglePlay() { if (timer === null) play(); else pause(); }

  // ------------------------------------------------------------------ drawing
  function drawOverlay() {
    while (overlay.firstChild) overlay.removeChild(overlay.firstChild);
    if (!clip) return;
    const s = imageScale();
    const fontPx = 13 * s;
    // The selected measurement is drawn last, so its handles win where calipers share an
    // endpoint (LVIDd ends where LVPWd starts).
    const order = items.filter((m) => m.name !== selected).concat(items.filter((m) => m.name === selected));
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
      const label = m.short + " " + lv.text + (isEdited(m) && m.status !== "draft" ? " *" : "") + (lv.error ? "  ⚠ " + lv.error : "");
      const dash = (m.status === "proposed" && m.low_confidence) || m.status === "rejected" ? (6 * s) + " " + (4 * s) : "none";
      if (m.mode === "2d" && m.points.length === 2) {
        const [p, q] = m.points;
        el("line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1], stroke: "#000", "stroke-opacity": 0.6,
          "stroke-width": (isSel ? 4.5 : 3.5) * s }, g);
        el("line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1], stroke: color,
          "stroke-width": (isSel ? 2.2 : 1.5) * s, "stroke-dasharray": dash, class: "em-line" }, g);
        const mx = (p[0] + q[0]) / 2, my = (p[1] + q[1]) / 2;
        const t = el("text", { x: mx + 10 * s, y: my - 6 * s, fill: color, "font-size": fontPx,
          "stroke-width": 3 * s, class: "em-label", ...labelSide(mx, 10 * s) }, g);
        t.textContent = label;
      } else if (m.mode === "doppler" && m.points.length === 1) {
        const [x, y] = m.points[0];
        if (lv.baseline !== undefined) {
          el("line", { x1: x, y1: lv.baseline, x2: x, y2: y, stroke: color, "stroke-opacity": 0.55,
            "stroke-width": 1 * s, "stroke-dasharray": (3 * s) + " " + (3 * s) }, g);
        }
        el("line", { x1: x - 14 * s, y1: y, x2: x + 14 * s, y2: y, stroke: color, "stroke-width": 1.6 * s,
          "stroke-dasharray": dash }, g);
        const t = el("text", { x: x + 12 * s, y: y - 8 * s, fill: color, "font-size": fontPx,
          "stroke-width": 3 * s, class: "em-label", ...labelSide(x, 12 * s) }, g);
        t.textContent = label;
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
    }
    if (placing) {
      placing.points.forEach((p) => {
        el("circle", { cx: p[0], cy: p[1], r: 4 * s, fill: COLORS.draft, stroke: "#000", "stroke-width": 1 * s }, overlay);
      });
    }
  }

  function renderTable() {
    tbody.textContent = "";
    for (const m of items) {
      const tr = document.createElement("tr");
      tr.className = "em-row" + (m.name === selected ? " em-selected" : "");
      tr.dataset.name = m.name;
      const lv = liveValue(m);
      const cur = m.status === "rejected" ? "—" : (lv.value !== null ? fmt(lv.value, lv.unit) : (m.points && m.points.length ? lv.text.replace(/ px$/, "") : "—"));
      const prop = m.proposed_value !== null && m.proposed_value !== undefined ? fmt(m.proposed_value, m.proposed_unit || m.unit) : "—";
      const conf = m.confidence === null || m.confidence === undefined ? "—" : m.confidence.toFixed(2);
      const edited = isEdited(m) && m.status !== "draft" && m.status !== "rejected";
      const cells = [
        '<td><span class="em-dot" style="background:' + colorOf(m) + '"></span></td>',
        '<td class="em-name" title="' + m.title + '">' + m.short + (m.frame !== null && m.frame !== undefined ? ' <span class="em-hint">f' + (m.frame + 1) + "</span>" : "") + "</td>",
        '<td class="em-num">' + prop + "</td>",
        '<td class="em-num' + (edited ? " em-edited" : "") + '">' + cur + (edited ? "*" : "") + "</td>",
        "<td>" + (lv.value !== null ? lv.unit : (m.status === "rejected" ? "" : (m.unit || ""))) + "</td>",
        '<td class="em-num' + (m.low_confidence ? " em-low" : "") + '" title="' + (m.low_confidence ? "low confidence: check this one" : "model confidence") + '">' + conf + (m.low_confidence ? " !" : "") + "</td>",
        '<td><span class="em-status em-s-' + m.status + '">' + displayStatus(m) + "</span></td>",
        '<td class="em-actions"><button class="em-ok" data-act="accept" title="Accept (Enter)">✓</button>' +
          '<button class="em-no" data-act="reject" title="Reject (Delete)">✗</button></td>',
      ];
      tr.innerHTML = cells.join("");
      tbody.appendChild(tr);
    }
    const pending = items.filter((m) => m.status === "proposed" || m.status === "draft" || (isEdited(m) && m.status !== "rejected"));
    acceptAllBtn.disabled = !pending.length;
    const reviewed = items.filter((m) => m.status !== "proposed" && m.status !== "draft").length;
    summary.textContent = items.length ? reviewed + " of " + items.length + " reviewed" : "";
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
    if (current) addSelect.value = current;
    addBtn.disabled = !addSelect.options.length || !clip;
    addSelect.style.visibility = addSelect.options.length ? "visible" : "hidden";
  }

  function render() {
    empty.classList.toggle("em-hidden", !!clip);
    drawOverlay();
    renderTable();
  }

  // ------------------------------------------------------------------ edits
  function pushUndo(m) { undoStack.push({ name: m.name, points: copy(m.points), frame: m.frame }); if (undoStack.length > 200) undoStack.shift(); }
  function undo() {
    const last = undoStack.pop();
    if (!last) return;
    const m = byName(last.name);
    if (!m) return;
    m.points = last.points; m.frame = last.frame;
    select(m.name, true);
  }
  function nudge(dx, dy) {
    const m = byName(selected);
    if (!m || !m.points || !m.points.length || m.status === "rejected") return;
    pushUndo(m);
    const i = Math.min(endpoint, m.points.length - 1);
    m.points[i] = clampPoint([m.points[i][0] + dx, m.points[i][1] + dy]);
    if (m.mode === "2d") m.frame = frame;
    render();
  }

  function review(m) {
    const base = { name: m.name, frame: m.frame, points: copy(m.points || []), seconds: secondsFor(m.name),
      proposal_id: m.proposal_id === undefined ? null : m.proposal_id };
    return base;
  }
  function commit(reviews) {
    if (!reviews.length || !clip) return;
    trigger("commit", { clip_id: clip.id, reviews: reviews });
    for (const r of reviews) spentMs[r.name] = 0;
    if (selectedSince !== null) selectedSince = performance.now();
  }
  function accept(name) {
    const m = byName(name);
    if (!m) return;
    if (m.status === "draft") commit([Object.assign(review(m), { action: "added" })]);
    else commit([Object.assign(review(m), { action: "accept" })]);
  }
  function reject(name) {
    const m = byName(name);
    if (!m) return;
    if (m.status === "draft") { // never saved: just drop it
      items = items.filter((x) => x !== m);
      selected = null;
      render();
      return;
    }
    commit([Object.assign(review(m), { action: "rejected", points: [] })]);
  }
  function acceptAll() {
    const todo = items.filter((m) => m.status === "proposed" || m.status === "draft" || (isEdited(m) && m.status !== "rejected"));
    commit(todo.map((m) => Object.assign(review(m), { action: m.status === "draft" ? "added" : "accept" })));
  }
  function nextMeasurement(step) {
    const visible = items;
    if (!visible.length) return;
    let i = visible.findIndex((m) => m.name === selected);
    i = i < 0 ? (step > 0 ? 0 : visible.length - 1) : (i + step + visible.length) % visible.length;
    select(visible[i].name, true);
  }
  function startPlacing(name) {
    const spec = ((clip && clip.addable) || []).find((a) => a.name === name);
    if (!spec) return;
    pause();
    placing = { name: name, spec: spec, points: [] };
    svg.classList.add("em-placing");
    setBanner("Click " + spec.n_points + " point" + (spec.n_points > 1 ? "s" : "") + " for " + spec.short + " (Esc cancels)");
    root.focus({ preventScroll: true });
    render();
  }
  function cancelPlacing() {
    placing = null;
    svg.classList.remove("em-placing");
    setBanner("");
    render();
  }
  function placePoint(p) {
    placing.points.push(clampPoint(p));
    if (placing.points.length < placing.spec.n_points) { render(); return; }
    const spec = placing.spec;
    items = items.filter((m) => m.name !== spec.name);
    items.push({ name: spec.name, short: spec.short, title: spec.title, mode: spec.mode, unit: spec.unit,
      n_points: spec.n_points, frame: frame, points: placing.points, saved_points: null, saved_frame: null,
      proposed_value: null, proposed_unit: null, value: null, confidence: null, low_confidence: false,
      status: "draft", proposal_id: null });
    const order = (clip.addable || []).map((a) => a.name);
    items.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    placing = null;
    svg.classList.remove("em-placing");
    setBanner("Drag to adjust, then Enter or ✓ to save " + spec.short);
    setTimeout(() => setBanner(""), 2500);
    select(spec.name, false);
  }

  // ------------------------------------------------------------------ pointer events
  svg.addEventListener("pointerdown", (evt) => {
    if (!clip) return;
    root.focus({ preventScroll: true });
    if (timer !== null) pause();
    const p = toImage(evt);
    if (placing) { placePoint(p); evt.preventDefault(); return; }
    const target = evt.target.closest ? evt.target.closest(".em-handle") : null;
    if (target) {
      const name = target.getAttribute("data-name");
      const index = Number(target.getAttribute("data-index"));
      const m = byName(name);
      if (!m) return;
      if (selected !== name) { stopClock(); selected = name; startClock(); }
      endpoint = index;
      pushUndo(m);
      drag = { name: name, index: index, startImg: p, orig: copy(m.points[index]), moved: false };
      svg.setPointerCapture(evt.pointerId);
      evt.preventDefault();
      render();
      return;
    }
    const cal = evt.target.closest ? evt.target.closest(".em-caliper") : null;
    if (cal) select(cal.getAttribute("data-name"), false);
  });
  svg.addEventListener("pointermove", (evt) => {
    if (!drag) return;
    const m = byName(drag.name);
    if (!m) return;
    const p = toImage(evt);
    m.points[drag.index] = clampPoint([drag.orig[0] + (p[0] - drag.startImg[0]), drag.orig[1] + (p[1] - drag.startImg[1])]);
    if (m.mode === "2d") m.frame = frame; // a caliper dragged on another frame moves to the frame shown
    drag.moved = true;
    render();
  });
  function endDrag(evt) {
    if (!drag) return;
    if (!drag.moved) undoStack.pop();
    drag = null;
    try { svg.releasePointerCapture(evt.pointerId); } catch (e) { /* already released */ }
    render();
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);

  // ------------------------------------------------------------------ keyboard
  root.addEventListener("keydown", (evt) => {
    if (evt.target && (evt.target.tagName === "SELECT" || evt.target.tagName === "INPUT") && evt.target !== slider) return;
    const k = evt.key;
    const step = evt.shiftKey ? 10 : 1;
    let handled = true;
    if ((evt.ctrlKey || evt.metaKey) && (k === "z" || k === "Z")) undo();
    else if (k === "ArrowLeft") nudge(-step, 0);
    else if (k === "ArrowRight") nudge(step, 0);
    else if (k === "ArrowUp") nudge(0, -step);
    else if (k === "ArrowDown") nudge(0, step);
    else if (k === "Enter") { if (selected) accept(selected); }
    else if (k === "Delete" || k === "Backspace") { if (selected) reject(selected); }
    else if (k === "Tab") nextMeasurement(evt.shiftKey ? -1 : 1);
    else if (k === "Escape") { if (placing) cancelPlacing(); else { stopClock(); selected = null; render(); } }
    else if (k === " ") togglePlay();
    else if (k === "1" || k === "2") { const m = byName(selected); if (m && m.points && m.points.length > Number(k) - 1) { endpoint = Number(k) - 1; render(); } }
    else if (k === ",") { pause(); showFrame(frame - 1); }
    else if (k === ".") { pause(); showFrame(frame + 1); }
    else handled = false;
    if (handled) { evt.preventDefault(); evt.stopPropagation(); }
  });

  // ------------------------------------------------------------------ controls
  playBtn.addEventListener("click", () => togglePlay());
  slider.addEventListener("input", () => { pause(); showFrame(Number(slider.value)); });
  edBtn.addEventListener("click", () => { pause(); if (clip && clip.ed_frame !== null) showFrame(clip.ed_frame); });
  esBtn.addEventListener("click", () => { pause(); if (clip && clip.es_frame !== null) showFrame(clip.es_frame); });
  acceptAllBtn.addEventListener("click", () => acceptAll());
  addBtn.addEventListener("click", () => { if (addSelect.value) startPlacing(addSelect.value); });
  tbody.addEventListener("click", (evt) => {
    const tr = evt.target.closest("tr");
    if (!tr) return;
    const name = tr.dataset.name;
    const btn = evt.target.closest("button");
    if (btn && btn.dataset.act === "accept") accept(name);
    else if (btn && btn.dataset.act === "reject") reject(name);
    else select(name, true);
    root.focus({ preventScroll: true });
  });
  window.addEventListener("resize", () => drawOverlay());

  // ------------------------------------------------------------------ server -> browser
  function loadClip(next) {
    pause();
    clip = next && next.frames ? next : null;
    preloaded = [];
    undoStack = [];
    placing = null;
    setBanner("");
    if (!clip) { frameImage.removeAttribute("href"); render(); return; }
    svg.setAttribute("viewBox", "-0.5 -0.5 " + clip.width + " " + clip.height);
    frameImage.setAttribute("x", -0.5); frameImage.setAttribute("y", -0.5);
    frameImage.setAttribute("width", clip.width); frameImage.setAttribute("height", clip.height);
    for (const url of clip.frames) { const im = new Image(); im.src = url; preloaded.push(im); }
    slider.max = String(Math.max(clip.frames.length - 1, 0));
    slider.disabled = clip.frames.length < 2;
    playBtn.disabled = clip.frames.length < 2;
    edBtn.disabled = clip.ed_frame === null || clip.ed_frame === undefined;
    esBtn.disabled = clip.es_frame === null || clip.es_frame === undefined;
  }

  function applyValue(value, fresh) {
    const incoming = (value && value.measurements) || [];
    if (fresh) {
      items = copy(incoming);
      stopClock(); spentMs = {}; selected = null;
    } else {
      // Only the measurements the server just saved are replaced; local edits elsewhere stay.
      const saved = new Set((value && value.committed) || []);
      const merged = [];
      for (const m of incoming) {
        const local = byName(m.name);
        merged.push(saved.has(m.name) || !local ? copy(m) : local);
      }
      for (const local of items) if (local.status === "draft" && !merged.some((m) => m.name === local.name)) merged.push(local);
      items = merged;
    }
    if (fresh) {
      const first = items.find((m) => m.status === "proposed" && m.low_confidence) || items.find((m) => m.status === "proposed") || items[0];
      const start = value && value.frame !== undefined && value.frame !== null ? value.frame : (first && first.frame !== null && first.frame !== undefined ? first.frame : 0);
      if (first) { selected = first.name; startClock(); }
      showFrame(start);
    } else if (selected && !byName(selected)) {
      selected = null;
    } else if (selected && ((value && value.committed) || []).includes(selected)) {
      // The reviewer just saved the selected one: move on to the next one still to review.
      const next = items.find((m) => m.status === "proposed" || m.status === "draft");
      if (next) { select(next.name, true); return; }
    }
    render();
  }

  let lastClipId = null;
  function sync() {
    const c = props.clip;
    const newId = c && c.frames ? c.id + ":" + (c.frames[0] || "") : null;
    const fresh = newId !== lastClipId;
    if (fresh) { loadClip(c); lastClipId = newId; }
    const v = props.value;
    applyValue(v, fresh || !!(v && v.reload));
  }
  // Every prop: naming the clip prop in quotes here would make gr.HTML treat it as an event name.
  watch(Object.keys(props), () => sync());
  sync();
})();
