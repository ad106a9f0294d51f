// The Decode panel: decodes any spot of the map (a click in decode mode, Enter on the keyboard cursor, a share
// link's `at`), shows the image with its seed and download, a quick preview first when decodes are slow, the
// crosshair on the map, and the recent decodes to return to.

import { api } from "../api.js";
import { el, showError } from "../common.js";
import { MAX_SEED } from "../core/constants.js";
import { actions, canvasSize, dataToScreen, emit, on, provide, register, renderer, roundTo, setView,
  shareStateChanged, state } from "../core/page.js";
import { handle } from "../core/pointer.js";

const HISTORY_LENGTH = 8;
const PREVIEW_AFTER_MS = 700; // when full decodes take longer than this, a quick preview is shown first

const $ = (id) => document.getElementById(id);
const root = $("map-root");
const decodeCache = new Map(); // cacheKey() -> {blob, url, cache}
let decodeAbort = null;

function setDecodeState(value) {
  state.decodeState = value;
  root.dataset.decodeState = value;
  $("decode-view").setAttribute("aria-busy", String(value === "loading"));
  $("decode-spinner").hidden = value !== "loading";
  emit("decode-state", { state: value });
}

function cacheKey(x, y, seed) {
  // The projection revision is part of the key, as on the server: after a refit the same (x, y) is elsewhere.
  const revision = state.meta && state.meta.projection ? state.meta.projection.revision : 0;
  return `${revision}|${x},${y},${seed}`;
}

function isCurrent(key) {
  return Boolean(state.current) && cacheKey(state.current.x, state.current.y, state.current.seed) === key;
}

/** Decode (x, y) at `seed`; `item`: the item the click selected (for the panels that list its neighbours). */
async function decodeAt(x, y, { seed = state.seed, fromHistory = false, item = null } = {}) {
  state.current = { x, y, seed };
  positionCrosshair();
  shareStateChanged();
  showError($("decode-error"), "");
  $("decode-placeholder").hidden = true;
  $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed}`;
  if (decodeAbort) decodeAbort.abort();
  if (!state.items.length) {
    // Decoding blends the nearest items: with none there is nothing to decode (the server says the same).
    setDecodeState("error");
    showError($("decode-error"), state.canEdit
      ? "Nothing to decode yet: add prompts or images first."
      : "Nothing to decode yet: this map has no items.");
    return;
  }
  const key = cacheKey(x, y, seed);
  let entry = decodeCache.get(key);
  if (!entry) {
    const controller = new AbortController();
    decodeAbort = controller;
    setDecodeState("loading");
    $("decode-img").classList.add("is-stale");
    try {
      const decodeUrl = `/api/maps/${encodeURIComponent(state.mapId)}/decode`;
      if (state.previewAvailable && state.lastDecodeMs > PREVIEW_AFTER_MS) {
        // Decodes are slow here: show the space's quick, rough picture first, then the full one.
        const preview = await api(decodeUrl, {
          method: "POST", json: { x, y, seed, preview: true }, raw: true, signal: controller.signal,
        });
        const previewUrl = URL.createObjectURL(await preview.blob());
        if (isCurrent(key)) {
          showImage(previewUrl, x, y, seed);
          $("decode-img").classList.add("is-preview");
          $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed} · preview, full image coming`;
        }
      }
      const started = performance.now();
      const response = await api(decodeUrl, { method: "POST", json: { x, y, seed }, raw: true, signal: controller.signal });
      if (response.headers.get("X-Decode-Cache") !== "hit") state.lastDecodeMs = performance.now() - started;
      const blob = await response.blob();
      entry = { blob, url: URL.createObjectURL(blob), cache: response.headers.get("X-Decode-Cache") };
      decodeCache.set(key, entry);
    } catch (err) {
      if (err.name === "AbortError") return;
      if (decodeAbort === controller) {
        setDecodeState("error");
        $("decode-img").classList.remove("is-stale");
        showError($("decode-error"), `Could not decode this spot. ${err.message}`);
      }
      return;
    } finally {
      if (decodeAbort === controller) decodeAbort = null;
    }
  }
  if (!isCurrent(key)) return;
  state.current = { x, y, seed, url: entry.url, blob: entry.blob, cache: entry.cache };
  showImage(entry.url, x, y, seed);
  $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed}${entry.cache === "hit" ? " · cached" : ""}`;
  if (!fromHistory) pushHistory(state.current);
  setDecodeState("done");
  emit("decoded", { x, y, seed, url: entry.url, item });
}

function showImage(url, x, y, seed) {
  const img = $("decode-img");
  img.classList.remove("is-stale", "is-preview");
  img.src = url;
  img.alt = `Decoded image at x ${x}, y ${y}, seed ${seed}`;
  img.hidden = false;
  const download = $("download-btn");
  download.href = url;
  download.download = `latentmap-${state.mapId}-${x}_${y}-seed${seed}.png`;
  download.hidden = false;
  download.removeAttribute("aria-disabled");
}

function positionCrosshair() {
  const cross = $("crosshair");
  if (!state.current || !renderer()) {
    cross.hidden = true;
    return;
  }
  const [px, py] = dataToScreen(state.current.x, state.current.y);
  const [w, h] = canvasSize();
  cross.hidden = !(px >= -20 && py >= -20 && px <= w + 20 && py <= h + 20);
  cross.style.transform = `translate(${px}px, ${py}px)`;
}

// ---------------------------------------------------------------- history ----

function pushHistory(entry) {
  const key = cacheKey(entry.x, entry.y, entry.seed);
  const first = state.history[0];
  if (first && cacheKey(first.x, first.y, first.seed) === key) return; // already first: keep the buttons as they are
  state.history = [entry, ...state.history.filter((h) => cacheKey(h.x, h.y, h.seed) !== key)].slice(0, HISTORY_LENGTH);
  renderHistory();
}

function renderHistory() {
  const list = $("history");
  $("history-section").hidden = state.history.length === 0;
  list.replaceChildren();
  for (const entry of state.history) {
    const label = `Return to x ${entry.x}, y ${entry.y}, seed ${entry.seed}`;
    const button = el("button", { type: "button", class: "history-btn", title: label, "aria-label": label },
      el("img", { src: entry.url, alt: "" }));
    if (isCurrent(cacheKey(entry.x, entry.y, entry.seed))) button.classList.add("is-current");
    button.addEventListener("click", () => returnTo(entry));
    list.append(el("li", {}, button));
  }
}

async function returnTo(entry) {
  emit("user-input", { kind: "history" });
  setSeed(entry.seed, { decode: false });
  const [px, py] = dataToScreen(entry.x, entry.y);
  const [w, h] = canvasSize();
  if (px < 0 || py < 0 || px > w || py > h) await setView({ x: entry.x, y: entry.y, zoom: renderer().view().zoom });
  await decodeAt(entry.x, entry.y, { seed: entry.seed, fromHistory: true });
  renderHistory();
}

// ---------------------------------------------------------------- seed ----

function setSeed(value, { decode = true } = {}) {
  let seed = Math.trunc(Number(value));
  if (!Number.isFinite(seed) || seed < 0) seed = 0;
  seed = Math.min(seed, MAX_SEED);
  const unchanged = seed === state.seed;
  state.seed = seed;
  $("seed-input").value = String(seed);
  if (!unchanged) emit("seed", { seed });
  if (unchanged && state.current && state.current.seed === seed) return; // e.g. a second "change" on blur
  if (decode && state.current) decodeAt(state.current.x, state.current.y, { seed });
  else shareStateChanged();
}

$("seed-input").addEventListener("input", () => emit("user-input", { kind: "seed" }));
$("seed-input").addEventListener("change", (event) => setSeed(event.target.value));
$("new-seed-btn").addEventListener("click", () => {
  emit("user-input", { kind: "seed" });
  setSeed(Math.floor(Math.random() * 1_000_000));
});

// ---------------------------------------------------------------- decode mode ----

/** A click (or Enter) in decode mode: select the item under it, if any, and decode the spot. */
function decodeClick({ px, py, x, y, keyboard }) {
  const index = renderer().pick(px, py, keyboard ? 12 : 3);
  const item = index >= 0 ? actions.itemAt(index) : null;
  actions.select(item);
  return decodeAt(roundTo(x), roundTo(y), { item });
}

handle("decode", { click: decodeClick });

provide("decodeAt", decodeAt);
provide("setSeed", setSeed);
on("view", positionCrosshair);
on("points", positionCrosshair);

register({
  name: "decode",
  start(query) {
    $("seed-input").value = String(state.seed);
    const at = (query.get("at") || "").split(",").map(Number);
    if (at.length === 2 && at.every(Number.isFinite)) decodeAt(at[0], at[1]);
  },
});
