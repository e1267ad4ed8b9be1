// The HTTP page: each service's routes and upstreams, refetched from /api/http once a
// second while the live feed ticks, drawn as the server draws them (http.html).

import { el } from "./dom.js";
import { head, polledView } from "./polled.js";
import { bytes, clock, maybe, millis, rate } from "./fmt.js";

const CLASSES = ["2xx", "3xx", "4xx", "5xx"];

export const HttpView = polledView("/api/http", "http-services", ["no-http", "No HTTP service runs."], section);

const num = (v, bad = false) => el("td", { class: bad ? "num bad" : "num" }, v);

function section(s) {
  const routes = el("table", { class: "grid routes" },
    head([["route"], ["upstream"], ["req/s", 1], ["requests", 1], ...CLASSES.map((c) => [c, 1]), ["p50", 1], ["p99", 1], ["upstream errors", 1]]),
    el("tbody", {}, ...s.routes.map((r) => el("tr", {},
      el("td", { class: "mono" }, r.route),
      el("td", { class: "mono" }, r.upstream ?? ""),
      num(rate(r.requests_per_s)),
      num(r.requests),
      ...CLASSES.map((c) => num(r.codes[c] ?? 0, c === "5xx" && r.codes[c] > 0)),
      num(millis(r.p50_ms)),
      num(millis(r.p99_ms)),
      num(r.upstream_errors, r.upstream_errors > 0)))));
  const upstreams = s.upstreams.length === 0 ? null : el("table", { class: "grid upstreams" },
    head([["route"], ["upstream"], ["state"], ["fails in a row", 1], ["idle", 1], ["busy", 1], ["requests", 1], ["errors", 1], ["recent errors"]]),
    el("tbody", {}, ...s.upstreams.map((u) => el("tr", {},
      el("td", { class: "mono" }, u.route ?? ""),
      el("td", { class: "mono" }, u.name === u.url ? u.name : `${u.name} (${u.url})`),
      el("td", {}, state(u)),
      num(maybe(u.consecutive_failures), u.consecutive_failures > 0),
      num(maybe(u.idle)),
      num(maybe(u.busy)),
      num(u.requests),
      num(u.errors, u.errors > 0),
      el("td", {}, el("ul", { class: "errors" }, ...u.recent_errors.map((e) =>
        el("li", {}, el("time", {}, clock(e.at_ms)), " ", el("span", { class: "mono" }, e.message)))))))));
  const held = s.held.length === 0 ? null : el("p", { class: "held" },
    ...s.held.map((h) => el("span", heldBad(h) ? { class: "bad", "data-held": h.name } : { "data-held": h.name }, `${h.label} `, el("b", {}, heldText(h)))));
  return el("section", { class: "http-service", "data-service": s.service },
    el("h2", {}, s.service), held, routes, upstreams);
}

// As views.rs' Held::text and Held::bad.
function heldText(h) {
  const size = (n) => (h.name.endsWith("_bytes") ? bytes(n) : String(n));
  return h.limit == null ? size(h.held) : `${size(h.held)} of ${size(h.limit)}`;
}

function heldBad(h) {
  if (h.limit == null) return h.name.endsWith("_errors") && h.held > 0;
  return h.limit > 0 && h.held * 10 >= h.limit * 9;
}

function state(u) {
  if (u.state === "ejected") return `ejected until ${clock(u.until_ms)}`;
  return u.state;
}
