// The overview and services pages: per-service figures with sparklines, recent events.

import { el, svg, replace, text } from "./dom.js";
import { age, bytes, clock, rate } from "./fmt.js";

const KEEP = 300;
const SERIES = ["conn_rate", "in_rate", "out_rate", "pending", "stalled"];
// Past this share of a limit a process figure warns (cards.rs, NEAR_LIMIT); figures
// older than STALE_MS are marked stale (cards.rs, STALE_MS).
const NEAR_LIMIT = 0.9;
const STALE_MS = 5000;
const cores = (v) => `${Math.round(Math.max(0, v) * 100)}%`;
const perSecond = (v) => `${bytes(v)}/s`;
const count = (v) => String(Math.round(v));
// Each series' name on the card and how one of its values reads (as in cards.rs).
const LABELS = {
  conn_rate: ["conn/s", rate],
  in_rate: ["in/s", perSecond],
  out_rate: ["out/s", perSecond],
  pending: ["pending", count],
  stalled: ["stalled", count],
  cpu: ["CPU", cores],
  memory: ["memory", bytes],
};

export class OverviewView {
  constructor(page) {
    this.page = page;
    this.services = new Map();
    this.process = null;
    this.events = [];
    this.dirty = true;
  }

  snapshot(msg) {
    this.services = new Map(msg.services.map((s) => [s.service, s]));
    this.process = msg.process ?? null;
    this.at = msg.at_ms;
    this.dirty = true;
  }

  stats(msg) {
    this.at = msg.at_ms;
    if (msg.process) {
      const p = this.process;
      if (!p) {
        this.process = msg.process;
      } else {
        p.now = msg.process.now;
        p.since_ms = msg.process.since_ms;
        for (const k of ["cpu", "resident"]) {
          p[k].push(...msg.process[k]);
          if (p[k].length > KEEP) p[k].splice(0, p[k].length - KEEP);
        }
      }
    }
    for (const s of msg.services) {
      const old = this.services.get(s.service);
      if (!old) { this.services.set(s.service, s); continue; }
      old.now = s.now;
      old.since_ms = s.since_ms;
      for (const k of SERIES) {
        old[k].push(...s[k]);
        if (old[k].length > KEEP) old[k].splice(0, old[k].length - KEEP);
      }
    }
    this.dirty = true;
  }

  event(e) {
    this.events.unshift(e);
    if (this.events.length > 30) this.events.length = 30;
    this.eventsDirty = true;
  }

  render() {
    if (this.dirty && this.page !== "services") this.renderProcess();
    if (this.dirty) this.renderServices();
    if (this.eventsDirty) this.renderEvents();
    this.dirty = this.eventsDirty = false;
  }

  renderServices() {
    if (this.page === "services") {
      for (const [name, s] of this.services) {
        const row = document.querySelector(`tr[data-service="${CSS.escape(name)}"]`);
        if (!row) continue;
        for (const k of ["active", "opened", "pending", "stalled"]) text(row.querySelector(`[data-k="${k}"]`), s.now[k]);
        text(row.querySelector('[data-k="bytes_in"]'), bytes(s.now.bytes_in));
        text(row.querySelector('[data-k="bytes_out"]'), bytes(s.now.bytes_out));
      }
      return;
    }
    const box = document.getElementById("services");
    if (!box) return;
    for (const [name, s] of this.services) {
      let card = box.querySelector(`article[data-service="${CSS.escape(name)}"]`);
      if (!card) {
        card = newCard(name);
        document.getElementById("no-services")?.remove();
        box.append(card);
      }
      const last = (v) => (v.length ? v[v.length - 1] : 0);
      text(card.querySelector('dd[data-k="active"]'), s.now.active);
      text(card.querySelector('dd[data-k="conn_rate"]'), rate(last(s.conn_rate)));
      text(card.querySelector('dd[data-k="in_rate"]'), `${bytes(last(s.in_rate))}/s`);
      text(card.querySelector('dd[data-k="out_rate"]'), `${bytes(last(s.out_rate))}/s`);
      text(card.querySelector('dd[data-k="pending"]'), s.now.pending);
      text(card.querySelector('dd[data-k="stalled"]'), s.now.stalled);
      card.classList.toggle("alert", s.now.stalled > 0);
      // The series share one clock: a sample a second from since_ms to now.
      const spanMs = Math.max(0, s.now.at_ms - s.since_ms);
      const stepMs = spanMs / Math.max(1, s.pending.length - 1);
      for (const k of SERIES) spark(card.querySelector(`svg[data-k="${k}"]`), s[k], k, stepMs, spanMs);
    }
  }

  // The process's card: CPU and memory with their last minutes, open files and
  // connections against their limits (warning near them), and how long it has run.
  renderProcess() {
    const p = this.process;
    const box = document.getElementById("process");
    if (!p || !box) return;
    let card = box.querySelector("article.process");
    if (!card) { card = newProcessCard(); box.append(card); }
    const n = p.now;
    text(card.querySelector('dd[data-k="cpu"]'), cores(p.cpu.length ? p.cpu[p.cpu.length - 1] : 0));
    text(card.querySelector('dd[data-k="memory"]'), bytes(n.resident_bytes));
    let alert = false;
    const limited = (k, v, limit) => {
      const dd = card.querySelector(`dd[data-k="${k}"]`);
      if (!dd) return;
      const near = limit ? v >= NEAR_LIMIT * limit : false;
      text(dd, limit ? `${v} of ${limit}` : String(v));
      dd.parentElement.classList.toggle("warn", near);
      alert ||= near;
    };
    // A count that could not be read is shown as such (that is when descriptors ran out).
    if (n.open_fds === null || n.open_fds === undefined) text(card.querySelector('dd[data-k="files"]'), "–");
    else limited("files", n.open_fds, n.max_fds);
    limited("connections", n.connections, n.connections_limit);
    const up = card.querySelector('dd[data-k="up"]');
    if (n.start_time_s === null || n.start_time_s === undefined) up?.parentElement.remove();
    else text(up, age(n.at_ms - n.start_time_s * 1000));
    card.classList.toggle("alert", alert);
    card.classList.toggle("stale", (this.at ?? n.at_ms) - n.at_ms > STALE_MS);
    const spanMs = Math.max(0, n.at_ms - p.since_ms);
    const stepMs = spanMs / Math.max(1, p.resident.length - 1);
    spark(card.querySelector('svg[data-k="cpu"]'), p.cpu, "cpu", stepMs, spanMs);
    spark(card.querySelector('svg[data-k="memory"]'), p.resident, "memory", stepMs, spanMs);
  }

  renderEvents() {
    const list = document.getElementById("events");
    if (!list) return;
    replace(list, this.events.map((e) => el("li", {},
      el("time", {}, clock(e.at_ms)), " ",
      el("span", { class: `etype ${e.type}` }, e.type.replaceAll("_", " ")), " ",
      el("span", { class: "mono" }, describe(e)))));
  }
}

function newCard(name) {
  const fig = (k, label, sparkClass) => el("div", {},
    el("dt", {}, label), el("dd", { "data-k": k }, "0"),
    sparkClass === null ? null : svg("svg", { class: `spark ${sparkClass}`, "data-k": k }));
  return el("article", { class: "card", "data-service": name },
    el("header", {}, el("h2", {}, el("a", { href: `/connections?service=${encodeURIComponent(name)}` }, name))),
    el("dl", { class: "figures" },
      fig("active", "open", null), fig("conn_rate", "conn/s", ""), fig("in_rate", "in/s", ""),
      fig("out_rate", "out/s", ""), fig("pending", "pending", ""), fig("stalled", "stalled", "warn")));
}

function newProcessCard() {
  const fig = (k, label, withSpark) => el("div", {},
    el("dt", {}, label), el("dd", { "data-k": k }, "0"),
    withSpark ? svg("svg", { class: "spark", "data-k": k }) : null);
  return el("article", { class: "card process" },
    el("header", {}, el("h2", {}, "This process"), el("span", { class: "kind stale-note" }, "figures not read for a while")),
    el("dl", { class: "figures" },
      fig("cpu", "CPU", true), fig("memory", "memory", true), fig("files", "open files", false),
      fig("connections", "connections", false), fig("up", "up", false)));
}

const W = 120, H = 28;

// A polyline over the values, scaled to the box; flat at the bottom when all zero. The
// same geometry and summary as the server's (cards.rs), so the first paint and the live
// one agree.
function spark(node, values, key, stepMs, spanMs) {
  if (!node) return;
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  node.setAttribute("preserveAspectRatio", "none");
  node.setAttribute("role", "img");
  const v = values.length === 1 ? [values[0], values[0]] : values;
  const max = Math.max(1e-9, ...v);
  const step = v.length > 1 ? W / (v.length - 1) : W;
  const pts = v.map((x, i) => `${(i * step).toFixed(1)},${(H - 2 - (x / max) * (H - 4)).toFixed(1)}`).join(" ");
  let line = node.querySelector("polyline");
  if (!line) { line = svg("polyline", { fill: "none" }); node.append(line); }
  line.setAttribute("points", pts || `0,${H - 2} ${W},${H - 2}`);
  const [label, show] = LABELS[key];
  const summary = summarise(label, values, show, spanMs);
  // The script's own tooltip reads the summary out; the server's <title> would show too.
  node.setAttribute("aria-label", summary);
  node.querySelector("title")?.remove();
  node.__spark = { values, label, show, stepMs, summary };
  hover(node);
}

function summarise(label, values, show, spanMs) {
  if (!values.length) return `${label}: no samples yet`;
  const t = `${label}: latest ${show(values[values.length - 1])}, min ${show(Math.min(...values))}, max ${show(Math.max(...values))}`;
  return spanMs > 0 ? `${t} over the last ${age(spanMs)}` : t;
}

// A vertical marker and a tooltip with the value under the pointer and when it was read.
function hover(node) {
  if (node.__hover) return;
  node.__hover = true;
  node.addEventListener("pointermove", (ev) => {
    const d = node.__spark;
    if (!d || !d.values.length) return;
    const r = node.getBoundingClientRect();
    const n = d.values.length;
    const f = Math.min(1, Math.max(0, (ev.clientX - r.left) / Math.max(1, r.width)));
    const i = Math.round(f * (n - 1));
    const x = n > 1 ? (i * W) / (n - 1) : f * W;
    let m = node.querySelector("line.marker");
    if (!m) { m = svg("line", { class: "marker", y1: 0, y2: H }); node.append(m); }
    m.setAttribute("x1", x.toFixed(1));
    m.setAttribute("x2", x.toFixed(1));
    const ago = (n - 1 - i) * d.stepMs;
    tip(ev, `${d.label} ${d.show(d.values[i])}, ${ago >= 1000 ? `${age(ago)} ago` : "now"}`, d.summary);
  });
  node.addEventListener("pointerleave", () => {
    node.querySelector("line.marker")?.remove();
    tip(null);
  });
}

function tip(ev, value, summary) {
  let box = document.getElementById("spark-tip");
  if (!ev) { if (box) box.hidden = true; return; }
  if (!box) {
    box = el("div", { id: "spark-tip", class: "spark-tip", "aria-hidden": "true" });
    document.body.append(box);
  }
  replace(box, [el("strong", {}, value), el("span", {}, summary)]);
  box.hidden = false;
  box.style.left = `${Math.min(ev.clientX + 12, window.innerWidth - box.offsetWidth - 8)}px`;
  box.style.top = `${ev.clientY + 14}px`;
}

/** How many like events the bus left out before `e` (it says so, rate-limited). */
function more(e) {
  return e.suppressed ? ` (+${e.suppressed} more since the last shown)` : "";
}

function describe(e) {
  const c = e.connection;
  switch (e.type) {
    case "connection_opened": return `#${c.id} ${c.service}/${c.transport} from ${c.peer}`;
    case "connection_closed": return `#${c.id} ${c.service} ${e.reason}: ${e.detail}`;
    // At most one refusal a second per service and reason, twenty errors per service and
    // kind; the rest are counted in the next shown.
    case "refused": return `${e.service} refused ${e.peer}: ${e.reason}${more(e)}`;
    case "protocol_error": return `${e.service}: ${e.kind} ${e.message}${more(e)}`;
    case "slow_callback": return `${e.callback} ran ${e.duration_ms.toFixed(1)}ms`;
    case "listener_started": case "listener_stopped": return `${e.service} ${e.endpoint} (${e.local})`;
    case "deferred_detected": return `${e.detector}: ${chain(e.deferred)} — ${e.detail}`;
    case "deferred_ended": return `${e.deferred.state}: ${chain(e.deferred)}`;
    default: return "";
  }
}

function chain(d) {
  return [`Deferred ${d.id}`, d.label, `at ${d.site}`, d.failure].filter(Boolean).join(" ");
}
