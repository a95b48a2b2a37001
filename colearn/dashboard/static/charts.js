// Small SVG charts for the colearn dashboard (no library, nothing fetched from elsewhere).
// line(el, {xs, series: [{name, color, values, width}], yMin, yMax, yFormat, xLabel})
// bars(el, {xs, stacks: [{name, color, values}], yFormat, xLabel, extra(i) -> rows for the tooltip})
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { left: 48, right: 10, top: 8, bottom: 26 };

  function esc(value) {
    return String(value).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "-";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value) && Math.abs(value) >= 1000) return value.toLocaleString("en");
    if (Math.abs(value) >= 1000) return value.toLocaleString("en", { maximumFractionDigits: 0 });
    return value.toFixed(digits === undefined ? 4 : digits);
  }

  function bytes(value) {
    if (value === null || value === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = value, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
    return (u === 0 ? v : v.toFixed(1)) + " " + units[u];
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    if (seconds === 0) return "0";
    if (seconds < 1) return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms";
    return seconds.toFixed(2) + " s";
  }

  function color(i, n) {
    const hue = (i * 360 / Math.max(n, 1) + (i % 2) * 180 / Math.max(n, 1)) % 360;
    return "hsl(" + hue.toFixed(0) + ", 62%, " + (i % 2 ? 38 : 48) + "%)";
  }

  function ticks(min, max, count) {
    if (!(max > min)) return [min];
    const step0 = (max - min) / count, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0);
    const out = [];
    for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }

  function frame(el, xs, yMin, yMax, yFormat) {
    const labels = ticks(yMin, yMax, 4).map((t) => String(yFormat(t)));
    PAD.left = 14 + 6 * Math.max(3, ...labels.map((l) => l.length));
    const width = Math.max(el.clientWidth, 280), height = Math.max(el.clientHeight, 160);
    const iw = width - PAD.left - PAD.right, ih = height - PAD.top - PAD.bottom;
    const x0 = xs.length ? xs[0] : 0, x1 = xs.length > 1 ? xs[xs.length - 1] : x0 + 1;
    const sx = (x) => PAD.left + (x - x0) / (x1 - x0 || 1) * iw;
    const sy = (y) => PAD.top + ih - (y - yMin) / (yMax - yMin || 1) * ih;
    let svg = "";
    for (const t of ticks(yMin, yMax, 4)) {
      svg += '<line class="gridline" x1="' + PAD.left + '" x2="' + (width - PAD.right) + '" y1="' + sy(t) + '" y2="' + sy(t) + '"/>';
      svg += '<text x="' + (PAD.left - 4) + '" y="' + (sy(t) + 3) + '" text-anchor="end">' + esc(yFormat(t)) + "</text>";
    }
    for (const t of ticks(x0, x1, Math.max(2, Math.floor(iw / 60)))) {
      if (!Number.isInteger(t)) continue;
      svg += '<text x="' + sx(t) + '" y="' + (height - 8) + '" text-anchor="middle">' + t + "</text>";
    }
    svg += '<line class="axis" x1="' + PAD.left + '" x2="' + PAD.left + '" y1="' + PAD.top + '" y2="' + (PAD.top + ih) + '"/>';
    svg += '<line class="axis" x1="' + PAD.left + '" x2="' + (width - PAD.right) + '" y1="' + (PAD.top + ih) + '" y2="' + (PAD.top + ih) + '"/>';
    return { width, height, iw, ih, sx, sy, svg };
  }

  function mount(el, f, body, hover) {
    el.innerHTML = '<svg xmlns="' + NS + '" width="' + f.width + '" height="' + f.height + '">' + f.svg + body +
      '<line class="guide" y1="' + PAD.top + '" y2="' + (PAD.top + f.ih) + '" x1="-10" x2="-10"/></svg>';
    const svg = el.firstChild, guide = svg.lastChild;
    svg.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect(), px = ev.clientX - box.left;
      const found = hover(px);
      if (!found) { window.ColearnTip.hide(); return; }
      guide.setAttribute("x1", found.x); guide.setAttribute("x2", found.x);
      window.ColearnTip.show(ev, found.html);
    });
    svg.addEventListener("mouseleave", () => { guide.setAttribute("x1", -10); guide.setAttribute("x2", -10); window.ColearnTip.hide(); });
  }

  function nearest(xs, sx, px) {
    let best = -1, dist = Infinity;
    xs.forEach((x, i) => { const d = Math.abs(sx(x) - px); if (d < dist) { dist = d; best = i; } });
    return best;
  }

  function rows(items) {
    return "<table>" + items.map(([k, v, c]) => '<tr><td class="k">' + (c ? '<span class="dot">&#9679;</span> ' : "") +
      esc(k) + "</td><td>" + esc(v) + "</td></tr>").join("") + "</table>";
  }

  function line(el, spec) {
    const values = spec.series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    if (!spec.xs.length || !values.length) { el.innerHTML = '<p class="muted">nothing yet</p>'; return; }
    let yMin = spec.yMin !== undefined ? spec.yMin : Math.min(...values);
    let yMax = spec.yMax !== undefined ? spec.yMax : Math.max(...values);
    if (yMax === yMin) { yMin -= 0.5; yMax += 0.5; }
    const yFormat = spec.yFormat || ((v) => fmt(v, 2));
    const f = frame(el, spec.xs, yMin, yMax, yFormat);
    let body = "";
    for (const s of spec.series) {
      let d = "", pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? "L" : "M") + f.sx(spec.xs[i]).toFixed(1) + "," + f.sy(v).toFixed(1); pen = true;
      });
      body += '<path d="' + d + '" fill="none" stroke="' + s.color + '" stroke-width="' + (s.width || 1.4) + '"' +
        (s.dash ? ' stroke-dasharray="4 3"' : "") + "/>";
    }
    mount(el, f, body, (px) => {
      const i = nearest(spec.xs, f.sx, px);
      if (i < 0) return null;
      const items = spec.series.map((s) => [s.name, spec.yFormat ? spec.yFormat(s.values[i]) : fmt(s.values[i])]);
      return { x: f.sx(spec.xs[i]), html: "<b>" + esc(spec.xLabel || "round") + " " + spec.xs[i] + "</b>" + rows(items) };
    });
  }

  function bars(el, spec) {
    const totals = spec.xs.map((_, i) => spec.stacks.reduce((a, s) => a + (s.values[i] || 0), 0));
    if (!spec.xs.length || !totals.some((t) => t > 0)) { el.innerHTML = '<p class="muted">nothing yet</p>'; return; }
    const yFormat = spec.yFormat || ((v) => fmt(v, 2));
    const xs = [spec.xs[0] - 0.5, ...spec.xs, spec.xs[spec.xs.length - 1] + 0.5];
    const f = frame(el, xs, 0, Math.max(...totals), yFormat);
    const w = Math.max(1, f.iw / (spec.xs.length + 1) * 0.8);
    let body = "";
    spec.xs.forEach((x, i) => {
      let base = 0;
      for (const s of spec.stacks) {
        const v = s.values[i] || 0;
        if (v > 0) body += '<rect x="' + (f.sx(x) - w / 2).toFixed(1) + '" y="' + f.sy(base + v).toFixed(1) + '" width="' +
          w.toFixed(1) + '" height="' + Math.max(0.5, f.sy(base) - f.sy(base + v)).toFixed(1) + '" fill="' + s.color + '"/>';
        base += v;
      }
    });
    mount(el, f, body, (px) => {
      const i = nearest(spec.xs, f.sx, px);
      if (i < 0) return null;
      const items = spec.stacks.map((s) => [s.name, yFormat(s.values[i])]).concat(spec.extra ? spec.extra(i) : []);
      return { x: f.sx(spec.xs[i]), html: "<b>" + esc(spec.xLabel || "round") + " " + spec.xs[i] + "</b>" + rows(items) };
    });
  }

  window.ColearnCharts = { line, bars, esc, fmt, bytes, duration, color, rows };
})();
