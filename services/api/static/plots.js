// The source page's plots: JSON from the API drawn with uPlot (static/vendor/uplot).
// Each <div data-plot="lightcurve|hid|relevance"> says what to draw; after drawing it carries
// data-points (values drawn) and data-drawn-scale (linear|log, the y scale uPlot drew) so that
// people and tests can tell; data-scale is the scale asked for (the log/linear switch sets it).
(() => {
  "use strict";
  const base = document.body.dataset.base || "";
  const GAP_S = 3 * 86400;  // lines break across gaps longer than 3 days
  const HEIGHT = 300;
  const COLOURS = ["#1f5fa8", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  const TERMS = ["model", "hardness", "flux", "trend"];
  const plots = new Map();  // element -> {draw(), uplot}

  const seconds = iso => Date.parse(iso) / 1000;
  const utcText = (u, v) => v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 16).replace("T", " ");
  const number = (u, v) => v == null ? "–" : (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)
    ? v.toExponential(2) : +v.toPrecision(4));
  const tick = v => Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(0) : String(+v.toPrecision(3));
  const ticks = (u, vals) => vals.map(v => v == null ? null : tick(v));
  const decades = (u, vals) => vals.map(v => v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9 ? v : null);
  const logAxis = {values: ticks, filter: decades, grid: {filter: decades}, ticks: {filter: decades}};  // powers of ten only
  // Time ticks in ISO form (UTC), as coarse as the shown span allows: 2017, 2017-09, 2017-09-14, 09-14 12:00.
  const timeTicks = (u, vals) => {
    const span = u.scales.x.max - u.scales.x.min;
    const iso = v => new Date(v * 1000).toISOString();
    if (span < 4 * 86400) return vals.map(v => iso(v).slice(5, 16).replace("T", " "));
    const length = span > 4 * 365 * 86400 ? 4 : span > 120 * 86400 ? 7 : 10;
    return vals.map(v => iso(v).slice(0, length));
  };
  const tzDate = ts => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  async function getJSON(path) {
    const response = await fetch(base + path);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function message(el, text) {
    el.replaceChildren(Object.assign(document.createElement("p"), {className: "message", textContent: text}));
  }

  // Columns for uPlot from rows: x (seconds) and one column per key; a row of nulls is put into
  // every gap longer than GAP_S so the lines break there.
  function columns(rows, keys) {
    const cols = [[], ...keys.map(() => [])];
    let last = null;
    for (const row of rows) {
      const t = seconds(row.time);
      if (last !== null && t - last > GAP_S) {
        cols[0].push(last + 1);
        keys.forEach((k, i) => cols[i + 1].push(null));
      }
      cols[0].push(t);
      keys.forEach((k, i) => cols[i + 1].push(row[k] ?? null));
      last = t;
    }
    return cols;
  }

  // In log scale values <= 0 cannot be drawn: they become null, and so does the ±1σ band of a point
  // whose lower bound is <= 0 (its line is still drawn).
  function forLog(cols, triples) {
    for (const [v, hi, lo] of triples) {
      cols[v] = cols[v].map(x => x > 0 ? x : null);
      const keep = cols[lo].map((x, j) => cols[v][j] !== null && x > 0);
      cols[hi] = cols[hi].map((x, j) => keep[j] ? x : null);
      cols[lo] = cols[lo].map((x, j) => keep[j] ? x : null);
    }
    return cols;
  }

  // Hide the legend rows of helper series (error bounds) and keep them shown/hidden with their value series.
  function linkHelpers(u, helpers) {
    const rows = u.root.querySelectorAll(".u-legend .u-series");
    for (const [, kids] of helpers) kids.forEach(k => { if (rows[k]) rows[k].style.display = "none"; });
  }

  function timeOptions(el, extra) {
    return {
      width: el.clientWidth, height: HEIGHT, tzDate, cursor: {sync: {key: "flashes-time"}},
      scales: {x: {time: true}, ...extra.scales},
      axes: [{space: 80, values: timeTicks}, {label: extra.unit, size: 64, values: ticks, ...(extra.log ? logAxis : {})}],
      ...extra.rest,
    };
  }

  // A lightcurve: one value series per band with its ±1σ band; the first band shown, the others in the legend.
  function lightcurve(el, rows, log) {
    const bands = el.dataset.bands.split(",");
    const keys = bands.flatMap(b => [`flux ${b}`, `flux ${b} max`, `flux ${b} min`]);
    let cols = columns(rows, keys);
    if (log) cols = forLog(cols, bands.map((b, i) => [1 + 3 * i, 2 + 3 * i, 3 + 3 * i]));
    const series = [{label: "time (UTC)", value: utcText}];
    const bandFills = [], helpers = [];
    bands.forEach((b, i) => {
      const colour = COLOURS[i % COLOURS.length], show = i === 0;
      const label = /^\d/.test(b) ? `${b} keV` : el.dataset.label;
      series.push({label, stroke: colour, width: 1.25, show, value: number, points: {show: false}});
      series.push({label: `${label} +1σ`, stroke: colour, width: 0, show, points: {show: false}});
      series.push({label: `${label} −1σ`, stroke: colour, width: 0, show, points: {show: false}});
      bandFills.push({series: [2 + 3 * i, 3 + 3 * i], fill: rgba(colour, 0.18)});
      helpers.push([1 + 3 * i, [2 + 3 * i, 3 + 3 * i]]);
    });
    const opts = timeOptions(el, {unit: el.dataset.unit, log, scales: {y: log ? {distr: 3} : {}},
                                  rest: {series, bands: bandFills}});
    opts.hooks = {setSeries: [(u, i, o) => {
      const kids = helpers.find(([main]) => main === i);
      if (kids && o && "show" in o) kids[1].forEach(k => u.setSeries(k, {show: o.show}));
    }]};
    const u = draw(el, opts, cols);
    linkHelpers(u, helpers);
    el.dataset.points = cols[1].filter(v => v !== null).length;
    return u;
  }

  // The hardness-intensity diagram: points only, log axes, days where both are positive.
  function hid(el, rows) {
    const pts = rows.filter(r => r.hardness > 0 && r["combined [mCrab]"] > 0)
      .map(r => [r.hardness, r["combined [mCrab]"]]).sort((a, b) => a[0] - b[0]);
    if (!pts.length) return message(el, "No day with both hardness and combined flux above zero.");
    const opts = {
      width: el.clientWidth, height: HEIGHT, scales: {x: {time: false, distr: 3}, y: {distr: 3}},
      axes: [{label: "hardness (BAT 15-50 / MAXI 2-20)", ...logAxis},
             {label: "combined flux (mCrab)", size: 64, ...logAxis}],
      series: [{label: "hardness", value: number},
               {label: "combined (mCrab)", stroke: COLOURS[0], paths: () => null, value: number,
                points: {show: true, size: 3, width: 0, fill: rgba(COLOURS[0], 0.5)}}],
      cursor: {drag: {x: true, y: true}},
    };
    const u = draw(el, opts, [pts.map(p => p[0]), pts.map(p => p[1])]);
    el.dataset.points = pts.length;
    return u;
  }

  // Relevance of one series and its four terms, with the alert threshold.
  function relevance(el, rows) {
    const flat = rows.map(r => ({time: r.time, relevance: r.relevance, ...r.terms}));
    const cols = columns(flat, ["relevance", ...TERMS]);
    const threshold = Number(el.dataset.threshold);
    cols.push(cols[0].map(() => threshold));
    const series = [{label: "time (UTC)", value: utcText},
                    {label: "relevance", stroke: "#14283f", width: 1.5, value: number, points: {show: false}},
                    ...TERMS.map((t, i) => ({label: `${t} term`, stroke: COLOURS[(i + 2) % COLOURS.length], width: 1,
                                             value: number, points: {show: false}, show: t === "model" || t === "hardness"})),
                    {label: "threshold", stroke: "#888", dash: [6, 4], width: 1, value: number, points: {show: false}}];
    const opts = timeOptions(el, {unit: "0 … 1", scales: {y: {range: [0, 1.05]}}, rest: {series}});
    const u = draw(el, opts, cols);
    el.dataset.points = rows.length;
    return u;
  }

  function draw(el, opts, data) {
    const old = plots.get(el);
    if (old && old.uplot) old.uplot.destroy();
    el.replaceChildren();
    const u = new uPlot(opts, data, el);
    plots.set(el, {...(old || {}), uplot: u});
    el.dataset.drawnScale = u.scales.y.distr === 3 ? "log" : "linear";  // what uPlot actually drew
    return u;
  }

  async function load(el) {
    const d = el.dataset, start = encodeURIComponent(d.start);
    message(el, "loading…");
    try {
      if (d.plot === "lightcurve") {
        const rows = await getJSON(`/timeseries?source=${encodeURIComponent(d.source)}&series=${d.series}&start=${start}`);
        if (!rows.length) return message(el, "No data stored for this series yet.");
        const render = () => lightcurve(el, rows, d.scale === "log");
        plots.set(el, {render});
        render();
      } else if (d.plot === "hid") {
        const rows = await getJSON(`/download/hid/${encodeURIComponent(d.hardness)}/${encodeURIComponent(d.combined)}` +
                                   `?format=json&start=${start}`);
        plots.set(el, {render: () => hid(el, rows)});
        hid(el, rows);
      } else if (d.plot === "relevance") {
        const rows = await getJSON(`/relevance?source=${encodeURIComponent(d.source)}&series=${d.series}&start=${start}`);
        if (!rows.length) return message(el, "No relevance scores for this series yet.");
        plots.set(el, {render: () => relevance(el, rows)});
        relevance(el, rows);
      }
    } catch (err) {
      message(el, `The data could not be loaded (${err.message}).`);
      console.error("FLASHES plot", el.id, err);
    } finally {
      el.dataset.ready = "true";
    }
  }

  // The log/linear switches: redraw the plot with the other y scale.
  function scaleButton(button) {
    const el = document.getElementById(button.dataset.for);
    const label = () => { button.textContent = el.dataset.scale === "log" ? "linear scale" : "log scale"; };
    button.hidden = false;
    label();
    button.addEventListener("click", () => {
      el.dataset.scale = el.dataset.scale === "log" ? "linear" : "log";
      label();
      const p = plots.get(el);
      if (p && p.render) p.render();
    });
  }

  // The range buttons: the last N days up to the plot's newest point, or everything (0).
  function rangeButtons(group) {
    const el = document.getElementById(group.dataset.for);
    group.hidden = false;
    group.addEventListener("click", event => {
      const days = Number(event.target.dataset.days), p = plots.get(el);
      if (!event.target.dataset.days || !p || !p.uplot) return;
      const xs = p.uplot.data[0], last = xs[xs.length - 1];
      p.uplot.setScale("x", days ? {min: last - days * 86400, max: last + 43200} : {min: xs[0], max: last});
    });
  }

  document.querySelectorAll(".ranges").forEach(rangeButtons);
  document.querySelectorAll(".relevance-series").forEach(select => select.addEventListener("change", () => {
    const el = document.getElementById(select.dataset.for);
    el.dataset.series = select.value;
    delete el.dataset.ready;
    load(el);
  }));
  document.querySelectorAll("button.scale").forEach(scaleButton);
  document.querySelectorAll("[data-plot]").forEach(load);

  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => plots.forEach((p, el) => p.uplot && p.uplot.setSize({width: el.clientWidth, height: HEIGHT})), 150);
  });
})();
