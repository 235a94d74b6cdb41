// crm-mcp dashboard. Plain JavaScript, no build step, no dependencies.
//
// Polls GET {base}/api/state every 2 s (paused while the tab is hidden) and redraws only the
// sections whose data changed. Retry posts to {base}/api/retry, the same code path as the
// retry_failed_sync tool; operations retried from here are followed through
// {base}/api/operations/{id} (the sync://operations/{id} view) until they are delivered or dead.
// Text from the server (CRM errors, names) is only ever set as textContent, never parsed as HTML.
"use strict";

(() => {
  const BASE = location.pathname.replace(/\/+$/, "");
  const API = BASE + "/api";
  const POLL_MS = 2000;
  const TOKEN_KEY = "crm-mcp-dashboard-token";
  const TRACK_KEY = "crm-mcp-dashboard-retried";
  const FINAL = new Set(["succeeded", "dead"]);
  const STATUS_WORDS = { pending: "requeued", in_flight: "delivering", succeeded: "delivered", dead: "dead again" };

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let timer = null;
  let inFlight = false;
  const drawn = {}; // section -> JSON it was last drawn from
  let tracked = loadTracked();

  const $ = (id) => document.getElementById(id);

  // -- tiny DOM helper ----------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const svg = (tag, attrs) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  };

  // -- formatting ---------------------------------------------------------------------------------
  const pct = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(x >= 0.995 || x === 0 ? 0 : 1)}%`);
  const num = (x) => (x === null || x === undefined ? "—" : Number(x).toLocaleString());
  function dur(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1).replace(/\.0$/, "")} h`;
    return `${(s / 86400).toFixed(1).replace(/\.0$/, "")} d`;
  }
  const ago = (iso) => (iso ? `${dur((Date.now() - Date.parse(iso)) / 1000)} ago` : "—");
  const when = (iso) => h("time", { datetime: iso, title: iso ? new Date(iso).toLocaleString() : "" }, ago(iso));

  // -- API ------------------------------------------------------------------------------------------
  class AuthNeeded extends Error {}

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(API + path, { ...options, headers, cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) throw new AuthNeeded();
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = { error: `HTTP ${response.status}` };
    }
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  // -- polling --------------------------------------------------------------------------------------
  async function tick() {
    if (inFlight) return;
    inFlight = true;
    try {
      await followTracked(); // first, so the status read next is never older than what it shows
      const state = await api("/state");
      $("token-form").hidden = true;
      showBanner(null);
      render(state);
      refreshTimes();
      pulse("on");
    } catch (err) {
      if (err instanceof AuthNeeded) {
        askForToken();
      } else {
        showBanner(`Cannot reach the server: ${err.message}. Retrying every 2 s.`);
        pulse("err");
      }
    } finally {
      inFlight = false;
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!document.hidden && $("token-form").hidden) timer = setTimeout(tick, POLL_MS);
  }

  function pulse(kind) {
    const dot = $("pulse");
    dot.className = "pulse";
    void dot.offsetWidth; // restart the animation
    dot.className = `pulse ${kind}`;
  }

  function showBanner(text) {
    const banner = $("banner");
    banner.hidden = !text;
    banner.textContent = text || "";
  }

  function askForToken() {
    const form = $("token-form");
    const first = form.hidden;
    form.hidden = false;
    $("verdict").textContent = "token needed";
    $("verdict").dataset.verdict = "unknown";
    if (token) showBanner("The token was refused; paste the current one.");
    if (first) $("token-input").focus();
  }

  // -- rendering ------------------------------------------------------------------------------------
  function section(name, data, draw) {
    const key = JSON.stringify(data);
    if (drawn[name] === key) return;
    drawn[name] = key;
    draw(data);
  }

  function render(state) {
    const s = state.status;
    const verdict = $("verdict");
    verdict.dataset.verdict = s.verdict;
    verdict.textContent = s.verdict;
    const updated = $("updated");
    updated.textContent = `updated ${new Date(s.generated_at).toLocaleTimeString()}`;
    updated.title = s.generated_at;

    section("tiles", [s.totals, s.success_rate, s.pending_backlog, s.due_now, s.in_flight, s.dead_letters,
      s.oldest_pending_age_s, s.live_workers, s.workers.length, s.attempts_in_window], () => drawTiles(s));
    section("health", [s.verdict, s.reasons, s.recommendations], () => drawHealth(s));
    // the samples so far, then the snapshot on screen (the same numbers as the tiles)
    const now = { at: s.generated_at, success_rate: s.success_rate };
    const last = state.history[state.history.length - 1];
    const series = last && Date.parse(last.at) >= Date.parse(now.at) ? state.history : [...state.history, now];
    section("chart", [series, s.window_seconds], () => drawChart(series, s.window_seconds));
    section("connections", [s.connectors, s.recent_failures, state.dead_letters], () =>
      drawConnections(s, state.dead_letters));
    section("dead", state.dead_letters, () => drawDeadLetters(state.dead_letters));
    section("failures", s.recent_failures, () => drawFailures(s.recent_failures));
    section("queue", [s.totals, s.workers, s.due_now, s.oldest_pending_age_s], () => drawQueue(s));
  }

  // sections redraw only when their data changes; "3 min ago" must still move on
  function refreshTimes() {
    for (const el of document.querySelectorAll("time[datetime]")) el.textContent = ago(el.getAttribute("datetime"));
  }

  function tile(label, value, hint, tone) {
    return h("div", { class: `tile ${tone || ""}`, data: { tile: label } },
      h("div", { class: "label", text: label }),
      h("div", { class: "value", text: value }),
      h("div", { class: "hint", text: hint || "\u00a0", title: hint || "" }));
  }

  function drawTiles(s) {
    const rate = s.success_rate;
    $("tiles").replaceChildren(
      tile("Delivered", num(s.totals.succeeded), `${num(s.attempts_in_window)} attempt(s) in ${dur(s.window_seconds)}`, "ok"),
      tile("Success rate", pct(rate), `last ${dur(s.window_seconds)}`, rate === null ? "" : rate < 0.9 ? "bad" : "ok"),
      tile("Pending", num(s.pending_backlog), `${num(s.due_now)} due now`, s.pending_backlog ? "warn" : ""),
      tile("In flight", num(s.in_flight), "being delivered"),
      tile("Dead letters", num(s.dead_letters), s.dead_letters ? "need a retry" : "none", s.dead_letters ? "bad" : "ok"),
      tile("Oldest pending", dur(s.oldest_pending_age_s), "age of the backlog"),
      tile("Workers", `${num(s.live_workers)}`, `${num(s.workers.length)} seen`, s.live_workers ? "ok" : "bad"),
    );
  }

  function drawHealth(s) {
    const parts = [
      h("div", { class: "verdict-line" },
        h("span", { class: "chip", data: { verdict: s.verdict }, text: s.verdict }),
        h("span", { class: "muted", text: s.reasons.length ? `${s.reasons.length} reason(s)` : "nothing needs attention" })),
    ];
    if (s.reasons.length) parts.push(h("ul", { class: "reasons" }, s.reasons.map((r) => h("li", { text: r }))));
    if (s.recommendations.length) {
      parts.push(h("h3", { class: "small muted", text: "Recommended" }));
      parts.push(h("ul", { class: "advice" }, s.recommendations.map((r) => h("li", { text: r }))));
    }
    $("health").replaceChildren(...parts);
  }

  function drawChart(history, windowSeconds) {
    const box = $("chart");
    $("chart-window").textContent = `(over the last ${dur(windowSeconds)}, sampled every 5 s while watched)`;
    const points = history.filter((p) => p.success_rate !== null);
    if (points.length < 2) {
      const latest = history[history.length - 1];
      const text = latest && latest.success_rate !== null ? `Now ${pct(latest.success_rate)}; ` : "No finished attempts yet; ";
      box.replaceChildren(h("p", { class: "empty", text: `${text}the line starts with the next sample.` }));
      return;
    }
    const W = 600, H = 170, L = 34, R = 8, T = 8, B = 20;
    const t0 = Date.parse(history[0].at), t1 = Date.parse(history[history.length - 1].at);
    const x = (p) => L + ((Date.parse(p.at) - t0) / Math.max(1, t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `Success rate, latest ${pct(points[points.length - 1].success_rate)}` });
    for (const v of [0, 0.5, 1]) {
      root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const label = svg("text", { class: "grid-label", x: 2, y: y(v) + 3 });
      label.textContent = `${v * 100}%`;
      root.append(label);
    }
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(p).toFixed(1)},${y(p.success_rate).toFixed(1)}`).join(" ");
    const last = points[points.length - 1];
    root.append(svg("path", { class: "area", d: `${d} L${x(last).toFixed(1)},${y(0)} L${x(points[0]).toFixed(1)},${y(0)} Z` }));
    root.append(svg("path", { class: "line", d }));
    const span = svg("text", { class: "grid-label", x: W - R, y: H - 4, "text-anchor": "end" });
    span.textContent = `last ${dur((t1 - t0) / 1000)}`;
    root.append(span);
    box.replaceChildren(root);
  }

  function gauge(label, remaining, limit, note) {
    if (limit === null || limit === undefined) {
      return h("div", { class: "gauge" }, h("div", { class: "legend" }, h("span", { text: label }), h("span", { text: note || "not reported" })));
    }
    const left = remaining === null || remaining === undefined ? null : Math.max(0, Math.min(limit, remaining));
    const share = left === null ? 1 : left / Math.max(1, limit);
    const fill = h("div", { class: `fill ${share < 0.1 ? "bad" : share < 0.3 ? "warn" : ""}` });
    fill.style.width = `${(share * 100).toFixed(1)}%`;
    return h("div", { class: "gauge" },
      h("div", { class: "legend" }, h("span", { text: label }),
        h("span", { text: left === null ? `${num(limit)} (no reading yet)` : `${num(left)} / ${num(limit)} left${note ? " " + note : ""}` })),
      h("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": left ?? limit }, fill));
  }

  function breakerChip(b) {
    if (!b || !b.state) return h("span", { class: "chip", text: "no breaker" });
    const tone = b.state === "closed" ? "ok" : b.state === "open" ? "bad" : "warn";
    const text = b.state === "open" ? `breaker open ${dur(b.open_for_s)}` : `breaker ${b.state.replace("_", "-")}`;
    return h("span", { class: `chip ${tone}`, text, title: `failure rate ${pct(b.failure_rate)}, trips ${b.trips ?? 0}` });
  }

  function drawConnections(s, dead) {
    const names = Object.keys(s.connectors).sort();
    if (!names.length) {
      $("connections").replaceChildren(h("p", { class: "empty", text: "No connection is configured." }));
      return;
    }
    $("connections").replaceChildren(...names.map((name) => {
      const c = s.connectors[name];
      const deadHere = dead.entries.filter((e) => e.connection === name).length;
      const failing = s.recent_failures.filter((f) => f.connection === name).length;
      const body = [];
      const health = c.health || {};  // judged as check_integration_health judges it (crm_mcp.views)
      if (health.verdict) {
        body.push(h("div", { class: "verdict-line", data: { connectionVerdict: name } },
          h("span", { class: "chip", data: { verdict: health.verdict }, text: health.verdict }),
          h("span", { class: "muted small", text: health.reasons.length ? `${health.reasons.length} reason(s)` : "nothing needs attention" })));
        if (health.reasons.length) body.push(h("ul", { class: "reasons small" }, health.reasons.map((r) => h("li", { text: r }))));
        if (health.recommendations.length) {
          body.push(h("details", { class: "small" },
            h("summary", { class: "muted", text: `What to do (${health.recommendations.length})` }),
            h("ul", { class: "advice" }, health.recommendations.map((r) => h("li", { text: r })))));
        }
      }
      const b = c.backlog;
      if (b) {
        const tone = b.dead_letters ? "bad-text" : b.pending || b.in_flight ? "warn-text" : "";
        body.push(h("dl", { class: "kv", data: { backlog: name } },
          h("dt", { text: "Pending / in flight / dead" }),
          h("dd", { class: tone, text: `${num(b.pending)} / ${num(b.in_flight)} / ${num(b.dead_letters)}` }),
          h("dt", { text: "Oldest pending" }), h("dd", { text: b.oldest_pending_age_s === null ? "—" : dur(b.oldest_pending_age_s) })));
      }
      if (c.webhooks_only) body.push(h("p", { class: "muted small", text: "Receives webhooks only (no CRM calls)." }));
      else if (c.error) body.push(h("p", { class: "err", text: c.error }));
      else if (!c.limiter && c.note) body.push(h("p", { class: "muted small", text: c.note }));
      else {
        const lim = c.limiter || {};
        const q = c.quota || {};  // crm_mcp.views.quota: the figures of /metrics and `crm-mcp status`
        body.push(gauge("Burst quota", q.burst_remaining, q.burst_limit, lim.interval_s ? `per ${dur(lim.interval_s)}` : ""));
        body.push(gauge("Daily quota", q.daily_remaining, q.daily_limit));
        if (c.preflight) {
          const ok = c.preflight.ok;
          body.push(h("div", { class: "line" },
            h("span", { class: `chip ${ok ? "ok" : "bad"}`, text: ok ? "preflight ok" : "preflight failing" }),
            h("span", { class: "muted small" }, "checked ", when(c.preflight.checked_at))));
          if (!ok && c.preflight.problem) body.push(h("div", { class: "err", text: String(c.preflight.problem) }));
        }
        body.push(h("dl", { class: "kv" },
          h("dt", { text: "Rate-limit waits" }), h("dd", { text: `${num(lim.waits ?? 0)} (${dur(lim.waited_s ?? 0)})` }),
          h("dt", { text: "Breaker calls / failure rate" }), h("dd", { text: `${num(c.breaker?.calls_in_window ?? 0)} / ${pct(c.breaker?.failure_rate ?? 0)}` })));
      }
      const deadText = `${b ? b.dead_letters : deadHere}${!b && dead.has_more ? "+" : ""} dead`;
      body.push(h("dl", { class: "kv" },
        h("dt", { text: "Recent failed attempts" }), h("dd", { text: num(failing) })));
      const retryAll = (b ? b.dead_letters : deadHere)
        ? h("button", { class: "btn small", type: "button", data: { retryConnection: name },
          onclick: () => confirmRetry({ connection: name }, `Retry every dead operation of ${name}?`) }, `Retry ${deadText}`)
        : null;
      return h("article", { class: "card", data: { connection: name } },
        h("div", { class: "card-head" },
          h("div", {}, h("div", { class: "name", text: name }), h("div", { class: "muted small", text: c.provider || "" })),
          c.webhooks_only || c.error ? null : breakerChip(c.breaker)),
        ...body,
        retryAll);
    }));
  }

  function drawDeadLetters(page) {
    $("dlq-count").textContent = page.entries.length ? `${page.entries.length}${page.has_more ? "+" : ""} waiting` : "";
    if (!page.entries.length) {
      $("dead-letters").replaceChildren(h("p", { class: "empty ok-text", text: "Nothing failed for good. ✓" }));
      return;
    }
    const rows = page.entries.map((e) =>
      h("tr", { data: { entry: e.id, operation: e.operation_id } },
        h("td", { "data-label": "Operation" }, h("div", {}, h("div", { text: e.action }), h("div", { class: "mono muted small", text: e.operation_id }),
          e.correlation_id ? h("div", { class: "mono muted small", title: "correlation id: in the logs and traces of this operation", data: { correlation: e.correlation_id }, text: `corr ${e.correlation_id}` }) : null)),
        h("td", { "data-label": "Connection", text: e.connection }),
        h("td", { "data-label": "Error" }, h("div", { class: "err", text: e.reason })),
        h("td", { "data-label": "Attempts", text: num(e.attempts) }),
        h("td", { "data-label": "Dead since" }, when(e.dead_at)),
        h("td", { class: "act" }, h("button", { class: "btn primary small", type: "button", data: { retry: e.operation_id },
          "aria-label": `Retry ${e.action} ${e.operation_id}`,
          onclick: () => confirmRetry({ operation_id: e.operation_id }, `Retry ${e.action} on ${e.connection} (${e.operation_id})?`) }, "Retry"))));
    $("dead-letters").replaceChildren(h("table", {},
      h("colgroup", {}, h("col", { class: "c-op" }), h("col", { class: "c-conn" }), h("col"), h("col", { class: "c-att" }), h("col", { class: "c-when" }), h("col", { class: "c-act" })),
      h("thead", {}, h("tr", {}, ["Operation", "Connection", "Last error", "Attempts", "Dead since", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, rows)));
  }

  function drawFailures(failures) {
    if (!failures.length) {
      $("failures").replaceChildren(h("li", { class: "empty", text: "No failed attempts." }));
      return;
    }
    $("failures").replaceChildren(...failures.map((f) => h("li", {},
      h("div", { class: "line" },
        h("span", { class: `chip ${f.outcome === "dead" ? "bad" : "warn"}`, text: f.outcome === "dead" ? "dead" : "will retry" }),
        h("strong", { text: f.action }), h("span", { class: "muted", text: f.connection }),
        h("span", { class: "muted small", text: `attempt ${f.attempt}${f.status_code ? ` · HTTP ${f.status_code}` : ""}` }),
        h("span", { class: "muted small" }, when(f.at))),
      h("div", { class: "err", text: `${f.error_type || "error"}: ${f.error || ""}` }))));
  }

  function drawQueue(s) {
    const t = s.totals;
    const workers = s.workers.length
      ? s.workers.map((w) => h("li", {}, h("div", { class: "line" },
        h("span", { class: `chip ${w.alive ? "ok" : "bad"}`, text: w.alive ? "alive" : "silent" }),
        h("span", { class: "mono small", text: w.worker_id }),
        h("span", { class: "muted small", text: `pid ${w.pid} · ${num(w.processed)} processed · seen ` }, when(w.seen_at)))))
      : [h("li", { class: "empty", text: "No worker has reported. Run `crm-mcp serve` without --no-worker, or `crm-mcp worker`." })];
    $("queue").replaceChildren(
      h("dl", { class: "kv" },
        h("dt", { text: "Pending (due now)" }), h("dd", { text: `${num(t.pending)} (${num(s.due_now)})` }),
        h("dt", { text: "In flight" }), h("dd", { text: num(t.in_flight) }),
        h("dt", { text: "Delivered" }), h("dd", { text: num(t.succeeded) }),
        h("dt", { text: "Dead" }), h("dd", { text: num(t.dead) }),
        h("dt", { text: "Oldest pending" }), h("dd", { text: dur(s.oldest_pending_age_s) })),
      h("h3", { class: "small muted", text: "Workers" }),
      h("ul", { class: "list" }, workers));
  }

  // -- retry ----------------------------------------------------------------------------------------
  function confirmRetry(selection, question) {
    const dialog = $("confirm");
    $("confirm-text").textContent = question;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "ok") retry(selection);
    };
    dialog.showModal();
    $("confirm-ok").focus();
  }

  async function retry(selection) {
    const buttons = document.querySelectorAll("button[data-retry], button[data-retry-connection]");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const result = await api("/retry", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CRM-MCP-Dashboard": "1" },
        body: JSON.stringify(selection),
      });
      for (const op of result.requeued) {
        tracked = tracked.filter((t) => t.id !== op.id);
        tracked.unshift({ id: op.id, action: op.action, connection: op.connection, status: op.status, at: new Date().toISOString() });
      }
      tracked = tracked.slice(0, 20);
      saveTracked();
      drawTracked();
      showBanner(result.count ? null : result.message);
    } catch (err) {
      if (err instanceof AuthNeeded) askForToken();
      else showBanner(`Retry failed: ${err.message}`);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      for (const key of Object.keys(drawn)) delete drawn[key]; // redraw everything now
      tick();
    }
  }

  async function followTracked() {
    const open = tracked.filter((t) => !FINAL.has(t.status));
    await Promise.all(open.map(async (t) => {
      try {
        const op = await api(`/operations/${encodeURIComponent(t.id)}`);
        t.status = op.status;
        t.last_error = op.last_error;
        t.attempts = op.attempts;
      } catch (err) {
        if (err instanceof AuthNeeded) throw err;
      }
    }));
    if (open.length) saveTracked();
    drawTracked();
  }

  function drawTracked() {
    $("retried-panel").hidden = !tracked.length;
    section("tracked", tracked, () => {
      $("retried").replaceChildren(...tracked.map((t) => {
        const tone = t.status === "succeeded" ? "ok" : t.status === "dead" ? "bad" : "info";
        return h("li", { data: { op: t.id, status: t.status } },
          h("div", { class: "line" },
            h("span", { class: `chip ${tone}`, data: { opStatus: t.status }, text: STATUS_WORDS[t.status] || t.status }),
            h("strong", { text: t.action }), h("span", { class: "muted", text: t.connection }),
            h("span", { class: "mono muted small", text: t.id })),
          t.status === "dead" && t.last_error ? h("div", { class: "err", text: t.last_error }) : null);
      }));
    });
  }

  function loadTracked() {
    try {
      const value = JSON.parse(sessionStorage.getItem(TRACK_KEY) || "[]");
      return Array.isArray(value) ? value : [];
    } catch {
      return [];
    }
  }
  function saveTracked() {
    sessionStorage.setItem(TRACK_KEY, JSON.stringify(tracked));
  }

  // -- start ----------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token-input").value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      $("token-form").hidden = true;
      tick();
    });
    $("retried-clear").addEventListener("click", () => {
      tracked = [];
      saveTracked();
      drawTracked();
    });
    document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(timer) : tick()));
    drawTracked();
    tick();
  });
})();
