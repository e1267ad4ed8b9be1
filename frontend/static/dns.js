// The DNS page: each service's zones, queries, cache, upstreams, top names and recent queries,
// refetched from /api/dns once a second while the live feed ticks, drawn as the server
// draws them (dns.html). Names are peer-controlled: they go in as text, never as markup.

import { el } from "./dom.js";
import { head, polledView } from "./polled.js";
import { age, clock, millis, percent, rate } from "./fmt.js";

export const DnsView = polledView("/api/dns", "dns-services", ["no-dns", "No DNS service runs."], section);

const num = (v, bad = false) => el("td", { class: bad ? "num bad" : "num" }, String(v));
const mono = (v) => el("td", { class: "mono" }, v);
const table = (cls, names, rows) => el("table", { class: `grid ${cls}` }, head(names), el("tbody", {}, ...rows));

function section(s) {
  const summary = el("div", { class: "summary" },
    el("span", {}, "queries ", el("b", { class: "queries" }, String(s.queries))),
    el("span", {}, "q/s ", el("b", { class: "qps" }, rate(s.queries_per_s))),
    el("span", {}, "cache hit ratio ", el("b", { class: "hit-ratio" }, percent(s.cache.hit_ratio)),
      ` (${s.cache.hits} hits, ${s.cache.misses} misses since start)`),
    el("span", {}, "p50 ", el("b", {}, millis(s.p50_ms))),
    el("span", {}, "p99 ", el("b", {}, millis(s.p99_ms))));
  // As dns.html says it: when a signed zone's first signature expires, flagged within three days.
  const signatures = (z) => z.signatures_left_ms == null ? "-"
    : z.signatures_left_ms >= 0 ? `in ${age(z.signatures_left_ms)}` : `expired ${age(-z.signatures_left_ms)} ago`;
  // As ZoneFigures::source says it: a file, or the primaries of a secondary zone.
  const source = (z) => z.primaries.length === 0 ? "file"
    : `from ${z.primaries.join(", ")}${z.served ? "" : ": not served (no copy yet, or it expired)"}`;
  // As ZoneFigures::refresh says it: a secondary zone's last check, the next, and its expiry.
  const refresh = (z) => {
    if (z.primaries.length === 0) return "-";
    const parts = [z.check != null && z.checked_ago_ms != null ? `${z.check}, ${age(Math.abs(z.checked_ago_ms))} ago` : "not checked yet"];
    if (z.next_check_in_ms != null) parts.push(z.next_check_in_ms > 0 ? `next in ${age(z.next_check_in_ms)}` : "checking now");
    if (z.expires_in_ms != null) {
      parts.push(z.expires_in_ms >= 0 ? `expires in ${age(z.expires_in_ms)}` : `expired ${age(-z.expires_in_ms)} ago`);
    }
    return parts.join("; ");
  };
  const zones = s.zones.length === 0 ? null : table("zones",
    [["zone"], ["serial", 1], ["records", 1], ["signatures expire"], ["source"], ["refresh"]],
    s.zones.map((z) => el("tr", {}, mono(z.zone), num(z.serial), num(z.records),
      el("td", z.expiring ? { class: "bad" } : {}, signatures(z)),
      el("td", { class: z.served ? "mono" : "mono bad" }, source(z)),
      el("td", { class: z.check_failed ? "refresh bad" : "refresh" }, refresh(z)))));
  const rates = (cls, title, unit, list) => table(cls, [[title], [unit, 1], [cls === "qtypes" ? "queries" : "answers", 1]],
    list.map((r) => el("tr", {}, mono(r.name), num(rate(r.per_s)), num(r.total))));
  const upstreams = s.upstreams.length === 0 ? null : table("upstreams",
    [["upstream"], ["answers", 1], ["timeouts", 1], ["p50", 1], ["p99", 1]],
    s.upstreams.map((u) => el("tr", {}, mono(u.name), num(u.answers), num(u.timeouts, u.timeouts > 0),
      num(millis(u.p50_ms)), num(millis(u.p99_ms)))));
  const top = table("top-names", [["top names"], ["queries", 1]],
    s.top_names.map((t) => el("tr", {}, mono(t.key), num(t.count))));
  const recent = table("recent", [["time"], ["client"], ["name"], ["type"], ["rcode"], ["latency", 1], ["source"]],
    s.recent.map((q) => el("tr", q.from_history ? { class: "history" } : {},
      el("td", {}, el("time", {}, clock(q.at_ms))), mono(q.client), mono(q.name), mono(q.qtype),
      mono(q.rcode), num(millis(q.latency_ms)), mono(q.source))));
  return el("section", { class: "dns-service", "data-service": s.service },
    el("h2", {}, s.service), summary, zones, rates("qtypes", "type", "q/s", s.qtypes),
    rates("rcodes", "rcode", "/s", s.rcodes), upstreams, top, recent);
}
