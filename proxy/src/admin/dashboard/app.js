// drover dashboard. Plain JavaScript, no dependencies; every value from the API is inserted with
// textContent, never as HTML.
"use strict";

(function () {
  const API = "../api";
  const POLL_MS = 1500;
  const state = {
    token: sessionStorage.getItem("drover-token") || "",
    overview: null,
    routers: [],
    services: [],
    providers: [],
    entryPoints: [],
    openDetails: new Set(),
    refreshing: false,
    again: false,
    pollTimer: null,
  };

  // ---------- small helpers ----------
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(text, kind) { return el("span", { class: "badge " + (kind || text), text: text }); }

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function replace(container, nodes) { container.replaceChildren(...nodes); }

  function showError(message) {
    const bar = $("error-bar");
    if (message) { bar.textContent = message; bar.hidden = false; } else { bar.hidden = true; }
  }

  class AuthNeeded extends Error {}

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const response = await fetch(API + path, { headers, cache: "no-store" });
    if (response.status === 401) {
      $("token-bar").hidden = false;
      throw new AuthNeeded("authentication required");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.message) || ("HTTP " + response.status));
    }
    return { body, next: Number(response.headers.get("X-Next-Page") || "1") };
  }

  // Every page of a Traefik-style list.
  async function all(path) {
    const items = [];
    let page = 1;
    for (let i = 0; i < 100; i++) {
      const sep = path.includes("?") ? "&" : "?";
      const { body, next } = await api(path + sep + "per_page=10000&page=" + page);
      items.push(...(body || []));
      if (!next || next <= page) break;
      page = next;
    }
    return items;
  }

  // ---------- overview ----------
  function renderOverview() {
    const o = state.overview;
    if (!o) return;
    const r = o.http.routers, s = o.http.services, sv = o.servers;
    const card = (label, value, details, id) => el("div", { class: "card", "data-card": id },
      el("div", { class: "label", text: label }),
      el("div", { class: "value", text: String(value) }),
      el("div", { class: "detail" }, details));
    const issues = (c) => [
      c.warnings ? el("span", { class: "warn-text", text: plural(c.warnings, "warning") }) : null,
      c.errors ? el("span", { class: "bad-text", text: c.errors + " disabled" }) : null,
      !c.warnings && !c.errors ? el("span", { class: "ok-text", text: "all enabled" }) : null,
    ];
    const providerErrors = o.providerErrors || 0;
    replace($("cards"), [
      card("Routers", r.total, issues(r), "routers"),
      card("Services", s.total, issues(s), "services"),
      card("Servers up", sv.up + " / " + sv.total, [
        sv.ejected ? el("span", { class: "bad-text", text: sv.ejected + " ejected" }) : null,
        sv.probation ? el("span", { class: "warn-text", text: sv.probation + " on probation" }) : null,
        sv.slowStart ? el("span", { class: "muted", text: sv.slowStart + " in slow start" }) : null,
        !sv.ejected && !sv.probation && !sv.slowStart ? el("span", { class: "ok-text", text: sv.total ? "all healthy" : "none yet" }) : null,
      ], "servers"),
      card("Providers", o.providers.length, [
        providerErrors ? el("span", { class: "bad-text", text: providerErrors + " failing" }) : el("span", { class: "ok-text", text: o.providers.length ? "all connected" : "none configured" }),
      ], "providers"),
      card("Configuration", "#" + o.generation, [el("span", { class: "muted", text: plural(o.entryPoints || 0, "entrypoint") })], "generation"),
    ]);
  }

  // ---------- routers ----------
  function routerRow(r) {
    const errs = r.error || [];
    return el("div", { class: "row", "data-router": r.name, "data-status": r.status },
      el("div", { class: "title" }, badge(r.status), el("span", { class: "mono", text: r.name })),
      el("div", { class: "prio", text: "priority " + r.priority }),
      el("div", { class: "rule" }, el("code", { text: r.rule })),
      el("div", { class: "meta" },
        el("span", {}, "→ ", el("span", { class: "mono", text: r.service || "—" })),
        el("span", { text: "entrypoints: " + ((r.using && r.using.length) ? r.using.join(", ") : "none") }),
        r.middlewares && r.middlewares.length ? el("span", { text: "middlewares: " + r.middlewares.join(", ") }) : null),
      errs.length ? el("ul", { class: "errors" + (r.status === "warning" ? " warn" : "") }, errs.map((e) => el("li", { text: e }))) : null);
  }

  function renderRouters() {
    const needle = $("router-filter").value.trim().toLowerCase();
    const list = state.routers
      .filter((r) => !needle || r.name.toLowerCase().includes(needle) || r.rule.toLowerCase().includes(needle))
      .sort((a, b) => (b.priority - a.priority) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    $("routers-count").textContent = "(" + state.routers.length + ")";
    replace($("router-list"), list.length ? list.map(routerRow) : [el("div", { class: "empty", text: needle ? "No router matches the filter." : "No routers yet." })]);
  }

  // ---------- services ----------
  function serverItem(s, next) {
    const counters = [
      el("span", { text: "weight " + s.weight }),
      s.tier ? el("span", { text: "tier " + s.tier }) : null,
      el("span", { text: "connection failures " + s.connectionFailures }),
      el("span", { text: "ejections " + s.totalEjections }),
      el("span", { text: "in flight " + s.inFlight + (s.maxConns ? " / " + s.maxConns : "") }),
      s.queued ? el("span", { class: "bad-text", text: s.queued + " queued" }) : null,
      s.consecutiveFailures ? el("span", { class: "bad-text", text: s.consecutiveFailures + " failing in a row" }) : null,
      s.consecutive5xx ? el("span", { class: "bad-text", text: s.consecutive5xx + " 5xx in a row" }) : null,
      s.ejectedForMs !== undefined ? el("span", { text: "back in " + Math.ceil(s.ejectedForMs / 1000) + " s" }) : null,
      s.activeDown ? el("span", { class: "bad-text", text: "active check failing" }) : null,
    ];
    return el("li", { class: "server", "data-server": s.url, "data-state": s.state },
      el("span", { class: "state badge " + s.state, text: s.state }),
      el("span", {}, el("span", { class: "mono", text: s.url }), next ? [" ", badge("next", "next")] : null),
      el("div", { class: "counters" }, counters),
      s.reason && s.state !== "up" ? el("div", { class: "reason", text: s.reason }) : null);
  }

  // A service made of services: its children as a small tree (weighted with weights, failover
  // main → fallback, mirroring main + mirrors with percentages).
  function childrenTree(svc) {
    let kind = null, items = [];
    if (svc.weighted) {
      kind = "weighted";
      items = (svc.weighted.services || []).map((c) => c.name + " · weight " + (c.weight === undefined ? 1 : c.weight));
    } else if (svc.failover) {
      kind = "failover";
      items = [svc.failover.service + " · main", svc.failover.fallback + " · fallback"];
    } else if (svc.mirroring) {
      kind = "mirroring";
      items = [svc.mirroring.service + " · answers"].concat((svc.mirroring.mirrors || []).map((m) => m.name + " · mirror " + (m.percent || 0) + " %"));
    }
    if (!kind) return null;
    return el("div", { class: "children", "data-kind": kind },
      el("span", { class: "small muted", text: kind }),
      el("ul", { class: "servers" }, items.map((t) => el("li", { class: "mono", text: t }))));
  }

  function serviceCard(svc, next) {
    const tree = childrenTree(svc);
    if (tree) {
      const errs = svc.error || [];
      return el("div", { class: "panel", "data-service": svc.name, "data-status": svc.status },
        el("div", { class: "panel-head" }, el("span", {}, badge(svc.status), " ", el("span", { class: "mono", text: svc.name }))),
        el("div", { class: "sub" }, "used by ", (svc.usedBy && svc.usedBy.length) ? svc.usedBy.join(", ") : "no router"),
        errs.length ? el("ul", { class: "errors" + (svc.status === "warning" ? " warn" : "") }, errs.map((e) => el("li", { text: e }))) : null,
        tree);
    }
    const servers = svc.servers || [];
    const up = servers.filter((s) => s.state === "up").length;
    const errs = svc.error || [];
    return el("div", { class: "panel", "data-service": svc.name, "data-status": svc.status },
      el("div", { class: "panel-head" },
        el("span", {}, badge(svc.status), " ", el("span", { class: "mono", text: svc.name })),
        el("span", { class: up === servers.length ? "ok-text small" : "bad-text small", text: up + "/" + servers.length + " up" })),
      el("div", { class: "sub" }, "used by ", (svc.usedBy && svc.usedBy.length) ? svc.usedBy.join(", ") : "no router",
        svc.retries ? " · " + svc.retries + " retries" : ""),
      errs.length ? el("ul", { class: "errors" + (svc.status === "warning" ? " warn" : "") }, errs.map((e) => el("li", { text: e }))) : null,
      servers.length ? el("ul", { class: "servers" }, servers.map((s) => serverItem(s, s.url === next))) : el("div", { class: "empty", text: "No usable servers." }));
  }

  function renderServices() {
    const needle = $("service-filter").value.trim().toLowerCase();
    const list = state.services.filter((s) => !needle || s.name.toLowerCase().includes(needle) ||
      (s.servers || []).some((x) => x.url.toLowerCase().includes(needle)));
    $("services-count").textContent = "(" + state.services.length + ")";
    replace($("service-list"), list.length ? list.map((s) => serviceCard(s, null)) : [el("div", { class: "empty", text: needle ? "No service matches the filter." : "No services yet." })]);
  }

  // ---------- providers ----------
  function itemLine(item) {
    const where = [].concat(item.routers || [], item.addresses || []);
    return el("li", { class: item.decision, "data-item": item.name },
      badge(item.decision), " ", el("span", { class: "small muted", text: item.kind }), " ", el("span", { class: "mono", text: item.name }),
      where.length ? el("div", { class: "small muted", text: where.join(" · ") }) : null,
      item.reasons && item.reasons.length ? el("ul", { class: "reasons" }, item.reasons.map((r) => el("li", { text: r }))) : null);
  }

  function providerCard(p) {
    const items = p.items || [];
    const skipped = items.filter((i) => i.decision === "skipped");
    const routed = items.filter((i) => i.decision !== "skipped");
    const details = el("details", { "data-routed": p.name, open: state.openDetails.has(p.name) },
      el("summary", { text: "Show " + plural(routed.length, "routed item") }),
      el("ul", { class: "items" }, routed.map(itemLine)));
    details.addEventListener("toggle", () => {
      if (details.open) state.openDetails.add(p.name); else state.openDetails.delete(p.name);
    });
    return el("div", { class: "panel", "data-provider": p.name },
      el("div", { class: "panel-head" },
        el("span", {}, badge(p.state), " ", el("span", { class: "mono", text: p.name })),
        el("span", { class: "small muted", text: items.length ? (routed.length + " routed, " + skipped.length + " skipped") : "" })),
      el("dl", { class: "kv" },
        el("dt", { text: "last sync" }), el("dd", { text: ago(p.lastSync) + (p.syncs !== undefined ? " (" + plural(p.syncs, "sync") + ")" : "") }),
        el("dt", { text: "objects" }), el("dd", { text: plural(p.routers || 0, "router") + ", " + plural(p.services || 0, "service") }),
        p.lastError ? el("dt", { text: "last error" }) : null,
        p.lastError ? el("dd", { class: "bad-text", text: p.lastError + (p.lastErrorAt ? " (" + ago(p.lastErrorAt) + ")" : "") }) : null),
      skipped.length ? el("ul", { class: "items" }, skipped.map(itemLine)) : null,
      routed.length ? details : null);
  }

  function renderProviders() {
    replace($("provider-list"), state.providers.length ? state.providers.map(providerCard) : [el("div", { class: "empty", text: "No provider is configured." })]);
  }

  function certificateCard(c) {
    const days = c.notAfterUnix ? Math.floor((c.notAfterUnix * 1000 - Date.now()) / 86400000) : null;
    const a = c.acme;
    const failed = a && a.state === "failed";
    const health = failed ? "disabled" : (c.error && c.error.length ? "warning" : (days !== null && days < 14 ? "warning" : "enabled"));
    return el("div", { class: "panel", "data-certificate": (c.sans || []).join(",") },
      el("div", { class: "panel-head" },
        el("span", {}, badge(health), " ", el("span", { class: "mono", text: (c.sans || []).join(", ") || c.source })),
        c.default ? el("span", { class: "small muted", text: "default" }) : null),
      el("dl", { class: "kv" },
        el("dt", { text: "subject" }), el("dd", { class: "mono", text: c.subject || "" }),
        el("dt", { text: "issuer" }), el("dd", { class: "mono", text: c.issuer || "" }),
        el("dt", { text: "expires" }), el("dd", { text: (c.notAfter || "") + (days !== null ? " (" + plural(days, "day") + ")" : "") }),
        el("dt", { text: "source" }), el("dd", { class: "mono", text: c.source + (c.provider ? " @" + c.provider : "") }),
        el("dt", { text: "used by" }), el("dd", { class: "mono", text: (c.usedBy || []).join(", ") || "none" }),
        c.error && c.error.length ? el("dt", { text: "error" }) : null,
        c.error && c.error.length ? el("dd", { class: "bad-text", text: c.error.join("; ") }) : null,
        a ? el("dt", { text: "ACME" }) : null,
        a ? el("dd", { "data-acme-state": a.state },
          "resolver " + a.resolver + ": " + a.state +
          (a.renewAt ? ", renews " + a.renewAt : "") +
          " (" + plural(a.orders, "order") + (a.failures ? ", " + plural(a.failures, "failure") + " in a row" : "") + ")") : null,
        a && a.error ? el("dt", { text: "last failure" }) : null,
        a && a.error ? el("dd", { class: "bad-text", text: a.error + (a.nextTry ? " — next try " + a.nextTry : "") }) : null));
  }

  // ---------- TCP and UDP ----------
  function bytes(n) {
    if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
    return n + " B";
  }

  function l4RouterCard(r, protocol) {
    const errs = r.error || [];
    // A TCP router counts connections; a UDP router, sessions (one per client address).
    const c = r.connections || r.sessions;
    const what = r.sessions ? "sessions" : "connections";
    const failed = c && (c.connectFailures || c.sessionFailures);
    return el("div", { class: "panel", "data-l4-router": r.name, "data-status": r.status },
      el("div", { class: "panel-head" },
        el("span", {}, badge(r.status), " ", el("span", { class: "mono", text: r.name })),
        el("span", { class: "small muted", text: protocol + (r.mode ? " · " + r.mode : "") })),
      el("dl", { class: "kv" },
        r.rule ? el("dt", { text: "rule" }) : null, r.rule ? el("dd", { class: "mono", text: r.rule }) : null,
        el("dt", { text: "service" }), el("dd", { class: "mono", text: r.service || "" }),
        el("dt", { text: "entrypoints" }), el("dd", { class: "mono", text: (r.using || r.entryPoints || []).join(", ") }),
        c ? el("dt", { text: what }) : null,
        c ? el("dd", { "data-open": c.open, text: c.open + " open, " + c.total + " in all, " + bytes(c.bytesIn) + " in, " + bytes(c.bytesOut) + " out" + (failed ? ", " + plural(failed, r.sessions ? "failed session" : "failed connect") : "") }) : null),
      errs.length ? el("ul", { class: "errors" + (r.status === "warning" ? " warn" : "") }, errs.map((e) => el("li", { text: e }))) : null);
  }

  function l4ServiceCard(svc, protocol) {
    const errs = svc.error || [];
    const servers = (svc.servers || []).map((s) => Object.assign({ url: s.address, weight: s.weight, connectionFailures: 0 }, s.health || { state: "up" }));
    const up = servers.filter((s) => s.state === "up").length;
    return el("div", { class: "panel", "data-l4-service": svc.name, "data-status": svc.status },
      el("div", { class: "panel-head" },
        el("span", {}, badge(svc.status), " ", el("span", { class: "mono", text: svc.name })),
        el("span", { class: up === servers.length ? "ok-text small" : "bad-text small", text: protocol + " · " + up + "/" + servers.length + " up" })),
      el("div", { class: "sub" }, "used by ", (svc.usedBy && svc.usedBy.length) ? svc.usedBy.join(", ") : "no router"),
      errs.length ? el("ul", { class: "errors" + (svc.status === "warning" ? " warn" : "") }, errs.map((e) => el("li", { text: e }))) : null,
      servers.length ? el("ul", { class: "servers" }, servers.map((s) => serverItem(s, false))) : null);
  }

  function renderL4() {
    const l4 = state.l4 || { tcpRouters: [], tcpServices: [], udpRouters: [], udpServices: [] };
    const cards = [].concat(
      l4.tcpRouters.map((r) => l4RouterCard(r, "TCP")),
      l4.udpRouters.map((r) => l4RouterCard(r, "UDP")),
      l4.tcpServices.map((s) => l4ServiceCard(s, "TCP")),
      l4.udpServices.map((s) => l4ServiceCard(s, "UDP")));
    const routers = l4.tcpRouters.length + l4.udpRouters.length;
    $("l4-count").textContent = cards.length ? "(" + plural(routers, "router") + ")" : "";
    replace($("l4-list"), cards.length ? cards : [el("div", { class: "empty", text: "No TCP or UDP routers." })]);
  }

  function renderCertificates() {
    const certs = state.certificates || [];
    $("certificates-count").textContent = certs.length ? "(" + certs.length + ")" : "";
    replace($("certificate-list"), certs.length ? certs.map(certificateCard) : [el("div", { class: "empty", text: "No certificate: no router uses TLS." })]);
  }

  // ---------- refresh ----------
  async function refresh() {
    if (state.refreshing) { state.again = true; return; }
    state.refreshing = true;
    try {
      const [overview, routers, services, providers, certificates, tcpRouters, tcpServices, udpRouters, udpServices] = await Promise.all([
        api("/overview"), all("/http/routers"), all("/http/services"), api("/providers"), api("/tls/certificates"),
        all("/tcp/routers"), all("/tcp/services"), all("/udp/routers"), all("/udp/services"),
      ]);
      state.l4 = { tcpRouters, tcpServices, udpRouters, udpServices };
      state.certificates = certificates.body || [];
      state.overview = overview.body;
      state.routers = routers;
      state.services = services;
      state.providers = providers.body || [];
      renderOverview();
      renderRouters();
      renderServices();
      renderProviders();
      renderCertificates();
      renderL4();
      showError(null);
    } catch (e) {
      if (!(e instanceof AuthNeeded)) showError("Cannot reach the admin API: " + e.message);
    } finally {
      state.refreshing = false;
      if (state.again) { state.again = false; setTimeout(refresh, 0); }
    }
  }

  async function loadStatic() {
    try {
      const [version, eps] = await Promise.all([api("/version"), all("/entrypoints")]);
      $("version").textContent = "v" + version.body.Version;
      state.entryPoints = eps;
      replace($("explain-entrypoint"), eps.map((ep) => el("option", { value: ep.name, text: ep.name + " (" + (ep.address.endsWith(":0") ? ep.boundAddress : ep.address) + ")" })));
    } catch (e) {
      if (!(e instanceof AuthNeeded)) showError("Cannot reach the admin API: " + e.message);
    }
  }

  // ---------- live updates ----------
  function setLive(mode, text) {
    const live = $("live");
    live.dataset.mode = mode;
    live.textContent = text;
  }

  function startPolling() {
    if (state.pollTimer) return;
    setLive("polling", "polling");
    state.pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
  }

  // Server-sent events read through fetch, so that a bearer token can be sent with them.
  async function follow() {
    const headers = { Accept: "text/event-stream" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    try {
      const response = await fetch(API + "/events", { headers, cache: "no-store" });
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      stopPolling();
      setLive("live", "live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (/^event: ?update$/m.test(block)) refresh();
        }
      }
    } catch (e) {
      // Falls through to polling below.
    }
    startPolling();
    setTimeout(follow, 5000);
  }

  // ---------- explain ----------
  function explainRouterRow(r) {
    return el("div", { class: "row" + (r.result === "matched" ? " winner" : ""), "data-explain-router": r.name, "data-result": r.result },
      el("div", { class: "title" }, badge(r.result), el("span", { class: "mono", text: r.name })),
      el("div", { class: "prio", text: "priority " + r.priority }),
      r.rule ? el("div", { class: "rule" }, el("code", { text: r.rule })) : null,
      r.reasons && r.reasons.length ? el("ul", { class: "reasons" }, r.reasons.map((x) => el("li", { text: x }))) : null);
  }

  function renderExplain(x) {
    const out = [];
    out.push(el("div", { class: "verdict " + (x.matched ? "hit" : "miss"), id: "explain-verdict", "data-router": x.router || "" },
      x.matched ? badge("matched") : badge("no match", "not-matched"), " ", x.summary));
    const req = x.request;
    out.push(el("div", { class: "small muted", text: req.method + " host " + (req.host || "(none)") + " path " + req.path +
      (req.query ? "?" + req.query : "") + " from " + req.clientIp + " on " + req.entryPoint }));
    if (x.matched && x.middlewares && x.middlewares.length) {
      out.push(el("div", {}, "Middlewares, in order: ", el("span", { class: "mono", text: x.middlewares.join(" → ") })));
    }
    if (x.service) out.push(serviceCard(x.service, x.nextServer));
    out.push(el("h3", { class: "small muted", text: "Routers in the order they are tried" }));
    out.push(el("div", { class: "rows" }, x.routers.map(explainRouterRow)));
    replace($("explain-result"), out);
  }

  async function explain(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    params.set("url", $("explain-url").value.trim());
    params.set("method", $("explain-method").value);
    const ep = $("explain-entrypoint").value;
    if (ep) params.set("entryPoint", ep);
    const ip = $("explain-ip").value.trim();
    if (ip) params.set("clientIp", ip);
    for (const line of $("explain-headers").value.split("\n")) {
      if (line.trim()) params.append("header", line.trim());
    }
    const button = $("explain-submit");
    button.disabled = true;
    try {
      const { body } = await api("/explain?" + params.toString());
      renderExplain(body);
    } catch (e) {
      if (!(e instanceof AuthNeeded)) replace($("explain-result"), [el("div", { class: "verdict miss", id: "explain-verdict", text: e.message })]);
    } finally {
      button.disabled = false;
    }
  }

  // ---------- start ----------
  function start() {
    $("router-filter").addEventListener("input", renderRouters);
    $("service-filter").addEventListener("input", renderServices);
    $("explain-form").addEventListener("submit", explain);
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem("drover-token", state.token);
      $("token-bar").hidden = true;
      loadStatic();
      refresh();
    });
    setInterval(() => { if (state.providers.length) renderProviders(); }, 10000);
    loadStatic();
    refresh();
    follow();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
