// The Decoders panel: decode the clicked spot through several decoders side by side (base, LoRAs at a chosen
// strength, fine-tunes), compare along a drawn path, show each variant's lineage, upscale a decoded image beside
// the original, and align this map with another. Share-link params: compare=base,thick (decoders compared) and
// lora=0.8 (LoRA strength). All text from the server goes in via textContent, never as HTML.

import { api } from "../api.js";
import { el, showError } from "../common.js";
import { MAX_COMPARE_PATH_STEPS, MAX_LORA_SCALE } from "../core/constants.js";
import { actions, on, register, shareStateChanged, state } from "../core/page.js";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const root = $("map-root");
const mapId = root.dataset.mapId;

const KIND_NAMES = { base: "base decoder", lora: "LoRA", finetune: "fine-tune", upscaler: "upscaler" };
const LINEAGE_ROWS = [
  ["base_model", "Base model"],
  ["lora_of", "LoRA of"],
  ["fine_tune_of", "Fine-tune of"],
  ["upscaler_for", "Upscaler for"],
  ["loras", "LoRAs applied"],
  // A user's own files (checkpoint / LoRAs, app/spaces/own_models.py): what the file states about itself
  ["file", "File"],
  ["family", "Family"],
  ["title", "Title"],
  ["stated_base", "Made for (stated)"],
  ["stated_base_sha256", "Stated base sha256"],
  ["stated_base_legacy_hash", "Stated base hash"],
  ["base_match", "Base check"],
  ["trigger_phrase", "Trigger phrase"],
  ["sha256", "File sha256"],
  ["licence", "Licence"],
];

const vs = {
  space: null, // the loaded space's name
  lineage: null, // the base decoder's lineage
  variants: [], // GET /api/variants rows
  decoders: [], // names that can decode: "base" + LoRAs + fine-tunes
  upscalers: [], // upscaler names
  chosen: [], // names ticked for comparing
  loraScale: 1,
  compareOn: false,
  images: [], // the last compare answer's images
  upscale: null, // the last upscale answer
  enabled: false, // the panel is shown (the space has variants and the map was made with it)
  running: 0, // compare requests in flight (tests wait for 0)
};

let compareAbort = null;
let upscaleAbort = null;

// ---------------------------------------------------------------- helpers ----

function variantRow(name) {
  return vs.variants.find((v) => v.name === name) || null;
}

function isLora(name) {
  const row = variantRow(name);
  return Boolean(row && row.kind === "lora");
}

function formatScale(value) {
  return Number(value).toFixed(1);
}

function decoderLabel(image) {
  if (image.variant === "base") return "base";
  return image.lora_scale !== null && image.lora_scale !== undefined
    ? `${image.variant} ×${formatScale(image.lora_scale)}`
    : image.variant;
}

function clampScale(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return 1;
  return Math.min(MAX_LORA_SCALE, Math.max(0, Math.round(n * 10) / 10));
}

function urlParams() {
  if (!vs.compareOn || !vs.chosen.length) return {};
  return { compare: vs.chosen.join(","), lora: vs.chosen.some(isLora) ? formatScale(vs.loraScale) : null };
}

function syncUrl() {
  shareStateChanged();
}

// ---------------------------------------------------------------- lineage ----

function lineageList(lineage) {
  const dl = el("dl", { class: "variants-lineage-list" });
  for (const [key, label] of LINEAGE_ROWS) {
    if (!lineage || !(key in lineage)) continue;
    let value = lineage[key];
    if (key !== "loras" && (value === null || value === undefined || value === "")) continue;
    if (Array.isArray(value)) value = value.length ? value.join(", ") : "none";
    dl.append(el("dt", { text: label }), el("dd", { text: String(value) }));
  }
  return dl;
}

function renderLineage() {
  const box = $("variants-lineage");
  box.replaceChildren();
  const entries = [{ name: "base", kind: "base", description: `The ${vs.space} space's own decoder.`, lineage: vs.lineage }]
    .concat(vs.variants);
  for (const v of entries) {
    const summary = el("summary", {},
      el("span", { class: "variants-name", text: v.name }),
      el("span", { class: `variants-kind variants-kind-${v.kind}`, text: KIND_NAMES[v.kind] || v.kind }));
    const details = el("details", { class: "variants-lineage-item", "data-variant": v.name }, summary);
    if (v.description) details.append(el("p", { class: "small", text: v.description }));
    const lineage = { ...(v.lineage || {}) };
    if (!lineage.licence && v.licence) lineage.licence = v.licence;
    details.append(lineageList(lineage));
    if (v.kind === "lora" && v.default_scale !== undefined) {
      details.append(el("p", { class: "muted small", text: `Default strength ${formatScale(v.default_scale)}${v.rank ? ` · rank ${v.rank}` : ""}` }));
    }
    if (v.kind === "upscaler" && v.scale) details.append(el("p", { class: "muted small", text: `Upscales ×${v.scale}` }));
    box.append(details);
  }
}

// ---------------------------------------------------------------- choices ----

function renderChecks() {
  const box = $("variants-checks");
  box.replaceChildren();
  for (const name of vs.decoders) {
    const row = variantRow(name);
    const kind = row ? row.kind : "base";
    const input = el("input", { type: "checkbox", value: name, id: `variants-check-${name}` });
    input.checked = vs.chosen.includes(name);
    input.addEventListener("change", onChoiceChange);
    box.append(el("label", { class: "variants-check", for: input.id }, input,
      el("span", { text: name }), el("span", { class: "muted small", text: ` (${KIND_NAMES[kind] || kind})` })));
  }
  syncLoraRow();
}

function syncLoraRow() {
  $("variants-lora-row").hidden = !vs.variants.some((v) => v.kind === "lora");
  $("variants-lora").value = String(vs.loraScale);
  $("variants-lora-value").textContent = formatScale(vs.loraScale);
}

function onChoiceChange() {
  vs.chosen = vs.decoders.filter((name) => {
    const box = $(`variants-check-${name}`);
    return box && box.checked;
  });
  syncUrl();
  syncPathButton();
  if (vs.compareOn) runCompare();
}

function setCompareOn(on, { run = true } = {}) {
  vs.compareOn = on;
  const button = $("variants-compare-btn");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Comparing on every decode" : "Compare on every decode";
  if (!on) {
    if (compareAbort) compareAbort.abort();
    vs.images = [];
    $("variants-grid").replaceChildren();
    $("variants-status").textContent = "";
    showError($("variants-error"), "");
  }
  syncUrl();
  if (on && run) runCompare();
}

// ---------------------------------------------------------------- compare ----

function choicesForRequest() {
  return vs.chosen.map((name) => (isLora(name) ? { variant: name, lora_scale: vs.loraScale } : name));
}

async function runCompare() {
  const current = state.current;
  if (!vs.enabled || !vs.compareOn) return;
  showError($("variants-error"), "");
  if (!current || !current.url) {
    $("variants-status").textContent = "Click the map: the spot is then decoded through each ticked decoder.";
    return;
  }
  if (!vs.chosen.length) {
    $("variants-grid").replaceChildren();
    $("variants-status").textContent = "Tick at least one decoder to compare.";
    return;
  }
  if (compareAbort) compareAbort.abort();
  const controller = new AbortController();
  compareAbort = controller;
  vs.running += 1;
  root.dataset.variantsState = "loading";
  $("variants-grid").setAttribute("aria-busy", "true");
  $("variants-status").textContent = `Decoding through ${vs.chosen.length} decoder${vs.chosen.length === 1 ? "" : "s"}…`;
  try {
    const answer = await api(`/api/maps/${enc(mapId)}/compare`, {
      method: "POST",
      json: { x: current.x, y: current.y, seed: current.seed, variants: choicesForRequest() },
      signal: controller.signal,
    });
    if (compareAbort !== controller) return;
    vs.images = answer.images || [];
    renderGrid(answer);
    $("variants-status").textContent = `x ${answer.x}, y ${answer.y} · seed ${answer.seed}`;
    root.dataset.variantsState = "done";
  } catch (err) {
    if (err.name === "AbortError") return;
    if (compareAbort === controller) {
      root.dataset.variantsState = "error";
      $("variants-status").textContent = "";
      showError($("variants-error"), `Could not compare the decoders. ${err.message}`);
    }
  } finally {
    vs.running -= 1;
    if (compareAbort === controller) {
      compareAbort = null;
      $("variants-grid").setAttribute("aria-busy", "false");
    }
  }
}

function renderGrid(answer) {
  const grid = $("variants-grid");
  grid.replaceChildren();
  for (const image of answer.images || []) {
    const label = decoderLabel(image);
    const img = el("img", { src: image.url, alt: `${label} decoder at x ${answer.x}, y ${answer.y}, seed ${answer.seed}` });
    const actions = el("div", { class: "variants-tile-actions" },
      el("a", { class: "btn btn-small btn-quiet", href: image.url, download: `latentmap-${mapId}-${label.replace(/[^a-z0-9.]+/gi, "_")}-${answer.x}_${answer.y}-seed${answer.seed}.png`, text: "PNG", "aria-label": `Download the ${label} image` }));
    if (vs.upscalers.length) {
      const button = el("button", { type: "button", class: "btn btn-small", text: "Upscale", "aria-label": `Upscale the ${label} image` });
      button.addEventListener("click", () => upscaleKey(image.key, image.url, label));
      actions.append(button);
    }
    grid.append(el("li", { class: "variants-tile", "data-variant": image.variant },
      el("figure", {}, img, el("figcaption", { text: label })), actions));
  }
}

// ---------------------------------------------------------------- compare along a path ----

let drawnPath = null; // {points, steps} from explore.js's latentmap:path
let pathAbort = null;

function syncPathButton() {
  const button = $("variants-path-btn");
  button.disabled = !(drawnPath && drawnPath.points.length >= 2 && vs.chosen.length);
}

async function runComparePath() {
  if (!drawnPath || drawnPath.points.length < 2 || !vs.chosen.length) return;
  if (pathAbort) pathAbort.abort();
  const controller = new AbortController();
  pathAbort = controller;
  const steps = Math.min(MAX_COMPARE_PATH_STEPS, Math.max(2, drawnPath.steps || 6));
  const seed = state.seed;
  showError($("variants-path-error"), "");
  root.dataset.variantsPathState = "loading";
  $("variants-path-rows").setAttribute("aria-busy", "true");
  $("variants-path-status").textContent = `Decoding ${steps} images along the path through ${vs.chosen.length} decoder${vs.chosen.length === 1 ? "" : "s"}…`;
  try {
    const answer = await api(`/api/maps/${enc(mapId)}/compare/path`, {
      method: "POST", json: { points: drawnPath.points, steps, seed, variants: choicesForRequest() }, signal: controller.signal,
    });
    if (pathAbort !== controller) return;
    vs.paths = answer.paths || [];
    renderPathRows(vs.paths);
    $("variants-path-status").textContent = `${steps} images per decoder, seed ${seed}.`;
    root.dataset.variantsPathState = "done";
  } catch (err) {
    if (err.name === "AbortError") return;
    if (pathAbort === controller) {
      root.dataset.variantsPathState = "error";
      $("variants-path-status").textContent = "";
      showError($("variants-path-error"), `Could not compare along the path. ${err.message}`);
    }
  } finally {
    if (pathAbort === controller) {
      pathAbort = null;
      $("variants-path-rows").setAttribute("aria-busy", "false");
    }
  }
}

function renderPathRows(paths) {
  const box = $("variants-path-rows");
  box.replaceChildren();
  for (const path of paths) {
    const label = decoderLabel(path);
    const list = el("ol", { class: "variants-path-frames", "aria-label": `The path through the ${label} decoder` });
    path.frames.forEach((frame, i) => {
      list.append(el("li", {}, el("img", { src: frame.url, alt: `${label}, image ${i + 1} of ${path.frames.length}`, title: `${label} · x ${frame.x.toFixed(3)}, y ${frame.y.toFixed(3)}` })));
    });
    box.append(el("div", { class: "variants-path-row", "data-variant": path.variant },
      el("span", { class: "variants-path-label", text: label }), list));
  }
}

on("path", (detail) => {
  drawnPath = Array.isArray(detail.points) && detail.points.length >= 2 ? { points: detail.points, steps: detail.steps } : null;
  if (!drawnPath) {
    $("variants-path-rows").replaceChildren();
    $("variants-path-status").textContent = "";
  }
  syncPathButton();
});

// ---------------------------------------------------------------- upscale ----

async function upscaleCurrent() {
  const current = state.current;
  if (!current || !current.url) return;
  setUpscaleStatus("Upscaling the decoded image…");
  try {
    // The decode key of the image on show: /compare with the base decoder answers from the same cache entry.
    const answer = await api(`/api/maps/${enc(mapId)}/compare`, {
      method: "POST", json: { x: current.x, y: current.y, seed: current.seed, variants: ["base"] },
    });
    const image = (answer.images || [])[0];
    if (!image) throw new Error("no image");
    await upscaleKey(image.key, image.url, "base");
  } catch (err) {
    setUpscaleStatus("");
    showError($("variants-error"), `Could not upscale the image. ${err.message}`);
    root.dataset.upscaleState = "error";
  }
}

function setUpscaleStatus(text) {
  const node = $("variants-upscale-status");
  node.textContent = text;
  node.hidden = !text;
}

async function upscaleKey(key, sourceUrl, label) {
  if (upscaleAbort) upscaleAbort.abort();
  const controller = new AbortController();
  upscaleAbort = controller;
  showError($("variants-error"), "");
  root.dataset.upscaleState = "loading";
  setUpscaleStatus(`Upscaling the ${label} image…`);
  try {
    const answer = await api(`/api/decodes/${enc(key)}/upscale`, { method: "POST", json: {}, signal: controller.signal });
    if (upscaleAbort !== controller) return;
    vs.upscale = { ...answer, label };
    const [sw, sh] = answer.source_size || [];
    const [w, h] = answer.size || [];
    const src = $("variants-upscale-src");
    src.src = answer.source_url || sourceUrl;
    src.alt = `Original ${label} image, ${sw}×${sh} pixels`;
    $("variants-upscale-src-cap").textContent = `${label} · ${sw}×${sh}`;
    const img = $("variants-upscale-img");
    img.src = answer.url;
    img.alt = `The ${label} image upscaled by ${answer.upscaler} to ${w}×${h} pixels`;
    $("variants-upscale-cap").textContent = `${answer.upscaler} · ${w}×${h}`;
    const link = $("variants-upscale-download");
    link.href = answer.url;
    link.download = `latentmap-${mapId}-${label.replace(/[^a-z0-9.]+/gi, "_")}-${answer.upscaler}.png`;
    $("variants-upscale-heading").textContent = `Upscaled: ${label}`;
    $("variants-upscale").hidden = false;
    actions.showTab("decoders");
    $("variants-upscale").scrollIntoView({ block: "nearest" });
    setUpscaleStatus("");
    root.dataset.upscaleState = "done";
  } catch (err) {
    if (err.name === "AbortError") return;
    setUpscaleStatus("");
    root.dataset.upscaleState = "error";
    showError($("variants-error"), `Could not upscale the image. ${err.message}`);
  } finally {
    if (upscaleAbort === controller) upscaleAbort = null;
  }
}

function addUpscaleButton() {
  // Next to "Download PNG" under the decoded image.
  const download = $("download-btn");
  if (!download || $("variants-upscale-btn")) return;
  const button = el("button", { type: "button", class: "btn btn-small", id: "variants-upscale-btn", text: "Upscale", hidden: true,
    title: "Show the decoded image through the space's upscaler, beside the original" });
  button.addEventListener("click", upscaleCurrent);
  download.after(button);
}

// ---------------------------------------------------------------- two maps aligned ----

const SVG_NS = "http://www.w3.org/2000/svg";
const ALIGN_SIZE = 420;
const FOCUSABLE_POINTS = 400; // up to this many items, each point takes keyboard focus

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function agreementColor(a) {
  const t = Math.min(Math.max(Number(a) || 0, 0), 1);
  // red (0) -> amber (0.5) -> green (1)
  const stops = [[217, 65, 65], [224, 176, 32], [47, 163, 90]];
  const pos = t * 2;
  const i = Math.min(Math.floor(pos), 1);
  const f = pos - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function otherMapId(text) {
  const value = (text || "").trim();
  const match = value.match(/\/m\/([A-Za-z0-9_-]+)/);
  return match ? match[1] : value;
}

function alignPlot(container, answer, which, onHover) {
  const items = answer.items;
  const all = items.flatMap((it) => [it.a, it.b_aligned]);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = Math.max(x1 - x0, y1 - y0) || 1;
  const pad = 16;
  const scale = (ALIGN_SIZE - 2 * pad) / span;
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const toPx = ([x, y]) => [ALIGN_SIZE / 2 + (x - cx) * scale, ALIGN_SIZE / 2 - (y - cy) * scale];
  const plot = svg("svg", { viewBox: `0 0 ${ALIGN_SIZE} ${ALIGN_SIZE}`, class: "variants-align-svg", role: "group" });
  const focusable = items.length <= FOCUSABLE_POINTS;
  const radius = items.length > 1000 ? 2.5 : items.length > 200 ? 4 : 6;
  items.forEach((item, i) => {
    const [px, py] = toPx(which === "a" ? item.a : item.b_aligned);
    const dot = svg("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: radius, fill: agreementColor(item.agreement), "data-index": i });
    const title = svg("title");
    title.textContent = `${item.label}: ${Math.round(item.agreement * 100)}% of neighbours shared`;
    dot.append(title);
    if (focusable) {
      dot.setAttribute("tabindex", "0");
      dot.setAttribute("aria-label", title.textContent);
      dot.addEventListener("focus", () => onHover(i));
    }
    dot.addEventListener("pointerenter", () => onHover(i));
    plot.append(dot);
  });
  // The linked-item ring, drawn above every dot (moving the dot itself would re-fire pointer events).
  plot.append(svg("circle", { class: "variants-align-ring", r: radius + 4, cx: -50, cy: -50, visibility: "hidden" }));
  plot.addEventListener("pointerleave", () => onHover(null));
  container.replaceChildren(plot);
  return plot;
}

function showAlign(answer, otherId) {
  vs.align = answer;
  const pct = (v) => `${Math.round(v * 100)}%`;
  $("variants-align-summary").textContent = `${answer.matched} items matched by label · neighbours agree ${pct(answer.mean_agreement)} `
    + `on average (k = ${answer.k}) · layout disparity ${answer.disparity.toFixed(3)} (0 = same layout)`;
  $("variants-align-cap-b").textContent = `Map ${otherId}, aligned`;
  const plots = [];
  const hover = (i) => {
    for (const plot of plots) {
      for (const dot of plot.querySelectorAll("circle.is-linked")) dot.classList.remove("is-linked");
      const ring = plot.querySelector(".variants-align-ring");
      const dot = i === null ? null : plot.querySelector(`circle[data-index="${i}"]`);
      if (dot) {
        dot.classList.add("is-linked");
        ring.setAttribute("cx", dot.getAttribute("cx"));
        ring.setAttribute("cy", dot.getAttribute("cy"));
      }
      ring.setAttribute("visibility", dot ? "visible" : "hidden");
    }
    const node = $("variants-align-hover");
    node.dataset.index = i === null ? "" : String(i);
    node.textContent = i === null ? "Hover or focus a point: the same item lights up in both maps."
      : `${answer.items[i].label} · ${pct(answer.items[i].agreement)} of its ${answer.k} nearest neighbours shared by both maps`;
  };
  plots.push(alignPlot($("variants-align-plot-a"), answer, "a", hover));
  plots.push(alignPlot($("variants-align-plot-b"), answer, "b", hover));
  const dialog = $("variants-align-dialog");
  if (!dialog.open) dialog.showModal();
}

$("variants-align-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("variants-align-error");
  showError(error, "");
  const other = otherMapId($("variants-align-input").value);
  if (!other) {
    showError(error, "Paste the other map's link or id first.");
    return;
  }
  const k = Math.max(1, Math.trunc(Number($("variants-align-k").value)) || 5);
  const button = $("variants-align-btn");
  button.disabled = true;
  root.dataset.alignState = "loading";
  try {
    const answer = await api(`/api/maps/${enc(mapId)}/align/${enc(other)}?k=${k}`);
    showAlign(answer, other);
    root.dataset.alignState = "done";
  } catch (err) {
    root.dataset.alignState = "error";
    showError(error, `Could not align the maps. ${err.message}`);
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------------- start ----

function applyQuery(query) {
  if (!query) return;
  const lora = query.get("lora");
  if (lora !== null && lora !== "") vs.loraScale = clampScale(lora);
  const compare = query.get("compare");
  if (compare) {
    const wanted = compare.split(",").map((s) => s.trim()).filter((s) => vs.decoders.includes(s));
    if (wanted.length) {
      vs.chosen = vs.decoders.filter((name) => wanted.includes(name));
      renderChecks();
      setCompareOn(true, { run: false });
    }
  }
}

async function start(query) {
  let answer;
  try {
    answer = await api("/api/variants");
  } catch (_) {
    return; // no variants to show: the panel stays hidden
  }
  const meta = state.meta || {};
  const variants = Array.isArray(answer.variants) ? answer.variants : [];
  if (!variants.length || (meta.space && answer.space && meta.space !== answer.space)) return;
  vs.space = answer.space;
  vs.lineage = answer.lineage;
  vs.variants = variants;
  vs.decoders = ["base", ...variants.filter((v) => v.kind === "lora" || v.kind === "finetune").map((v) => v.name)];
  vs.upscalers = variants.filter((v) => v.kind === "upscaler").map((v) => v.name);
  // Default comparison: the base decoder with and without its first LoRA (else its first fine-tune).
  const firstLora = variants.find((v) => v.kind === "lora");
  const second = firstLora ? firstLora.name : vs.decoders[1];
  vs.chosen = vs.decoders.filter((name) => name === "base" || name === second);
  vs.loraScale = clampScale(firstLora && firstLora.default_scale !== undefined ? firstLora.default_scale : 1);
  $("variants-lora").max = String(MAX_LORA_SCALE);
  vs.enabled = true;
  renderChecks();
  renderLineage();
  $("variants-section").hidden = false;
  actions.setTabAvailable("decoders", true);
  $("variants-section").querySelector(".variants-choices").hidden = vs.decoders.length < 2 && !vs.upscalers.length;
  if (vs.upscalers.length) addUpscaleButton();
  applyQuery(query);
  syncLoraRow();
  syncUpscaleButton();
  syncPathButton();
  root.dataset.variants = "ready";
  // A decode that finished before the variants arrived (e.g. the share link's `at`).
  if (vs.compareOn && state.current && state.current.url) runCompare();
}

function syncUpscaleButton() {
  const button = $("variants-upscale-btn");
  if (!button) return;
  const current = state.current;
  button.hidden = !(vs.upscalers.length && current && current.url && state.decodeState === "done");
}

// Hide "Upscale" while a new decode is loading or failed.
on("decode-state", syncUpscaleButton);

$("variants-compare-btn").addEventListener("click", () => setCompareOn(!vs.compareOn));
$("variants-path-btn").addEventListener("click", runComparePath);
$("variants-upscale-close").addEventListener("click", () => {
  $("variants-upscale").hidden = true;
  const button = $("variants-upscale-btn");
  if (button && !button.hidden) button.focus();
});
$("variants-lora").addEventListener("input", (event) => {
  vs.loraScale = clampScale(event.target.value);
  $("variants-lora-value").textContent = formatScale(vs.loraScale);
});
$("variants-lora").addEventListener("change", (event) => {
  vs.loraScale = clampScale(event.target.value);
  syncLoraRow();
  syncUrl();
  if (vs.compareOn && vs.chosen.some(isLora)) runCompare();
});

on("decoded", () => {
  syncUpscaleButton();
  if (vs.enabled && vs.compareOn) runCompare();
});

register({ name: "variants", mirror: vs, start, urlParams });
