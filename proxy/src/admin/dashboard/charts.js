// drover dashboard: traffic charts and server health timelines, drawn as SVG from
// /api/history (the last 15 minutes at 3 s resolution, kept by drover itself). No library;
// values from the API go in as attributes and textContent only.
"use strict";

(function () {
  const API = "../api/history";
  const REFRESH_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 300; // viewBox units; one per point at 300 points
  const HEIGHT = 60;
  const LIMIT = { entrypoint: 12, service: 6, router: 6 };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  const FORMAT = {
    rps: (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + "/s",
    share: (v) => (v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0) + "%",
    ms: (v) => (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 1 : 0) + " ms"),
  };

  // One small chart: a line per given series of values (null: no data, a gap), the right edge
  // being the newest point. Its peak and last values are in its caption; they and the sum of the
  // first line's values are also in data- attributes.
  function chart(metric, title, lines, format, points, fixedMax) {
    let peak = 0, last = null, sum = 0;
    for (const line of lines) {
      for (const v of line.values) if (v !== null && v > peak) peak = v;
    }
    for (const v of lines[0].values) if (v !== null) sum += v;
    const main = lines[0].values;
    for (let i = main.length - 1; i >= 0; i--) if (main[i] !== null) { last = main[i]; break; }
    const max = fixedMax || (peak > 0 ? peak * 1.1 : 1);
    const paths = lines.map((line) => {
      const offset = points - line.values.length;
      let d = "", pen = false;
      line.values.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        const x = (offset + i + 0.5) * (WIDTH / points);
        const y = HEIGHT - (Math.min(v, max) / max) * (HEIGHT - 2) - 1;
        d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
        pen = true;
      });
      return svg("path", { d: d.trim() || "M0 " + HEIGHT, class: "line " + line.kind, "vector-effect": "non-scaling-stroke" });
    });
    const picture = svg("svg", {
      viewBox: "0 0 " + WIDTH + " " + HEIGHT, preserveAspectRatio: "none", class: "spark",
      role: "img", "aria-label": title,
    }, svg("line", { x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5, class: "axis", "vector-effect": "non-scaling-stroke" }), ...paths);
    const legend = lines.length > 1
      ? el("span", { class: "legend" }, lines.map((l) => el("span", { class: "key " + l.kind, text: l.label })))
      : null;
    return el("div", { class: "mini", "data-metric": metric, "data-peak": String(peak), "data-sum": String(sum), "data-last": last === null ? "" : String(last) },
      el("div", { class: "mini-head" },
        el("span", { class: "mini-title", text: title }), legend,
        el("span", { class: "mini-value muted", text: "peak " + format(peak) + (last === null ? "" : " · now " + format(last)) })),
      picture);
  }

  function seriesCard(kind, s, points) {
    return el("figure", { class: "chart-card", "data-series": kind + ":" + s.name },
      el("figcaption", {}, el("span", { class: "badge " + kind, text: kind }), " ", el("span", { class: "mono", text: s.name })),
      chart("rps", "Requests", [{ values: s.requestsPerSecond, kind: "a", label: "req/s" }], FORMAT.rps, points),
      chart("share5xx", "Errors", [
        { values: s.share5xx, kind: "bad", label: "5xx" },
        { values: s.shareLocal, kind: "warn", label: "404/502/503/504" },
      ], FORMAT.share, points, 1),
      chart("latency", "Latency", [
        { values: s.p99Ms, kind: "warn", label: "p99" },
        { values: s.p50Ms, kind: "a", label: "p50" },
      ], FORMAT.ms, points));
  }

  // A server's states as runs of equal state; hovering a run tells its times and, for an
  // ejection, why (from the state changes drover recorded).
  function timeline(server, history) {
    const n = server.states.length, points = history.points, step = history.intervalMs;
    const timeOf = (i) => history.newest - (n - 1 - i) * step;
    const runs = [];
    server.states.forEach((state, i) => {
      const run = runs[runs.length - 1];
      if (run && run.state === state) run.end = i; else runs.push({ state, start: i, end: i });
    });
    const rects = runs.map((run) => {
      const from = timeOf(run.start) - step, to = timeOf(run.end);
      const change = server.events.filter((e) => e.state === run.state && e.at > from - step && e.at <= to).pop();
      const reason = change && change.reason ? ": " + change.reason : "";
      const title = run.state + " " + clock(from) + "–" + clock(to) + reason;
      return svg("rect", {
        x: ((points - n + run.start) * WIDTH) / points, y: 0,
        width: ((run.end - run.start + 1) * WIDTH) / points, height: 10,
        class: "state " + run.state, "data-state": run.state, "data-reason": change && change.reason ? change.reason : "",
      }, svg("title", {}, document.createTextNode(title)));
    });
    const now = server.states[n - 1] || "up";
    return el("div", { class: "timeline", "data-timeline-service": server.service, "data-timeline-server": server.url, "data-state": now },
      el("div", { class: "timeline-head" },
        el("span", { class: "badge " + now, text: now }), " ",
        el("span", { class: "mono", text: server.url }), " ",
        el("span", { class: "muted small", text: server.service })),
      svg("svg", { viewBox: "0 0 " + WIDTH + " 10", preserveAspectRatio: "none", class: "strip", role: "img", "aria-label": "health of " + server.url }, ...rects));
  }

  function render(history) {
    const points = history.points;
    const cards = [];
    for (const [kind, list] of [["entrypoint", history.entryPoints], ["service", history.services], ["router", history.routers]]) {
      for (const s of list.slice(0, LIMIT[kind])) cards.push(seriesCard(kind, s, points));
    }
    $("traffic-charts").replaceChildren(...cards);
    const minutes = Math.round((points * history.intervalMs) / 60000);
    $("traffic-span").textContent = "last " + minutes + " min, every " + history.intervalMs / 1000 + " s" +
      (history.newest ? " · updated " + clock(history.newest) : " · first sample in a few seconds");
    $("server-timelines").replaceChildren(...history.servers.map((s) => timeline(s, history)));
    $("traffic").dataset.newest = String(history.newest);
  }

  async function refresh() {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem("drover-token");
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const response = await fetch(API, { headers, cache: "no-store" });
      if (response.ok) render(await response.json());
    } catch (e) {
      // The main script shows connection problems; the charts wait for the next round.
    }
  }

  function start() {
    refresh();
    setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
