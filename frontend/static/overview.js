// The overview and services pages: per-service figures with sparklines, recent events.

import { el, svg, replace, text } from "./dom.js";
import { bytes, clock, rate } from "./fmt.js";

const KEEP = 300;
const SERIES = ["conn_rate", "in_rate", "out_rate", "pending", "stalled"];

export class OverviewView {
  constructor(page) {
    this.page = page;
    this.services = new Map();
    this.events = [];
    this.dirty = true;
  }

  snapshot(msg) {
    this.services = new Map(msg.services.map((s) => [s.service, s]));
    this.dirty = true;
  }

  stats(msg) {
    for (const s of msg.services) {
      const old = this.services.get(s.service);
      if (!old) { this.services.set(s.service, s); continue; }
      old.now = s.now;
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
      for (const k of SERIES) spark(card.querySelector(`svg[data-k="${k}"]`), s[k]);
    }
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

// A polyline over the last values, scaled to the box; flat at the bottom when all zero.
function spark(node, values) {
  if (!node) return;
  const w = 120, h = 28;
  node.setAttribute("viewBox", `0 0 ${w} ${h}`);
  node.setAttribute("preserveAspectRatio", "none");
  const v = values.slice(-120);
  const max = Math.max(1e-9, ...v);
  const step = v.length > 1 ? w / (v.length - 1) : w;
  const pts = v.map((x, i) => `${(i * step).toFixed(1)},${(h - 2 - (x / max) * (h - 4)).toFixed(1)}`).join(" ");
  let line = node.querySelector("polyline");
  if (!line) { line = svg("polyline", { fill: "none" }); node.append(line); }
  line.setAttribute("points", pts || `0,${h - 2} ${w},${h - 2}`);
}

function describe(e) {
  const c = e.connection;
  switch (e.type) {
    case "connection_opened": return `#${c.id} ${c.service}/${c.transport} from ${c.peer}`;
    case "connection_closed": return `#${c.id} ${c.service} ${e.reason}: ${e.detail}`;
    case "refused": return `${e.service} refused ${e.peer}: ${e.reason}`;
    case "protocol_error": return `${e.service}: ${e.kind} ${e.message}`;
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
