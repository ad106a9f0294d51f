// The one owner of the pointer and the map's keyboard: it knows the current mode (decode, path drawing, lasso,
// quiz guess), tells a click from a pan, and hands each click, double-click, lasso and key to the mode's handler.
//
//   MODES                       "decode" (default) | "path" | "lasso" | "guess"
//   handle(mode, handler)       handler: {click(at), dblclick(at), lasso(polygon), key(event, cursor) -> handled,
//                               leave()}; at = {px, py, x, y, keyboard}; polygon: [[x, y], ...] data coordinates
//   setMode(mode) / toggleMode(mode)   the old mode's leave() runs; emits `mode`
//   cursor()                    the keyboard cursor [px, py] (canvas CSS pixels)
//
// Nobody else listens to clicks on the map. The renderer pans and zooms on drags and the wheel by itself; in lasso
// mode a surface above the canvas takes the drag instead, so the camera stays put.

import { CLICK_SLOP_PX, KEY_STEP_FAST_PX, KEY_STEP_PX, KEY_ZOOM } from "./constants.js";
import { actions, canvasSize, currentView, emit, on, renderer, screenToData, setView, state } from "./page.js";

export const MODES = Object.freeze(["decode", "path", "lasso", "guess"]);
const SVG_NS = "http://www.w3.org/2000/svg";
const LASSO_MIN_POINTS = 3;

const frame = document.getElementById("map-frame");
const canvas = document.getElementById("map-canvas");
const handlers = {};

export function handle(mode, handler) {
  if (!MODES.includes(mode)) throw new Error(`latentmap: unknown pointer mode "${mode}"`);
  handlers[mode] = handler;
}

export function mode() {
  return state.mode;
}

export function setMode(next) {
  if (!MODES.includes(next)) throw new Error(`latentmap: unknown pointer mode "${next}"`);
  const previous = state.mode;
  if (previous === next) return;
  const leaving = handlers[previous];
  state.mode = next;
  if (leaving && leaving.leave) leaving.leave();
  frame.dataset.mode = next;
  lassoSurface.style.display = next === "lasso" ? "block" : "none"; // an SVG element has no `hidden`
  emit("mode", { mode: next, previous });
}

/** The mode on, or (when it is on already) back to decoding. */
export function toggleMode(wanted) {
  setMode(state.mode === wanted ? "decode" : wanted);
}

export function cursor() {
  return state.kbdCursor;
}

function at(px, py, keyboard = false) {
  const [x, y] = screenToData(px, py);
  return { px, py, x, y, keyboard };
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function dispatch(kind, ...args) {
  const handler = handlers[state.mode];
  if (handler && handler[kind]) handler[kind](...args);
}

// ---------------------------------------------------------------- clicks and pans ----

let press = null; // {x, y, moved}: the primary button went down on the map here (client px)

function onMap(event) {
  return event.target === canvas || event.target === lassoSurface;
}

frame.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || !onMap(event)) return;
  press = { x: event.clientX, y: event.clientY, moved: 0, panned: false };
  emit("user-input", { kind: "press" });
  if (state.mode === "lasso") startLasso(event);
});

frame.addEventListener("pointermove", (event) => {
  if (!press || !(event.buttons & 1)) return;
  press.moved = Math.max(press.moved, Math.hypot(event.clientX - press.x, event.clientY - press.y));
  if (press.moved > CLICK_SLOP_PX && !press.panned) {
    press.panned = true;
    if (state.mode !== "lasso") emit("user-input", { kind: "pan" });
  }
  if (lasso) extendLasso(event);
});

frame.addEventListener("pointerup", (event) => {
  if (lasso) endLasso(event);
});

frame.addEventListener("click", (event) => {
  if (!onMap(event) || !press || !renderer()) return;
  const moved = press.moved;
  press = null;
  if (moved > CLICK_SLOP_PX) return; // the end of a pan (or of a lasso): not a click
  const [px, py] = canvasPoint(event);
  state.kbdCursor = [px, py];
  dispatch("click", at(px, py));
});

frame.addEventListener("dblclick", (event) => {
  if (!onMap(event) || !renderer()) return;
  event.preventDefault();
  const [px, py] = canvasPoint(event);
  dispatch("dblclick", at(px, py));
});

frame.addEventListener("wheel", (event) => {
  if (onMap(event)) emit("user-input", { kind: "wheel" });
}, { passive: true });

// ---------------------------------------------------------------- lasso ----

const lassoSurface = document.createElementNS(SVG_NS, "svg");
lassoSurface.setAttribute("class", "lasso-surface");
lassoSurface.setAttribute("aria-hidden", "true");
lassoSurface.style.display = "none";
const lassoLine = document.createElementNS(SVG_NS, "polygon");
lassoLine.setAttribute("class", "lasso-line");
lassoSurface.append(lassoLine);
frame.append(lassoSurface);

let lasso = null; // screen points of the lasso being drawn

function startLasso(event) {
  lasso = [canvasPoint(event)];
  lassoSurface.setPointerCapture(event.pointerId);
  drawLasso();
}

function extendLasso(event) {
  const point = canvasPoint(event);
  const last = lasso[lasso.length - 1];
  if (Math.hypot(point[0] - last[0], point[1] - last[1]) >= 2) lasso.push(point);
  drawLasso();
}

function endLasso(event) {
  extendLasso(event);
  const points = lasso;
  lasso = null;
  lassoLine.setAttribute("points", "");
  if (points.length >= LASSO_MIN_POINTS && press && press.moved > CLICK_SLOP_PX) {
    dispatch("lasso", points.map(([px, py]) => screenToData(px, py)));
  }
}

function drawLasso() {
  const rect = canvas.getBoundingClientRect();
  lassoSurface.setAttribute("width", String(rect.width));
  lassoSurface.setAttribute("height", String(rect.height));
  lassoLine.setAttribute("points", lasso.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
}

// ---------------------------------------------------------------- keyboard ----

const cursorNode = document.getElementById("kbd-cursor");

export function positionCursor() {
  if (state.kbdCursor && frame.matches(":focus-visible")) {
    cursorNode.hidden = false;
    cursorNode.style.transform = `translate(${state.kbdCursor[0]}px, ${state.kbdCursor[1]}px)`;
  } else {
    cursorNode.hidden = true;
  }
}

frame.addEventListener("focus", () => {
  if (!state.kbdCursor) {
    const [w, h] = canvasSize();
    state.kbdCursor = [w / 2, h / 2];
  }
  positionCursor();
});
frame.addEventListener("blur", () => positionCursor());
on("view", () => positionCursor());

const NAVIGATION_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "+", "=", "-", "0"];

frame.addEventListener("keydown", (event) => {
  if (event.target !== frame || !renderer()) return;
  const [w, h] = canvasSize();
  const cur = state.kbdCursor || [w / 2, h / 2];
  state.kbdCursor = cur;
  const handler = handlers[state.mode];
  if (handler && handler.key && handler.key(event, cur)) {
    event.preventDefault();
    return;
  }
  const step = event.shiftKey ? KEY_STEP_FAST_PX : KEY_STEP_PX;
  let handled = true;
  switch (event.key) {
    case "ArrowLeft": cur[0] = Math.max(0, cur[0] - step); break;
    case "ArrowRight": cur[0] = Math.min(w, cur[0] + step); break;
    case "ArrowUp": cur[1] = Math.max(0, cur[1] - step); break;
    case "ArrowDown": cur[1] = Math.min(h, cur[1] + step); break;
    case "Enter":
    case " ": dispatch("click", at(cur[0], cur[1], true)); break;
    case "+":
    case "=":
    case "-": {
      const v = currentView();
      setView({ ...v, zoom: v.zoom * (event.key === "-" ? 1 / KEY_ZOOM : KEY_ZOOM) });
      break;
    }
    case "0": actions.fitView(); break;
    default: handled = false;
  }
  if (!handled) return;
  event.preventDefault();
  emit("user-input", { kind: "key", key: event.key, navigation: NAVIGATION_KEYS.includes(event.key) });
  positionCursor();
  emit("cursor", { px: cur[0], py: cur[1] });
});
