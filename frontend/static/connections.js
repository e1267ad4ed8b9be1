// The connections table (live, filtered, sortable, capped) and one connection's page.

import { el, instanceQuery, ownInstance, reactorsShown, replace, text } from "./dom.js";
import { age, bytes } from "./fmt.js";

export const ROW_CAP = 500;

function params() {
  const p = new URLSearchParams(location.search);
  return {
    service: p.get("service") || "",
    state: p.get("state") || "",
    peer: p.get("peer") || "",
    reactor: p.get("reactor") || "",
    instance: p.get("instance") || "",
    sort: p.get("sort") || "id",
    dir: p.get("dir") || "desc",
  };
}

export class ConnectionsView {
  constructor() {
    this.f = params();
    this.open = new Map();
    this.closed = new Map();
    this.hiddenLive = 0;
    // Brief connections the feed counted instead of listing (history has them).
    this.briefOmitted = 0;
    this.dirty = true;
    this.loadClosed();
    this.wire();
  }

  wire() {
    const form = document.getElementById("filters");
    form?.addEventListener("input", () => this.readForm(form));
    form?.addEventListener("change", () => this.readForm(form));
    form?.addEventListener("submit", (ev) => { ev.preventDefault(); this.readForm(form); });
    // Each header is a link to the sorted list (the server sorts too); a plain click
    // sorts in place instead, a modified one (new tab, new window) follows the link.
    for (const th of document.querySelectorAll("#connections th[data-sort]")) {
      th.addEventListener("click", (ev) => {
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        Object.assign(this.f, toggled(this.f, th.dataset.sort));
        this.pushUrl();
      });
    }
  }

  readForm(form) {
    const data = new FormData(form);
    const key = () => `${this.f.state}|${this.f.service}|${this.f.reactor}|${this.f.instance}`;
    const before = key();
    for (const k of ["service", "state", "peer", "reactor", "instance"]) this.f[k] = String(data.get(k) || "");
    if (before !== key()) this.loadClosed();
    this.pushUrl();
  }

  // Filters and sort live in the URL, so a reload or a shared link shows the same view.
  pushUrl() {
    history.replaceState(null, "", href(this.f));
    this.dirty = true;
    window.__weft.live?.schedule();
  }

  async loadClosed() {
    this.closed = new Map();
    if (this.f.state === "open") return;
    const q = new URLSearchParams({ state: "closed", limit: String(ROW_CAP) });
    if (this.f.service) q.set("service", this.f.service);
    if (this.f.reactor) q.set("reactor", this.f.reactor);
    if (this.f.instance) q.set("instance", this.f.instance);
    const r = await fetch(`/api/connections?${q}`);
    if (!r.ok) return;
    const page = await r.json();
    for (const c of page.items) if (!this.open.has(rowKey(c))) this.closed.set(rowKey(c), c);
    this.dirty = true;
    window.__weft.live?.schedule();
  }

  snapshot(msg) {
    this.open = new Map(msg.connections.map((c) => [c.id, { ...c, state: "open" }]));
    this.hiddenLive = msg.connections_hidden || 0;
    this.dirty = true;
  }

  stats(msg) { this.snapshot(msg); }

  event(e) {
    if (e.type === "connection_opened") {
      this.open.set(e.connection.id, { ...e.connection, state: "open" });
      this.dirty = true;
    } else if (e.type === "connection_closed") {
      const c = e.connection;
      this.open.delete(c.id);
      this.closed.set(c.id, { ...c, state: "closed", closed_at_ms: e.at_ms, close_reason: e.reason });
      // Only the newest closed ones can be shown: keep no more than that (a Map iterates
      // in insertion order, so the first key is the oldest).
      while (this.closed.size > ROW_CAP) this.closed.delete(this.closed.keys().next().value);
      this.dirty = true;
    }
  }

  omitted(n) {
    this.briefOmitted += n;
    this.dirty = true;
  }

  rows() {
    const { service, state, peer, reactor, instance, sort, dir } = this.f;
    let all = [];
    // Open connections are this gateway's own.
    if (state !== "closed" && (!instance || instance === ownInstance())) all.push(...this.open.values());
    if (state !== "open") all.push(...this.closed.values());
    all = all.filter((c) => (!service || c.service === service) && (!peer || c.peer.includes(peer))
      && (!reactor || String(c.reactor) === reactor)
      && (!instance || (c.instance || ownInstance()) === instance));
    const sign = dir === "asc" ? 1 : -1;
    // The server's order (sort.rs): numbers as numbers, text by code point, ties newest first.
    all.sort((a, b) => {
      const x = a[sort], y = b[sort];
      const by = typeof x === "number" ? x - y : (String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0);
      return by * sign || (b.id - a.id);
    });
    return all;
  }

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const all = this.rows();
    const shown = all.slice(0, ROW_CAP);
    const body = document.querySelector("#connections tbody");
    replace(body, shown.map(row));
    const hidden = all.length - shown.length + this.hiddenLive;
    const notes = [];
    if (hidden > 0) notes.push(`${hidden} more not shown`);
    if (this.briefOmitted > 0) {
      notes.push(`${this.briefOmitted} brief connections not listed live (they are in history)`);
    }
    text(document.getElementById("hidden-count"), notes.join("; "));
    for (const th of document.querySelectorAll("#connections th[data-sort]")) {
      const sorted = th.dataset.sort === this.f.sort;
      th.dataset.dir = sorted ? this.f.dir : "";
      if (sorted) th.setAttribute("aria-sort", this.f.dir === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      th.querySelector("a")?.setAttribute("href", href({ ...this.f, ...toggled(this.f, th.dataset.sort) }));
    }
  }
}

// The order a click on `key`'s header asks for: the other direction on the sorted column,
// else that column from the largest down.
function toggled(f, key) {
  return { sort: key, dir: f.sort === key && f.dir === "desc" ? "asc" : "desc" };
}

// The list's URL for filters and sort `f`, leaving out the defaults (as the server does).
function href(f) {
  const p = new URLSearchParams();
  for (const k of ["service", "state", "peer", "reactor", "instance", "sort", "dir"]) {
    const v = f[k];
    if (v && !(k === "sort" && v === "id") && !(k === "dir" && v === "desc")) p.set(k, v);
  }
  const qs = p.toString();
  return qs ? `${location.pathname}?${qs}` : location.pathname;
}

// A row's key: its id, and for another gateway's row (history a fleet shares) its instance.
function rowKey(c) {
  return c.instance && c.instance !== ownInstance() ? `${c.instance}/${c.id}` : c.id;
}

function row(c) {
  const open = c.state === "open";
  return el("tr", { "data-id": c.id, class: open ? "" : "closed" },
    el("td", {}, el("a", { href: `/connections/${c.id}${instanceQuery(c.instance)}` }, c.id)),
    el("td", {}, c.service),
    el("td", {}, c.transport),
    el("td", { class: "mono" }, c.peer),
    el("td", {}, age(c.age_ms)),
    el("td", { class: "num" }, bytes(c.bytes_in)),
    el("td", { class: "num" }, bytes(c.bytes_out)),
    el("td", {}, el("span", { class: `pill ${c.state}` }, open ? "open" : c.close_reason || "closed")),
    reactorsShown("connections") ? el("td", { class: "reactor" }, c.reactor ?? "") : null,
    // A UDP endpoint is its service's port, not a connection: it is not closed from here.
    el("td", {}, open && c.transport !== "udp" ? el("button", { type: "button", class: "btn small", "data-action": "close", "data-id": c.id }, "Close") : null));
}

// One connection's page: counters follow the stats; the state follows its close event.
export class ConnectionView {
  constructor() {
    this.id = Number(document.querySelector("[data-connection]")?.dataset.connection);
    this.c = null;
    this.closed = null;
  }
  snapshot(msg) { this.stats(msg); }
  stats(msg) { this.c = msg.connections.find((c) => c.id === this.id) || this.c; }
  event(e) { if (e.type === "connection_closed" && e.connection.id === this.id) this.closed = e; }
  render() {
    if (this.c && !this.closed) {
      text(document.querySelector('[data-k="age_ms"]'), age(this.c.age_ms));
      text(document.querySelector('[data-k="bytes_in"]'), bytes(this.c.bytes_in));
      text(document.querySelector('[data-k="bytes_out"]'), bytes(this.c.bytes_out));
      text(document.querySelector('[data-k="reads"]'), this.c.reads);
      text(document.querySelector('[data-k="writes"]'), this.c.writes);
    }
    if (this.closed) {
      const pill = document.getElementById("conn-state");
      text(pill, `closed (${this.closed.reason})`);
      pill.className = "pill closed";
      document.querySelector('button[data-action="close"]')?.remove();
    }
  }
}
