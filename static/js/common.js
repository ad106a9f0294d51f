// Shared page helpers: DOM building without innerHTML, toasts, the large-text toggle, clipboard.

/** Create an element. Text goes in through textContent only, never as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    // Through the CSSOM: the page's CSP (style-src 'self') refuses style attributes, not style properties.
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function toast(message, kind = "info", ms = 4000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { class: `toast toast-${kind}`, text: message });
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? ms * 2 : ms);
}

export function showError(node, message) {
  if (!node) return;
  node.textContent = message || "";
  node.hidden = !message;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    // Clipboard API refused (no permission / insecure context): fall back to a selected textarea.
    const area = el("textarea", { class: "visually-hidden", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
    return ok;
  }
}

const LARGE_KEY = "latentmap:large-text";
const largeListeners = [];

export function isLargeText() {
  return document.documentElement.classList.contains("large-text");
}

export function onLargeTextChange(fn) {
  largeListeners.push(fn);
}

export function initLargeTextToggle() {
  const button = document.getElementById("large-text-toggle");
  if (!button) return;
  const sync = () => button.setAttribute("aria-pressed", String(isLargeText()));
  sync();
  button.addEventListener("click", () => {
    const on = !isLargeText();
    document.documentElement.classList.toggle("large-text", on);
    try { localStorage.setItem(LARGE_KEY, on ? "1" : "0"); } catch (_) { /* private mode */ }
    sync();
    for (const fn of largeListeners) fn(on);
  });
}

/** created_at may be epoch seconds (number) or an ISO string. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function formatDate(value) {
  const d = toDate(value);
  return d ? d.toLocaleString() : "";
}
