// A page drawn from one JSON endpoint, refetched at most once a second while the live feed
// ticks (the HTTP and DNS pages): each service a section, or a line saying none runs.

import { el, replace } from "./dom.js";

const MIN_REFRESH_MS = 1000;

// A view class for `api` whose services are drawn by `section` into the element `box`;
// `empty` is [id, text] of the line shown when no service of the kind runs.
export function polledView(api, box, empty, section) {
  return class {
    constructor() {
      this.stale = true;
      this.lastFetch = 0;
    }

    snapshot() { this.stale = true; }
    stats() { this.stale = true; }
    event() {}

    async render() {
      if (!this.stale) return;
      if (performance.now() - this.lastFetch < MIN_REFRESH_MS) {
        setTimeout(() => window.__weft.live?.schedule(), MIN_REFRESH_MS);
        return;
      }
      this.stale = false;
      this.lastFetch = performance.now();
      const r = await fetch(api);
      if (!r.ok) return;
      const services = await r.json();
      const target = document.getElementById(box);
      if (!target) return;
      const [id, text] = empty;
      replace(target, services.length ? services.map(section)
        : [el("p", { class: "empty", id }, text)]);
    }
  };
}

// A table head: [name, numeric] pairs, numeric columns aligned right.
export const head = (names) => el("thead", {}, el("tr", {}, ...names.map(([n, isNum]) => el("th", isNum ? { class: "num" } : {}, n))));
