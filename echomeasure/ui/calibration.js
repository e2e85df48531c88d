// Pixel points -> physical values, for the browser's live readout while a caliper is dragged.
//
// A port of echomeasure.ingest.calibration.calibrated_value (the one rule; the stored value is
// always recomputed by it on the server).  tests/test_calibration_js.py runs this file under
// Node against tests/data/calibration_cases.json, the same table the Python rule is tested on.
//  2D: the regions containing both points, keeping 2D regions in cm (units 3/3), preferring
//      imaging data types (1, 2, 15), then tissue (1), then the smallest box;
//      cm = hypot(dx * |deltaX|, dy * |deltaY|).  No regions: the user's cm/px, else pixels.
//  Doppler: the spectral regions (format 3) containing the point with Y in cm/s (units 7), a
//      velocity scale (flags bit 2 clear) and deltaY != 0, PW/CW first, then the largest box;
//      v = refPhysY + (y - (y0 + refY0)) * deltaY cm/s; value |v| in m/s, signed v kept.
(function (root) {
  "use strict";
  const IMAGING_TYPES = [1, 2, 15];
  const contains = (r, p) => r.x0 <= p[0] && p[0] <= r.x1 && r.y0 <= p[1] && p[1] <= r.y1;
  const area = (r) => (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1);
  const spectralOk = (r) => r.spatial_format === 3 && !(r.flags & 4) && r.units_y === 7 && r.delta_y !== 0;
  const referenceRow = (r) => r.y0 + (r.ref_y0 === null || r.ref_y0 === undefined ? 0 : r.ref_y0);
  // the zero-velocity row (calibration.baseline_row): the reference row shifted by its physical value
  const baselineRow = (r) => referenceRow(r) - (r.delta_y ? (r.ref_phys_y || 0) / r.delta_y : 0);

  // -> {value, unit, signed, error?, baseline?}; value null and unit "px" when uncalibrated.
  function calibratedValue(regions, userCmPerPx, mode, points) {
    const regs = regions || [];
    const pts = points || [];
    if (mode === "2d") {
      if (pts.length !== 2) return { value: null, unit: "px", signed: null, error: "needs 2 points" };
      const [p, q] = pts;
      const dx = q[0] - p[0], dy = q[1] - p[1];
      if (!regs.length) {
        if (userCmPerPx) return { value: Math.hypot(dx, dy) * userCmPerPx, unit: "cm", signed: null };
        return { value: null, unit: "px", signed: null };
      }
      const px = { value: null, unit: "px", signed: null };
      if (!regs.some((r) => contains(r, p)) || !regs.some((r) => contains(r, q))) return Object.assign(px, { error: "outside the image sector" });
      const common = regs.filter((r) => contains(r, p) && contains(r, q));
      if (!common.length) return Object.assign(px, { error: "points in two regions" });
      const usable = common.filter((r) => r.spatial_format === 1 && r.units_x === 3 && r.units_y === 3);
      if (!usable.length) return Object.assign(px, { error: "region not 2D in cm" });
      const key = (r) => [IMAGING_TYPES.includes(r.data_type) ? 0 : 1, r.data_type !== 1 ? 1 : 0, area(r)];
      usable.sort((a, b) => { const ka = key(a), kb = key(b); for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i]; return 0; });
      const r = usable[0];
      return { value: Math.hypot(dx * Math.abs(r.delta_x), dy * Math.abs(r.delta_y)), unit: "cm", signed: null };
    }
    if (mode === "doppler") {
      if (!pts.length) return { value: null, unit: "px", signed: null, error: "needs a peak point" };
      if (!regs.length) return { value: null, unit: "px", signed: null };
      const p = pts[0];
      const pwcw = (r) => ([3, 4].includes(r.data_type) ? 0 : 1);
      const good = regs.filter((r) => contains(r, p) && spectralOk(r)).sort((a, b) => pwcw(a) - pwcw(b) || area(b) - area(a));
      if (!good.length) return { value: null, unit: "px", signed: null, error: "outside the spectral strip" };
      const r = good[0];
      const signed = ((r.ref_phys_y || 0) + (p[1] - referenceRow(r)) * r.delta_y) / 100;
      return { value: Math.abs(signed), unit: "m/s", signed: signed, baseline: baselineRow(r) };
    }
    return { value: null, unit: "px", signed: null, error: "unknown mode" };
  }

  const api = { calibratedValue, baselineRow };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.EchoCalibration = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
