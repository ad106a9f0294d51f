// "Show the space": the decoded-terrain layer (#18) on or off, and its opacity. A panel of the core: it appears
// in the map's footer only when GET /api/maps/{id} has `terrain`, puts `terrain=1&terrain_opacity=…` in share
// links and presentations (the seed is the page's own: the layer decodes with state.seed, like a click), and
// follows the presenter. Drawing is the renderer's (setTerrain).

import { on, register, renderer, shareStateChanged, state } from "../core/page.js";

const DEFAULT_OPACITY = 0.85;
const t = { on: false, opacity: DEFAULT_OPACITY, available: false };
let box = null;

function apply() {
  if (!renderer() || !renderer().setTerrain || !t.available) return;
  renderer().setTerrain({ info: state.meta.terrain, visible: t.on, opacity: t.opacity, seed: state.seed });
  if (box) {
    box.querySelector("input[type=checkbox]").checked = t.on;
    box.querySelector("input[type=range]").value = String(Math.round(t.opacity * 100));
    box.querySelector("input[type=range]").disabled = !t.on;
  }
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
  slider.min = "10";
  slider.max = "100";
  slider.id = "terrain-opacity";
  slider.setAttribute("aria-label", "Opacity of the decoded space");
  box.append(label, slider);
  footer.insertBefore(box, footer.querySelector("#point-count"));
  check.addEventListener("change", () => { t.on = check.checked; apply(); shareStateChanged(); });
  slider.addEventListener("input", () => { t.opacity = Number(slider.value) / 100; apply(); shareStateChanged(); });
}

function start(query) {
  t.available = Boolean(state.meta && state.meta.terrain);
  if (!t.available) return;
  t.on = query.get("terrain") === "1";
  const opacity = Number(query.get("terrain_opacity"));
  if (Number.isFinite(opacity) && opacity > 0 && opacity <= 1) t.opacity = opacity;
  build();
  apply();
}

function urlParams() {
  if (!t.available || !t.on) return {};
  return { terrain: "1", terrain_opacity: t.opacity === DEFAULT_OPACITY ? null : t.opacity.toFixed(2) };
}

function presentState() {
  return t.available ? { terrain: { on: t.on, opacity: t.opacity } } : {};
}

on("seed", () => apply()); // the layer decodes with the page's seed, as a click would
on("remote-state", ({ state: remote }) => {
  if (remote && remote.terrain && t.available) {
    t.on = Boolean(remote.terrain.on);
    t.opacity = Number(remote.terrain.opacity) || DEFAULT_OPACITY;
    apply();
  }
});

register({ name: "terrain", start, urlParams, presentState, mirror: t });
