// Entry point: picks the page's view and starts its live feed.

import { Live, post } from "./live.js";
import { OverviewView } from "./overview.js";
import { ConnectionsView, ConnectionView } from "./connections.js";
import { DeferredsView } from "./deferreds.js";
import { HttpView } from "./http.js";
import { DnsView } from "./dns.js";

const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));

const views = {
  overview: OverviewView,
  connections: ConnectionsView,
  connection: ConnectionView,
  deferreds: DeferredsView,
  deferred: DeferredsView,
  services: OverviewView,
  http: HttpView,
  dns: DnsView,
};

function start() {
  const page = document.body.dataset.page;
  const View = views[page];
  if (View) {
    const live = new Live(new View(page));
    window.__weft.live = live;
  }
  window.__weft.errors = errors;
  // Actions: buttons with data-action, confirmed, then POSTed (same-origin).
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const { action, id } = button.dataset;
    const path = action === "close" ? `/api/connections/${id}/close` : `/api/deferreds/${id}/cancel`;
    button.disabled = true;
    try {
      await post(path);
      button.textContent = action === "close" ? "Closing…" : "Cancelling…";
    } catch (e) {
      button.disabled = false;
      button.title = e.message;
      button.classList.add("failed");
    }
  });
}

start();
