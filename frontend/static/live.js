// The one WebSocket of a page: reconnects with backoff, applies messages, pauses, and
// renders at most every RENDER_MS whatever the event rate.

import { el, replace, text } from "./dom.js";

export const RENDER_MS = 250;
const PAUSE_CAP = 10000; // events held while paused before a resync is cheaper

// Figures the browser test reads: event-to-DOM latencies and render times.
const probe = (window.__weft = { latencies: [], renders: [], events: 0, errors: [] });

export class Live {
  // view: { snapshot(msg), event(e), stats(msg), render() }
  constructor(view) {
    this.view = view;
    this.paused = false;
    this.held = [];
    this.heldStats = null;
    this.resyncOnResume = false;
    this.pendingAt = []; // at_ms of events applied since the last render
    this.lastRender = 0;
    this.timer = null;
    this.backoff = 500;
    this.alerts = { detections: {}, dropped: {} };
    this.stalledNow = 0;
    this.lagged = 0;
    this.dot = document.getElementById("live-dot");
    this.state = document.getElementById("live-state");
    this.badge = document.getElementById("new-badge");
    const pause = document.getElementById("pause");
    pause?.addEventListener("click", () => {
      this.paused ? this.resume() : this.pause();
      text(pause, this.paused ? "Resume" : "Pause");
    });
    this.badge?.addEventListener("click", () => { this.resume(); text(pause, "Pause"); });
    this.connect();
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.setState("connecting…", "wait");
    ws.onopen = () => { this.backoff = 500; this.setState("live", "ok"); };
    ws.onmessage = (m) => this.receive(JSON.parse(m.data));
    ws.onclose = () => {
      const delay = this.backoff * (0.75 + Math.random() / 2);
      this.backoff = Math.min(this.backoff * 2, 15000);
      this.setState(`reconnecting in ${Math.ceil(delay / 1000)}s`, "bad");
      setTimeout(() => this.connect(), delay);
    };
    this.ws = ws;
  }

  setState(label, cls) {
    text(this.state, label);
    if (this.dot) this.dot.className = `dot ${cls}`;
  }

  receive(msg) {
    switch (msg.type) {
      case "snapshot":
        this.held = [];
        this.resyncOnResume = false;
        this.noteAlerts(msg);
        this.view.snapshot(msg);
        break;
      case "events":
        for (const e of msg.events) {
          // The banner follows reloads at once, paused or not.
          if (e.type === "config_reloaded") this.alerts.last_reload = { result: e.result, message: e.message, at_ms: e.at_ms };
          if (this.paused) {
            if (this.held.length < PAUSE_CAP) this.held.push(e); else this.resyncOnResume = true;
          } else {
            this.view.event(e);
            this.pendingAt.push(e.at_ms);
          }
        }
        if (msg.brief_omitted) this.view.omitted?.(msg.brief_omitted);
        if (this.paused) this.showBadge();
        break;
      case "stats":
        if (this.paused) { this.heldStats = msg; return; }
        this.noteAlerts(msg);
        this.view.stats(msg);
        break;
      case "lagged":
        this.lagged += msg.missed;
        break;
      default:
        return;
    }
    this.schedule();
  }

  noteAlerts(msg) {
    this.alerts = msg.alerts || this.alerts;
    this.stalledNow = (msg.services || []).reduce((n, s) => n + (s.now?.stalled || 0), 0);
  }

  pause() { this.paused = true; this.showBadge(); }

  resume() {
    this.paused = false;
    if (this.resyncOnResume) { this.ws.close(); } // the reconnect brings a fresh snapshot
    for (const e of this.held) { this.view.event(e); this.pendingAt.push(e.at_ms); }
    this.held = [];
    if (this.heldStats) { this.noteAlerts(this.heldStats); this.view.stats(this.heldStats); this.heldStats = null; }
    if (this.badge) this.badge.hidden = true;
    this.schedule();
  }

  showBadge() {
    if (!this.badge) return;
    this.badge.hidden = false;
    text(this.badge, `${this.held.length}${this.resyncOnResume ? "+" : ""} new`);
  }

  // At most one render per RENDER_MS; the first after a quiet spell renders at once.
  schedule() {
    if (this.timer !== null || this.paused) return;
    const wait = Math.max(0, this.lastRender + RENDER_MS - performance.now());
    this.timer = setTimeout(() => this.render(), wait);
  }

  render() {
    this.timer = null;
    this.lastRender = performance.now();
    this.view.render();
    this.banner();
    const now = Date.now();
    for (const at of this.pendingAt) probe.latencies.push(now - at);
    probe.events += this.pendingAt.length;
    this.pendingAt = [];
    probe.renders.push(this.lastRender);
  }

  banner() {
    const node = document.getElementById("banner");
    if (!node) return;
    const d = this.alerts.detections || {};
    const parts = [];
    const stalled = Math.max(this.stalledNow, 0);
    if (stalled > 0 || d.stalled > 0) {
      parts.push(el("a", { href: "/deferreds?state=stalled", id: "banner-stalled" },
        stalled > 0 ? `${stalled} Deferred${stalled === 1 ? "" : "s"} stalled now` : `${d.stalled} stalled since start`));
    }
    for (const [k, label] of [["deadlock", "deadlocked Deferred"], ["slow", "slow callback"], ["unhandled", "unhandled failure"], ["leaked", "leaked Deferred"]]) {
      if (d[k] > 0) parts.push(el("a", { href: `/deferreds?state=${k}`, id: `banner-${k}` }, `${d[k]} ${label}${d[k] === 1 ? "" : "s"}`));
    }
    const dropped = Object.values(this.alerts.dropped || {}).reduce((a, b) => a + b, 0);
    if (dropped > 0) parts.push(el("span", { id: "banner-dropped" }, `${dropped} events dropped (history or live feed could not keep up)`));
    if (this.lagged > 0) parts.push(el("span", { id: "banner-lagged" }, `this page missed ${this.lagged} events and was resynced`));
    const reload = this.alerts.last_reload;
    if (reload && reload.result !== "ok") {
      const at = new Date(reload.at_ms).toLocaleTimeString();
      parts.push(el("span", { id: "banner-reload" }, `configuration reload ${reload.result} at ${at}, nothing changed: ${reload.message}`));
    }
    node.hidden = parts.length === 0;
    const joined = [];
    parts.forEach((p, i) => { if (i) joined.push(el("span", { class: "sep" }, "·")); joined.push(p); });
    replace(node, joined);
  }
}

export async function post(path) {
  const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}
