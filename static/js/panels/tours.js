// Guided tours: the tour list, the player on the map (caption, ←/→, decoded path frames), the owner's recorder,
// and, for followers of a presentation, the presenter's current step shown in the same player.

import { api } from "../api.js";
import { el, showError, toast } from "../common.js";
import { MAX_PATH_POINTS, MAX_TOUR_STEPS } from "../core/constants.js";
import { actions, currentView, emit, on, register, setView, shareStateChanged, state } from "../core/page.js";
import { enc, isNum, localUrl, pair, plural, triple } from "./classroom-shared.js";

const PATH_FRAMES = 8;
const $ = (id) => document.getElementById(id);
const root = $("map-root");
const frame = $("map-frame");
const mapId = root.dataset.mapId;

const tours = {
  tours: [],
  tour: null, // the tour being played
  step: -1,
  frames: [], // path frames of the current step: [{url, x, y}]
  draft: [],
  remote: false, // the player shows the presenter's step (followers)
};

const tourPlayer = el("div", {
  id: "tour-player", class: "tour-player", tabindex: "0", role: "region", "aria-label": "Tour player", hidden: true,
  "aria-keyshortcuts": "ArrowLeft ArrowRight Escape",
});
tourPlayer.append(
  el("div", { class: "tour-player-head" },
    el("span", { id: "tour-player-title", class: "tour-player-title" }),
    el("span", { id: "tour-player-count", class: "tour-player-count" }),
    el("button", { type: "button", class: "btn btn-small tour-close", id: "tour-close", "aria-label": "Close the tour", text: "✕" })),
  el("p", { id: "tour-caption-text", class: "tour-caption-text", "aria-live": "polite" }),
  el("div", { id: "tour-frames", class: "tour-frames", hidden: true }),
  el("div", { class: "tour-player-nav" },
    el("button", { type: "button", class: "btn", id: "tour-prev", text: "← Previous" }),
    el("span", { class: "tour-player-hint small", text: "← / → keys" }),
    el("button", { type: "button", class: "btn btn-primary", id: "tour-next", text: "Next →" })),
);
frame.append(tourPlayer);

// ---------------------------------------------------------------- the list ----

async function loadTours() {
  try {
    const data = await api(`/api/maps/${enc(mapId)}/tours`);
    tours.tours = Array.isArray(data.tours) ? data.tours : [];
  } catch (_) {
    tours.tours = [];
  }
  renderTours();
}

function renderTours() {
  const list = $("tour-list");
  list.replaceChildren();
  for (const tour of tours.tours) {
    const steps = Array.isArray(tour.steps) ? tour.steps.length : 0;
    const item = el("li", { class: "tour-item", "data-tour-id": tour.id },
      el("span", { class: "tour-item-title" }, el("strong", { text: tour.title }), " ",
        el("span", { class: "muted small", text: `· ${plural(steps, "step")}` })),
      el("button", { type: "button", class: "btn btn-small btn-primary tour-play", text: "Play", onclick: () => playTour(tour) }));
    if (state.canEdit) {
      item.append(el("button", {
        type: "button", class: "btn btn-small btn-quiet tour-delete", "aria-label": `Delete the tour ${tour.title}`, text: "Delete",
        onclick: () => deleteTour(tour),
      }));
    }
    list.append(item);
  }
  $("tour-list-empty").hidden = tours.tours.length > 0;
}

async function deleteTour(tour) {
  if (!window.confirm(`Delete the tour “${tour.title}”?`)) return;
  try {
    await api(`/api/maps/${enc(mapId)}/tours/${enc(tour.id)}`, { method: "DELETE", editKey: state.editKey });
    if (tours.tour && tours.tour.id === tour.id) closeTour();
    await loadTours();
  } catch (err) {
    toast(`Could not delete the tour. ${err.message}`, "error");
  }
}

// ---------------------------------------------------------------- playing ----

function playTour(tour) {
  if (!tour || !Array.isArray(tour.steps) || !tour.steps.length) return;
  tourPlayer.classList.remove("is-remote");
  tours.remote = false;
  tours.tour = tour;
  tourPlayer.hidden = false;
  root.classList.add("is-touring");
  $("tour-player-title").textContent = tour.title;
  showStep(0);
  tourPlayer.focus();
}

function closeTour() {
  tours.tour = null;
  tours.step = -1;
  tours.frames = [];
  tourPlayer.hidden = true;
  root.classList.remove("is-touring");
  shareStateChanged();
  const followed = actions.followedState();
  if (followed) showRemoteCaption(followed.tour);
}

let stepToken = 0;
async function showStep(index) {
  const tour = tours.tour;
  if (!tour) return;
  const i = Math.max(0, Math.min(index, tour.steps.length - 1));
  const step = tour.steps[i];
  const token = ++stepToken;
  tours.step = i;
  tours.frames = [];
  tourPlayer.dataset.step = String(i);
  $("tour-player-count").textContent = `${i + 1} / ${tour.steps.length}`;
  $("tour-caption-text").textContent = step.caption || "";
  $("tour-prev").disabled = i === 0;
  $("tour-next").disabled = i === tour.steps.length - 1;
  renderFrames([], step);
  emit("user-input", { kind: "tour" }); // a follower playing a tour explores on their own
  if (triple(step.view)) await setView({ x: step.view[0], y: step.view[1], zoom: step.view[2] });
  if (token !== stepToken) return;
  const seed = Number.isInteger(step.seed) ? step.seed : state.seed;
  if (Number.isInteger(step.seed)) actions.setSeed(step.seed, { decode: false });
  if (step.terrain && typeof step.terrain === "object") actions.setTerrain(step.terrain); // decodes with the step's seed
  if (pair(step.at)) actions.decodeAt(step.at[0], step.at[1], { seed });
  shareStateChanged();
  if (Array.isArray(step.path) && step.path.length >= 2) {
    const frames = $("tour-frames");
    frames.hidden = false;
    frames.replaceChildren(el("span", { class: "muted small", text: "Decoding the path…" }));
    try {
      const result = await api(`/api/maps/${enc(mapId)}/path`, {
        method: "POST", json: { points: step.path, steps: PATH_FRAMES, seed },
      });
      if (token !== stepToken) return;
      tours.frames = (result.frames || []).filter((f) => localUrl(f.url));
      renderFrames(tours.frames, step);
      shareStateChanged();
    } catch (err) {
      if (token === stepToken) frames.replaceChildren(el("span", { class: "error small", text: `Could not decode the path. ${err.message}` }));
    }
  }
}

function renderFrames(frames, step) {
  const box = $("tour-frames");
  box.replaceChildren();
  box.hidden = !frames.length;
  const seed = step && Number.isInteger(step.seed) ? step.seed : state.seed;
  frames.forEach((f, n) => {
    const label = `Path frame ${n + 1} of ${frames.length}: x ${Number(f.x).toFixed(3)}, y ${Number(f.y).toFixed(3)}`;
    box.append(el("button", {
      type: "button", class: "tour-frame", title: label, "aria-label": label,
      onclick: () => { actions.decodeAt(Number(f.x.toFixed(6)), Number(f.y.toFixed(6)), { seed }); },
    }, el("img", { src: f.url, alt: "" })));
  });
}

tourPlayer.addEventListener("keydown", (event) => {
  if (!tours.tour) return;
  if (event.target.closest && event.target.closest("button") && (event.key === "Enter" || event.key === " ")) return;
  if (event.key === "ArrowRight") { event.preventDefault(); showStep(tours.step + 1); }
  else if (event.key === "ArrowLeft") { event.preventDefault(); showStep(tours.step - 1); }
  else if (event.key === "Escape") { event.preventDefault(); closeTour(); frame.focus(); }
});
tourPlayer.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button || !tours.tour) return;
  if (button.id === "tour-next") showStep(tours.step + 1);
  else if (button.id === "tour-prev") showStep(tours.step - 1);
  else if (button.id === "tour-close") { closeTour(); return; }
  if (button.disabled) tourPlayer.focus(); // the first or last step: keep ←/→ working
});

// ---------------------------------------------------------------- the presenter's step, for followers ----

function showRemoteCaption(tour) {
  if (tours.tour) return; // a tour of one's own is playing
  if (!tour || typeof tour !== "object") {
    clearRemoteCaption();
    return;
  }
  tours.remote = true;
  tourPlayer.hidden = false;
  tourPlayer.classList.add("is-remote");
  $("tour-player-title").textContent = typeof tour.title === "string" ? tour.title : "";
  $("tour-player-count").textContent = isNum(tour.index) && isNum(tour.count) ? `${tour.index + 1} / ${tour.count}` : "";
  $("tour-caption-text").textContent = typeof tour.caption === "string" ? tour.caption : "";
  const frames = Array.isArray(tour.frames) ? tour.frames.filter((f) => f && localUrl(f.url) && isNum(f.x) && isNum(f.y)) : [];
  renderFrames(frames, null);
}

function clearRemoteCaption() {
  if (!tours.remote) return;
  tours.remote = false;
  tourPlayer.classList.remove("is-remote");
  tourPlayer.hidden = true;
}

on("remote-state", ({ state: remote, following, ended }) => {
  if (ended) clearRemoteCaption();
  else if (following) showRemoteCaption(remote.tour);
});

// ---------------------------------------------------------------- recording ----

function drawnPath() {
  const vertices = actions.drawnPath();
  const path = vertices.filter(pair).slice(0, MAX_PATH_POINTS).map(([x, y]) => [Number(x.toFixed(6)), Number(y.toFixed(6))]);
  return path.length >= 2 ? path : null;
}

function addDraftStep() {
  const v = currentView();
  const cur = state.current;
  let path = null;
  if ($("tour-include-path").checked) {
    path = drawnPath();
    if (!path) {
      showError($("tour-error"), "Draw a path on the map first (Explore tab, Path), or untick “Include the path”.");
      return;
    }
  }
  showError($("tour-error"), "");
  if (tours.draft.length >= MAX_TOUR_STEPS) {
    showError($("tour-error"), `A tour has at most ${MAX_TOUR_STEPS} steps.`);
    return;
  }
  tours.draft.push({
    caption: $("tour-caption").value.trim(),
    view: [v.x, v.y, v.zoom],
    at: cur ? [cur.x, cur.y] : null,
    seed: cur ? cur.seed : state.seed,
    path,
    terrain: actions.terrainState(), // the layer as the owner sees it (null: this map has no terrain)
  });
  $("tour-caption").value = "";
  $("tour-include-path").checked = false;
  renderDraft();
  $("tour-caption").focus();
}

function renderDraft() {
  const list = $("tour-draft");
  list.replaceChildren();
  tours.draft.forEach((step, n) => {
    let where = step.at ? `decodes x ${step.at[0]}, y ${step.at[1]} · seed ${step.seed}` : `view x ${step.view[0]}, y ${step.view[1]}`;
    if (step.path) where += ` · path of ${step.path.length} points`;
    if (step.terrain && step.terrain.on) where += " · the space shown";
    list.append(el("li", { class: "tour-draft-step" },
      el("span", {}, el("span", { class: "tour-draft-caption", text: step.caption || "(no caption)" }),
        el("span", { class: "muted small", text: ` — ${where}` })),
      el("button", {
        type: "button", class: "btn btn-quiet btn-small", text: "Remove", "aria-label": `Remove step ${n + 1}`,
        onclick: () => { tours.draft.splice(n, 1); renderDraft(); },
      })));
  });
  $("tour-save").disabled = tours.draft.length === 0;
}

async function saveTour() {
  const title = $("tour-title").value.trim();
  if (!title) {
    showError($("tour-error"), "Give the tour a title first.");
    $("tour-title").focus();
    return;
  }
  showError($("tour-error"), "");
  $("tour-save").disabled = true;
  try {
    await api(`/api/maps/${enc(mapId)}/tours`, { method: "POST", json: { title, steps: tours.draft }, editKey: state.editKey });
    tours.draft = [];
    $("tour-title").value = "";
    renderDraft();
    await loadTours();
    toast(`Tour “${title}” saved.`);
  } catch (err) {
    showError($("tour-error"), `Could not save the tour. ${err.message}`);
  } finally {
    $("tour-save").disabled = tours.draft.length === 0;
  }
}

$("tour-add-step").addEventListener("click", addDraftStep);
$("tour-save").addEventListener("click", saveTour);

register({
  name: "tours",
  mirror: tours,
  start: () => loadTours(),
  presentState() {
    if (!tours.tour || tours.step < 0) return {};
    const step = tours.tour.steps[tours.step];
    return {
      tour: {
        title: tours.tour.title, index: tours.step, count: tours.tour.steps.length, caption: step.caption || "",
        frames: tours.frames.map((f) => ({ url: f.url, x: f.x, y: f.y })),
      },
    };
  },
});
