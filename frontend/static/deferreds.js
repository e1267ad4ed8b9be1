// The Deferred tabs: refreshed from the JSON API when the figures say something changed.

import { el, instanceQuery, reactorsShown, replace, text } from "./dom.js";
import { age, millis } from "./fmt.js";

const MIN_REFRESH_MS = 1000;

export class DeferredsView {
  constructor(page) {
    this.page = page;
    const p = new URLSearchParams(location.search);
    this.tab = p.get("state") || "pending";
    this.service = p.get("service") || "";
    this.reactor = p.get("reactor") || "";
    this.instance = p.get("instance") || "";
    this.key = "";
    this.lastFetch = 0;
    this.rows = null;
    // A single chain's page (/deferreds/ID) is drawn by the server: it is drawn again when
    // its chain ends or is flagged (a cancel from its own button, say).
    const shown = location.pathname.match(/^\/deferreds\/(\d+)$/);
    this.shownId = page === "deferred" && shown ? shown[1] : null;
  }

  snapshot(msg) { this.changed(msg); }
  stats(msg) { this.changed(msg); }
  event(e) {
    if (!e.type.startsWith("deferred")) return;
    this.key = "";
    if (this.shownId !== null && String(e.deferred?.id) === this.shownId) {
      this.shownId = null;
      location.reload();
    }
  }

  // Pending and stalled counts and detections summarise the lists; refetch when they move.
  changed(msg) {
    const s = msg.services.map((x) => `${x.now.pending}/${x.now.stalled}`).join(",");
    const key = `${s}|${JSON.stringify(msg.alerts.detections)}`;
    if (key !== this.key) { this.key = key; this.stale = true; }
  }

  async render() {
    if (this.page !== "deferreds" || !this.stale) return;
    if (performance.now() - this.lastFetch < MIN_REFRESH_MS) {
      setTimeout(() => window.__weft.live?.schedule(), MIN_REFRESH_MS);
      return;
    }
    this.stale = false;
    this.lastFetch = performance.now();
    const q = new URLSearchParams({ state: this.tab, limit: "500" });
    if (this.service) q.set("service", this.service);
    if (this.reactor) q.set("reactor", this.reactor);
    if (this.instance) q.set("instance", this.instance);
    const r = await fetch(`/api/deferreds?${q}`);
    if (!r.ok) return;
    const page = await r.json();
    const body = document.querySelector("#deferreds tbody");
    const colspan = reactorsShown("deferreds") ? 10 : 9;
    replace(body, page.items.length ? page.items.map(row) : [el("tr", { class: "empty" }, el("td", { colspan }, "None."))]);
    text(document.getElementById("hidden-count"), page.hidden > 0 ? `${page.hidden} more not shown` : "");
  }
}

function row(d) {
  const pending = ["pending", "running", "paused"].includes(d.state);
  const flags = ["stalled", "slow", "unhandled", "leaked", "deadlock"].filter((f) => d[f]);
  return el("tr", { "data-id": d.id },
    el("td", {}, el("a", { href: `/deferreds/${d.id}${instanceQuery(d.instance)}` }, d.id)),
    el("td", {}, age(d.age_ms)),
    el("td", {}, d.task ? el("span", { class: "pill task" }, "task") : "", d.task ? " " : "", d.label || ""),
    el("td", { class: "mono" }, d.site),
    el("td", {}, d.service || ""),
    el("td", {}, d.connection_id != null ? el("a", { href: `/connections/${d.connection_id}` }, d.connection_id) : ""),
    el("td", { class: "mono" }, d.task ? `${d.task.polls} polls, busy ${millis(d.task.busy_us / 1000)}` : "", d.step_name ? el("strong", {}, d.step_name) : "", d.step_name && d.current_step ? " " : "", d.current_step || ""),
    el("td", {}, el("span", { class: `pill ${d.state}` }, d.state),
      ...flags.map((f) => el("span", { class: `pill ${f === "stalled" || f === "slow" ? "warn" : "bad"}` }, f))),
    reactorsShown("deferreds") ? el("td", { class: "reactor" }, d.reactor ?? "") : null,
    el("td", {}, pending && !d.task ? el("button", { type: "button", class: "btn small", "data-action": "cancel", "data-id": d.id }, "Cancel") : null));
}
