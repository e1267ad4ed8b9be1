// How figures read: the same rules as the server's fmt.rs.

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n) || 0;
  let u = 0;
  while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function age(ms) {
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}.${Math.floor((ms % 1000) / 100)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function clock(ms) {
  const d = ((ms % 86400000) + 86400000) % 86400000;
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(Math.floor(d / 3600000))}:${p(Math.floor(d / 60000) % 60)}:${p(Math.floor(d / 1000) % 60)}.${p(d % 1000, 3)}`;
}

export function millis(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(0)} ms`;
}

export function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 100)}%`;
}

export function maybe(n) {
  return n === null || n === undefined ? "–" : String(n);
}

export function rate(v) {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}
