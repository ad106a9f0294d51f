// Filter the map by a metadata column (maps built from a folder or a table): a number column by a range (from /
// to), a text column by the text its value contains, a category column by a checklist of its values (with their
// counts), without having to colour by it (colouring by it, its legend hides categories too: panels/explore.js).
// Points that do not pass are dimmed, not removed; the share link keeps the filter (fcol + fmin/fmax, fq, or
// fhide: the unticked categories, "|"-separated like the legend's hide=). The values come from the compact binary
// endpoint (GET /columns/values.bin: float32 per point for numbers, a uint32 code per point for categories, a byte
// per point for a text match), never as per-item objects, so big maps filter alike.
// This module provides the action columnFilter() -> Uint8Array (1 = passes, in points order) | null; explore.js
// folds it into the colours it sets (the page core's one owner of state.colors).

import { api } from "../api.js";
import { el, showError } from "../common.js";
import { actions, on, provide, register, shareStateChanged, state } from "../core/page.js";

const $ = (id) => document.getElementById(id);
const root = $("map-root");
const base = `/api/maps/${encodeURIComponent(root.dataset.mapId)}`;
const FILTER_DELAY_MS = 250;

const cf = {
  columns: [], // GET /columns: [{name, type, ...}]
  name: "", // the column filtered by ("" = none)
  min: null, // number columns: the range kept (null = open end)
  max: null,
  text: "", // text columns: the text a kept point's value contains
  hide: [], // category columns: the values unticked (their points dimmed)
  mask: null, // Uint8Array, 1 = passes; null = no filter
  passing: 0,
};
const numbers = new Map(); // column name|points key -> Float32Array (one value a point, NaN = none)
const codes = new Map(); // column name|points key -> {codes: Uint32Array, categories: [value, ...]}

function section() {
  return $("columns-filter");
}

function pointsKey() {
  return `${state.pointsVersion}|${state.items.length}`;
}

function column() {
  return cf.columns.find((c) => c.name === cf.name) || null;
}

async function valuesBin(query) {
  const response = await api(`${base}/columns/values.bin?${new URLSearchParams(query)}`, { raw: true });
  const buffer = await response.arrayBuffer();
  const headLength = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headLength)));
  return { header, body: buffer.slice(8 + headLength) };
}

async function numberValues(name) {
  const key = `${name}|${pointsKey()}`;
  if (!numbers.has(key)) {
    const { body } = await valuesBin({ name });
    numbers.clear();
    numbers.set(key, new Float32Array(body));
  }
  return numbers.get(key);
}

async function categoryValues(name) {
  const key = `${name}|${pointsKey()}`;
  if (!codes.has(key)) {
    const { header, body } = await valuesBin({ name });
    codes.clear();
    codes.set(key, { codes: new Uint32Array(body), categories: header.categories || [] });
  }
  return codes.get(key);
}

/** The filter's mask for the current points (null when no filter is set). */
async function computeMask() {
  const col = column();
  if (!col) return null;
  if (col.type === "number") {
    if (cf.min === null && cf.max === null) return null;
    const values = await numberValues(col.name);
    const lo = cf.min === null ? -Infinity : cf.min;
    const hi = cf.max === null ? Infinity : cf.max;
    return Uint8Array.from(values, (v) => (v >= lo && v <= hi ? 1 : 0)); // NaN (no value) never passes
  }
  if (col.type === "category") {
    if (!cf.hide.length) return null;
    const values = await categoryValues(col.name);
    const hidden = new Set(cf.hide.map((v) => values.categories.indexOf(v)).filter((code) => code >= 0));
    return Uint8Array.from(values.codes, (code) => (hidden.has(code) ? 0 : 1)); // no value / unlisted: kept
  }
  if (col.type === "text") {
    const q = cf.text.trim();
    if (!q) return null;
    const { body } = await valuesBin({ name: col.name, contains: q });
    return new Uint8Array(body);
  }
  return null;
}

let applying = Promise.resolve();

/** Recompute the mask and have the points recoloured; `share`: the share link follows. */
function refilter({ share = true } = {}) {
  applying = applying.then(async () => {
    showError($("columns-filter-error"), "");
    try {
      const mask = await computeMask();
      cf.mask = mask && mask.length === state.items.length ? mask : null;
    } catch (err) {
      cf.mask = null;
      showError($("columns-filter-error"), `Could not filter by the column. ${err.message}`);
    }
    cf.passing = cf.mask ? cf.mask.reduce((a, b) => a + b, 0) : state.items.length;
    renderInfo();
    await actions.recolor();
    if (share) shareStateChanged();
    root.dataset.columnFilter = cf.mask ? `${cf.name}:${cf.passing}` : ""; // last: tests wait on it
  });
  return applying;
}

function renderInfo() {
  const info = $("columns-filter-info");
  if (!cf.mask) {
    info.hidden = true;
    return;
  }
  const n = state.items.length;
  info.textContent = `${cf.passing} of ${n} point${n === 1 ? "" : "s"} pass the filter; the others are dimmed.`;
  info.hidden = false;
}

/** Show the inputs the chosen column's type needs. */
function renderInputs() {
  const col = column();
  $("columns-filter-range").hidden = !col || col.type !== "number";
  $("columns-filter-text").hidden = !col || col.type !== "text";
  renderCategories(col);
  if (col && col.type === "number") {
    for (const [id, bound] of [["columns-filter-min", col.min], ["columns-filter-max", col.max]]) {
      $(id).placeholder = Number.isFinite(bound) ? String(bound) : "";
    }
  }
  $("columns-filter-min").value = cf.min === null ? "" : String(cf.min);
  $("columns-filter-max").value = cf.max === null ? "" : String(cf.max);
  $("columns-filter-text").value = cf.text;
}

/** Category columns: a checkbox per listed value with its count; unticked values' points are dimmed. */
function renderCategories(col) {
  const box = $("columns-filter-categories");
  const list = $("columns-filter-category-list");
  list.replaceChildren();
  box.hidden = !col || col.type !== "category";
  if (box.hidden) return;
  for (const { value, count } of col.categories || []) {
    const tick = el("input", { type: "checkbox", value, "data-category": value });
    tick.checked = !cf.hide.includes(value);
    tick.addEventListener("change", () => {
      cf.hide = tick.checked ? cf.hide.filter((v) => v !== value) : [...cf.hide, value];
      refilter();
    });
    list.append(el("label", { class: "explore-check" }, tick, ` ${value} (${count})`));
  }
  $("columns-filter-categories-more").hidden = !col.more_categories;
}

function tickAll(on) {
  const col = column();
  cf.hide = on ? [] : (col.categories || []).map((c) => c.value);
  renderCategories(col);
  refilter();
}

function readNumber(id) {
  const raw = $(id).value.trim();
  const v = raw === "" ? null : Number(raw);
  return v === null || Number.isFinite(v) ? v : null;
}

let timer = null;
function later() {
  clearTimeout(timer);
  timer = setTimeout(() => refilter(), FILTER_DELAY_MS);
}

async function loadColumns() {
  const data = await api(`${base}/columns`);
  cf.columns = data.columns.filter((c) => ["number", "text", "category"].includes(c.type));
  const select = $("columns-filter-column");
  for (const c of cf.columns) select.append(el("option", { value: c.name, text: `${c.name} (${c.type})` }));
  section().hidden = !cf.columns.length;
}

if (section()) {
  $("columns-filter-column").addEventListener("change", (event) => {
    cf.name = event.target.value;
    cf.min = null;
    cf.max = null;
    cf.text = "";
    cf.hide = [];
    renderInputs();
    refilter();
  });
  $("columns-filter-all").addEventListener("click", () => tickAll(true));
  $("columns-filter-none").addEventListener("click", () => tickAll(false));
  for (const id of ["columns-filter-min", "columns-filter-max"]) {
    $(id).addEventListener("input", () => {
      cf.min = readNumber("columns-filter-min");
      cf.max = readNumber("columns-filter-max");
      later();
    });
  }
  $("columns-filter-text").addEventListener("input", (event) => {
    cf.text = event.target.value;
    later();
  });
}

provide("columnFilter", () => (cf.mask && cf.mask.length === state.items.length ? cf.mask : null));

// Items added, deleted or re-projected: the mask is of the old points.
on("points", () => {
  if (cf.name) refilter({ share: false });
});

register({
  name: "columns",
  mirror: cf,
  async start(query) {
    if (!section()) return;
    try {
      await loadColumns();
    } catch (err) {
      showError($("columns-filter-error"), `Could not load the map's columns. ${err.message}`);
      return;
    }
    const wanted = query.get("fcol");
    if (!wanted || !cf.columns.some((c) => c.name === wanted)) return;
    cf.name = wanted;
    $("columns-filter-column").value = wanted;
    const num = (v) => (v === null || v === "" || !Number.isFinite(Number(v)) ? null : Number(v));
    cf.min = num(query.get("fmin"));
    cf.max = num(query.get("fmax"));
    cf.text = query.get("fq") || "";
    cf.hide = (query.get("fhide") || "").split("|").filter(Boolean);
    renderInputs();
    await refilter({ share: false });
  },
  urlParams() {
    if (!cf.name) return {};
    if (column() && column().type === "category") return { fcol: cf.name, fhide: cf.hide.join("|") };
    return { fcol: cf.name, fmin: cf.min ?? "", fmax: cf.max ?? "", fq: cf.text.trim() };
  },
});
