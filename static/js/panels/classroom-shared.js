// What the classroom panels (present.js, tours.js, quiz.js) share: session storage, the presenter-key request,
// checks for values that arrive from other browsers, and the markers they place on the map.

import { ApiError } from "../api.js";
import { el } from "../common.js";
import { dataToScreen, on, renderer } from "../core/page.js";

export const enc = encodeURIComponent;
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const pair = (v) => Array.isArray(v) && v.length === 2 && v.every(isNum);
export const triple = (v) => Array.isArray(v) && v.length === 3 && v.every(isNum) && v[2] > 0;
export const localUrl = (u) => typeof u === "string" && /^\/api\/[A-Za-z0-9_./-]+$/.test(u); // never a foreign address
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function store(kind) {
  try { return kind === "local" ? window.localStorage : window.sessionStorage; } catch (_) { return null; }
}

export function readJson(kind, key) {
  try { return JSON.parse(store(kind).getItem(key) || "null"); } catch (_) { return null; }
}

export function writeJson(kind, key, value) {
  try {
    if (value === null || value === undefined) store(kind).removeItem(key);
    else store(kind).setItem(key, JSON.stringify(value));
  } catch (_) { /* private mode: memory only */ }
}

/** fetch with the presenter key (api.js only knows the edit key). */
export async function presenterApi(path, method, key, json) {
  const headers = { "X-Presenter-Key": key };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch (_) {
    throw new ApiError("Network error: the server could not be reached", 0);
  }
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).detail || ""; } catch (_) { /* not JSON */ }
    throw new ApiError(`HTTP ${response.status}${detail ? `: ${detail}` : ""}`, response.status);
  }
  return response.status === 204 ? null : response.json();
}

// ---------------------------------------------------------------- markers on the map ----

const markers = el("div", { class: "classroom-markers", "aria-hidden": "true" });
document.getElementById("map-frame").append(markers);

export function marker(id, className, label) {
  let node = id ? document.getElementById(id) : null;
  if (!node) {
    node = el("div", { id, class: `cr-marker ${className}` }, el("span", { class: "cr-marker-label" }));
    markers.append(node);
  }
  node.querySelector(".cr-marker-label").textContent = label || "";
  return node;
}

function positionMarkers() {
  if (!renderer()) return;
  for (const node of markers.children) {
    const x = Number(node.dataset.x);
    const y = Number(node.dataset.y);
    if (!Number.isFinite(x) || !Number.isFinite(y)) { node.hidden = true; continue; }
    const [px, py] = dataToScreen(x, y);
    node.hidden = false;
    node.style.transform = `translate(${px}px, ${py}px)`;
  }
}

export function placeMarker(node, x, y) {
  node.dataset.x = String(x);
  node.dataset.y = String(y);
  positionMarkers();
}

export function clearMarkers() {
  markers.replaceChildren();
}

on("view", positionMarkers);
