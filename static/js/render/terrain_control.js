// "Show the space": the decoded-terrain layer (#18) on or off, its opacity and, where the space has decoder
// variants, the decoder its tiles are decoded with. A panel of the core: it appears in the map's footer only when
// GET /api/maps/{id} has `terrain`, puts `terrain=1&terrain_opacity=…&terrain_variant=…` in share links and
// `terrain: {on, opacity, variant}` in presentations and tour steps, and follows the presenter and a tour's steps
// (actions.setTerrain / terrainState). The seed is the page's own: the layer decodes with state.seed, like a click.
// Drawing is the renderer's (setTerrain).

import { api } from "../api.js";
import { on, provide, register, renderer, shareStateChanged, state } from "../core/page.js";

const DEFAULT_OPACITY = 0.85;
const MIN_OPACITY = 0.1; // the slider's low end (app/maps/classroom.py TERRAIN_OPACITY)
const t = { on: false, opacity: DEFAULT_OPACITY, variant: null, decoders: [], available: false };
let box = null;

function apply() {
  if (!renderer() || !renderer().setTerrain || !t.available) return;
  renderer().setTerrain({
    info: state.meta.terrain, visible: t.on, opacity: t.opacity, seed: state.seed, variant: t.variant,
  });
  if (box) {
    box.querySelector("#terrain-toggle").checked = t.on;
    const slider = box.querySelector("#terrain-opacity");
    slider.value = String(Math.round(t.opacity * 100));
    slider.disabled = !t.on;
    const select = box.querySelector("#terrain-variant");
    if (select) {
      select.value = t.variant || "base";
      select.disabled = !t.on;
    }
  }
}

function validOpacity(value) {
  const n = Number(value);
  return value !== null && value !== undefined && Number.isFinite(n) && n >= MIN_OPACITY && n <= 1 ? n : null;
}

/** A variant this page can decode tiles with (null: the space's own decoder). */
function knownVariant(name) {
  return typeof name === "string" && name !== "base" && t.decoders.includes(name) ? name : null;
}

/** Show the layer as a share link, a tour step or the presenter says: {on, opacity?, variant?}. */
function setLayer(layer) {
  if (!t.available || !layer || typeof layer !== "object") return;
  t.on = Boolean(layer.on);
  const opacity = validOpacity(layer.opacity);
  if (opacity !== null) t.opacity = opacity;
  t.variant = knownVariant(layer.variant);
  apply();
}

function build() {
  const footer = document.querySelector(".map-footer");
  if (!footer || box) return;
  box = document.createElement("div");
  box.className = "terrain-control";
  box.id = "terrain-control";
  const label = document.createElement("label");
  const check = document.createElement("input");
  check.type = "checkbox";
  check.id = "terrain-toggle";
  label.append(check, document.createTextNode(" Show the space"));
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = String(MIN_OPACITY * 100);
  slider.max = "100";
  slider.id = "terrain-opacity";
  slider.setAttribute("aria-label", "Opacity of the decoded space");
  box.append(label, slider);
  footer.insertBefore(box, footer.querySelector("#point-count"));
  check.addEventListener("change", () => { t.on = check.checked; apply(); shareStateChanged(); });
  slider.addEventListener("input", () => { t.opacity = Number(slider.value) / 100; apply(); shareStateChanged(); });
}

function buildVariantChoice() {
  if (!box || box.querySelector("#terrain-variant") || t.decoders.length === 0) return;
  const select = document.createElement("select");
  select.id = "terrain-variant";
  select.setAttribute("aria-label", "Decoder of the decoded space");
  for (const name of ["base", ...t.decoders]) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === "base" ? "base decoder" : name;
    select.append(option);
  }
  box.append(select);
  select.addEventListener("change", () => { t.variant = knownVariant(select.value); apply(); shareStateChanged(); });
}

/** The space's decoders other than its own (LoRAs, fine-tunes): GET /api/variants. */
async function loadDecoders() {
  try {
    const answer = await api("/api/variants");
    const meta = state.meta || {};
    if (meta.space && answer.space && meta.space !== answer.space) return [];
    const rows = Array.isArray(answer.variants) ? answer.variants : [];
    return rows.filter((v) => v.kind === "lora" || v.kind === "finetune").map((v) => v.name);
  } catch (_) {
    return [];
  }
}

async function start(query) {
  t.available = Boolean(state.meta && state.meta.terrain);
  if (!t.available) return;
  build();
  t.on = query.get("terrain") === "1";
  t.opacity = validOpacity(query.get("terrain_opacity")) ?? DEFAULT_OPACITY;
  // A link's variant is known only once GET /api/variants answers: until then the link keeps it, no tile is asked.
  const wanted = query.get("terrain_variant");
  t.variant = wanted;
  if (!wanted) apply();
  t.decoders = await loadDecoders();
  buildVariantChoice();
  t.variant = knownVariant(wanted);
  apply();
  if (t.variant !== wanted && wanted) shareStateChanged();
}

function urlParams() {
  if (!t.available || !t.on) return {};
  return {
    terrain: "1",
    terrain_opacity: t.opacity === DEFAULT_OPACITY ? null : t.opacity.toFixed(2),
    terrain_variant: t.variant,
  };
}

/** The layer as a presentation or a tour step carries it (null where the map has no terrain). */
function layerState() {
  return t.available ? { on: t.on, opacity: Number(t.opacity.toFixed(2)), variant: t.variant } : null;
}

on("seed", () => apply()); // the layer decodes with the page's seed, as a click would
on("remote-state", ({ state: remote, following }) => {
  if (following && remote && remote.terrain) setLayer(remote.terrain);
});

provide("setTerrain", (layer) => { setLayer(layer); shareStateChanged(); });
provide("terrainState", layerState);

register({
  name: "terrain", start, urlParams, presentState: () => (t.available ? { terrain: layerState() } : {}), mirror: t,
});
