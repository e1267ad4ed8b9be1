// Safe DOM construction: text always goes through textContent, never through HTML parsing.

const SVG = "http://www.w3.org/2000/svg";

// el("a", {href: "/x", class: "y"}, "text", child) -> HTMLElement
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "href" && !String(v).startsWith("/")) continue; // only links within the dashboard
    node.setAttribute(k, v === true ? "" : String(v));
  }
}

// Replaces the children of `parent` with `children` in one step.
export function replace(parent, children) {
  parent.replaceChildren(...children);
}

export function text(node, value) {
  const s = String(value);
  if (node && node.textContent !== s) node.textContent = s;
}

// The instance this gateway writes history as (`[gateway] instance`), as the page says.
export function ownInstance() {
  return document.querySelector("[data-own-instance]")?.dataset.ownInstance || "";
}

// What a link to the page of a row `instance` wrote adds: nothing for this gateway's.
export function instanceQuery(instance) {
  return instance && instance !== ownInstance() ? `?instance=${encodeURIComponent(instance)}` : "";
}

// Whether table `id` has a reactor column (the server shows one with several reactors).
export function reactorsShown(id) {
  return document.getElementById(id)?.hasAttribute("data-reactors") ?? false;
}
