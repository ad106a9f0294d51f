// Classroom mode on the map page (present / follow, guided tours, quiz).
// Builds on window.latentmap and the latentmap:* events that map.js emits. map.js is not changed: quiz clicks
// are taken in the capture phase on #map-frame, before the canvas' own click handler (which decodes) sees them.
// All user-provided text (captions, titles, player names) is written with textContent, never as HTML.

import { api, ApiError } from "./api.js";
import { el, showError, toast } from "./common.js";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const lm = window.latentmap;
const root = $("map-root");
const frame = $("map-frame");
const canvas = $("map-canvas");
const mapId = root ? root.dataset.mapId : null;

const PUSH_INTERVAL_MS = 200; // at most 5 presenter updates a second, the last one always sent
const FOLLOWER_POLL_MS = 4000;
const QUIZ_POLL_MS = 2000;
const PATH_FRAMES = 8;
const CLICK_SLOP_PX = 5;
const MAX_PATH_POINTS = 32; // the server's max_path_points
const MAX_TOUR_STEPS = 50; // the server's max_tour_steps
const PLAYER_KEY = "latentmap:player";
const presentKey = () => `latentmap:presenting:${mapId}`;
const followKey = () => `latentmap:following:${mapId}`;
const quizKey = () => `latentmap:quiz:${mapId}`;

// Everything classroom.js knows, on the page's public surface (for browser tests and the console).
const cls = {
  role: null, // "presenter" | "follower" | null
  presentation: null, // presenter: {code, presenter_key, follow_url, qr_url, expires_at}
  followCode: null,
  following: false, // follower: the presenter's state is applied as it comes
  ended: false,
  followers: 0,
  remote: null, // follower: the last {version, state, followers} received
  tours: [],
  tour: null, // the tour being played
  step: -1,
  frames: [], // path frames of the current step: [{url, x, y}]
  draft: [],
  quiz: null, // {id, image_url, revealed}
  quizPresenterKey: null,
  guessMode: false,
  guess: null, // [x, y] placed on the map
  guessSent: false,
  result: null, // revealed round: {answer, ranking, ...}
};
if (lm) lm.classroom = cls;

function store(kind) {
  try { return kind === "local" ? window.localStorage : window.sessionStorage; } catch (_) { return null; }
}
function readJson(kind, key) {
  try { return JSON.parse(store(kind).getItem(key) || "null"); } catch (_) { return null; }
}
function writeJson(kind, key, value) {
  try {
    if (value === null || value === undefined) store(kind).removeItem(key);
    else store(kind).setItem(key, JSON.stringify(value));
  } catch (_) { /* private mode: memory only */ }
}

/** fetch with the presenter key (api.js only knows the edit key). */
async function presenterApi(path, method, key, json) {
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

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const pair = (v) => Array.isArray(v) && v.length === 2 && v.every(isNum);
const triple = (v) => Array.isArray(v) && v.length === 3 && v.every(isNum) && v[2] > 0;
const localUrl = (u) => typeof u === "string" && /^\/api\/[A-Za-z0-9_./-]+$/.test(u); // never a foreign address
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// ================================================================ overlays on the map ====

const markers = el("div", { class: "classroom-markers", "aria-hidden": "true" });
const tourPlayer = el("div", {
  id: "tour-player", class: "tour-player", tabindex: "0", role: "region", "aria-label": "Tour player", hidden: true,
  "aria-keyshortcuts": "ArrowLeft ArrowRight Escape",
});

function buildOverlays() {
  frame.append(markers);
  // The follow status sits on the map, where a student looks.
  const followBox = $("follow-box");
  if (followBox) frame.append(followBox);
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
  new ResizeObserver(() => positionMarkers()).observe(canvas);
}

function marker(id, className, label) {
  let node = id ? document.getElementById(id) : null;
  if (!node) {
    node = el("div", { id, class: `cr-marker ${className}` }, el("span", { class: "cr-marker-label" }));
    markers.append(node);
  }
  node.querySelector(".cr-marker-label").textContent = label || "";
  return node;
}

function positionMarkers() {
  if (!lm.scatterplot) return;
  for (const node of markers.children) {
    const x = Number(node.dataset.x);
    const y = Number(node.dataset.y);
    if (!Number.isFinite(x) || !Number.isFinite(y)) { node.hidden = true; continue; }
    const [px, py] = lm.dataToScreen(x, y);
    node.hidden = false;
    node.style.transform = `translate(${px}px, ${py}px)`;
  }
}

function placeMarker(node, x, y) {
  node.dataset.x = String(x);
  node.dataset.y = String(y);
  positionMarkers();
}

function clearMarkers() {
  markers.replaceChildren();
}

// ================================================================ presenting ====

let pushTimer = null;
let pushBusy = false;
let pushDirty = false;
let lastPushAt = 0;
let followerPoll = null;

function presenterState() {
  const v = lm.currentView();
  const cur = lm.state.current;
  const state = {
    view: [v.x, v.y, v.zoom],
    at: cur ? [cur.x, cur.y] : null,
    seed: cur ? cur.seed : lm.state.seed,
  };
  if (cls.quiz) state.quiz = { id: cls.quiz.id, image_url: cls.quiz.image_url, revealed: Boolean(cls.quiz.revealed) };
  if (cls.tour && cls.step >= 0) {
    const step = cls.tour.steps[cls.step];
    state.tour = {
      title: cls.tour.title, index: cls.step, count: cls.tour.steps.length, caption: step.caption || "",
      frames: cls.frames.map((f) => ({ url: f.url, x: f.x, y: f.y })),
    };
  }
  return state;
}

/** Send the presenter's state: at most every PUSH_INTERVAL_MS, one request at a time, the latest always last. */
function schedulePush() {
  if (cls.role !== "presenter" || !lm.state.ready) return;
  if (pushBusy) { pushDirty = true; return; }
  if (pushTimer) return; // the pending push reads the state when it fires
  pushTimer = setTimeout(pushNow, Math.max(0, lastPushAt + PUSH_INTERVAL_MS - Date.now()));
}

async function pushNow() {
  pushTimer = null;
  if (cls.role !== "presenter") return;
  pushBusy = true;
  pushDirty = false;
  lastPushAt = Date.now();
  const p = cls.presentation;
  try {
    const result = await presenterApi(`/api/presentations/${enc(p.code)}/state`, "PUT", p.presenter_key, presenterState());
    setFollowers(result.followers);
  } catch (err) {
    if (err.status === 404 || err.status === 403) presentationGone();
    else toast(`Could not update the presentation. ${err.message}`, "error");
  } finally {
    pushBusy = false;
    if (pushDirty) schedulePush();
  }
}

function setFollowers(n) {
  cls.followers = Number(n) || 0;
  const node = $("present-followers");
  node.textContent = `${cls.followers} following`;
  node.dataset.count = String(cls.followers);
}

function followUrl() {
  return window.location.origin + cls.presentation.follow_url;
}

function becomePresenter(p) {
  cls.role = "presenter";
  cls.presentation = p;
  writeJson("session", presentKey(), p);
  $("present-start-btn").hidden = true;
  $("present-box").hidden = false;
  root.classList.add("is-presenting");
  const link = $("present-link");
  link.textContent = window.location.host + p.follow_url;
  link.href = p.follow_url;
  const ends = new Date(Number(p.expires_at) * 1000);
  $("present-expires").textContent = Number.isNaN(ends.getTime()) ? ""
    : `Ends by itself at ${ends.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`;
  setFollowers(0);
  schedulePush();
  clearInterval(followerPoll);
  followerPoll = setInterval(async () => {
    try {
      const info = await api(`/api/presentations/${enc(p.code)}`);
      setFollowers(info.followers);
    } catch (err) {
      if (err.status === 404) presentationGone();
    }
  }, FOLLOWER_POLL_MS);
}

function stopPresenting() {
  clearInterval(followerPoll);
  clearTimeout(pushTimer);
  pushTimer = null;
  cls.role = null;
  cls.presentation = null;
  writeJson("session", presentKey(), null);
  $("present-box").hidden = true;
  $("present-start-btn").hidden = false;
  root.classList.remove("is-presenting");
  if ($("present-dialog").open) $("present-dialog").close();
}

function presentationGone() {
  if (cls.role !== "presenter") return;
  stopPresenting();
  toast("The presentation has ended (its time ran out).");
}

async function startPresenting() {
  const button = $("present-start-btn");
  button.disabled = true;
  try {
    const p = await api(`/api/maps/${enc(mapId)}/presentations`, { method: "POST", json: {}, editKey: lm.state.editKey });
    becomePresenter(p);
    showQr();
  } catch (err) {
    toast(`Could not start the presentation. ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function endPresenting() {
  const p = cls.presentation;
  if (!p) return;
  try {
    await presenterApi(`/api/presentations/${enc(p.code)}`, "DELETE", p.presenter_key);
  } catch (err) {
    if (err.status !== 404) { toast(`Could not end the presentation. ${err.message}`, "error"); return; }
  }
  stopPresenting();
  toast("Presentation ended.");
}

function showQr() {
  const p = cls.presentation;
  if (!p) return;
  $("present-dialog-url").textContent = window.location.host + p.follow_url;
  $("present-dialog-qr").src = p.qr_url;
  const dialog = $("present-dialog");
  if (!dialog.open) dialog.showModal();
}

async function resumePresenting() {
  const saved = readJson("session", presentKey());
  if (!saved || !saved.code || !saved.presenter_key) return false;
  try {
    const info = await api(`/api/presentations/${enc(saved.code)}`);
    if (info.map_id !== mapId) throw new ApiError("another map", 404);
  } catch (_) {
    writeJson("session", presentKey(), null);
    return false;
  }
  becomePresenter(saved);
  return true;
}

// ================================================================ following ====

let source = null;
let applying = 0;

function setFollowStatus(text, { again = false, ended = false } = {}) {
  $("follow-box").hidden = false;
  $("follow-status").textContent = text;
  $("follow-again-btn").hidden = !again;
  $("follow-box").classList.toggle("is-ended", ended);
  $("follow-box").classList.toggle("is-paused", again);
  root.dataset.follow = ended ? "ended" : again ? "paused" : "following";
}

function followText() {
  const n = cls.remote ? cls.remote.followers : null;
  return `Following the presenter live${n ? ` · ${plural(n, "viewer")}` : ""}`;
}

function follow(code) {
  cls.role = "follower";
  cls.followCode = code;
  cls.following = true;
  writeJson("session", followKey(), code);
  setFollowStatus("Connecting to the presentation…");
  source = new EventSource(`/api/presentations/${enc(code)}/events`);
  source.addEventListener("state", (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch (_) { return; }
    onRemoteState(data);
  });
  source.addEventListener("end", () => followEnded());
  source.addEventListener("error", () => {
    if (cls.ended) return;
    if (source.readyState === EventSource.CLOSED) {
      api(`/api/presentations/${enc(code)}`).then(() => {
        setFollowStatus("Lost the connection to the presentation. Reload the page to follow again.");
      }).catch((err) => {
        if (err.status === 404) followEnded();
        else setFollowStatus("Lost the connection to the presentation. Reload the page to follow again.");
      });
    } else {
      setFollowStatus("Reconnecting to the presentation…", { again: false });
    }
  });
}

function followEnded() {
  cls.ended = true;
  cls.following = false;
  if (source) source.close();
  source = null;
  writeJson("session", followKey(), null);
  setFollowStatus("The presentation has ended. You can keep exploring the map.", { ended: true });
  clearRemoteCaption();
}

function onRemoteState(data) {
  if (!data || typeof data !== "object") return;
  cls.remote = data;
  const state = data.state && typeof data.state === "object" ? data.state : {};
  handleRemoteQuiz(state.quiz);
  if (cls.following) {
    setFollowStatus(followText());
    applyRemote(state);
  }
}

async function applyRemote(state) {
  applying += 1;
  try {
    if (triple(state.view)) await lm.setView({ x: state.view[0], y: state.view[1], zoom: state.view[2] });
    const seed = Number.isInteger(state.seed) && state.seed >= 0 ? state.seed : lm.state.seed;
    if (pair(state.at)) {
      const cur = lm.state.current;
      if (!cur || cur.x !== state.at[0] || cur.y !== state.at[1] || cur.seed !== seed) {
        lm.setSeed(seed, { decode: false });
        lm.decodeAt(state.at[0], state.at[1], { seed });
      }
    } else if (seed !== lm.state.seed) {
      lm.setSeed(seed, { decode: false });
    }
    showRemoteCaption(state.tour);
  } finally {
    applying -= 1;
  }
}

function pauseFollowing() {
  if (cls.role !== "follower" || !cls.following || cls.ended) return;
  cls.following = false;
  setFollowStatus("You are exploring on your own.", { again: true });
}

function followAgain() {
  if (cls.role !== "follower" || cls.ended) return;
  cls.following = true;
  setFollowStatus(followText());
  if (cls.remote && cls.remote.state) applyRemote(cls.remote.state);
}

function showRemoteCaption(tour) {
  if (!tour || typeof tour !== "object" || cls.tour) {
    if (!cls.tour) clearRemoteCaption();
    return;
  }
  tourPlayer.hidden = false;
  tourPlayer.classList.add("is-remote");
  $("tour-player-title").textContent = typeof tour.title === "string" ? tour.title : "";
  $("tour-player-count").textContent = isNum(tour.index) && isNum(tour.count) ? `${tour.index + 1} / ${tour.count}` : "";
  $("tour-caption-text").textContent = typeof tour.caption === "string" ? tour.caption : "";
  const frames = Array.isArray(tour.frames) ? tour.frames.filter((f) => f && localUrl(f.url) && isNum(f.x) && isNum(f.y)) : [];
  renderFrames(frames, null);
}

function clearRemoteCaption() {
  if (!tourPlayer.classList.contains("is-remote")) return;
  tourPlayer.classList.remove("is-remote");
  tourPlayer.hidden = true;
}

// User input on the map means "let me explore": stop following until "Follow again".
let downAt = null;
frame.addEventListener("pointerdown", (event) => {
  if (event.target !== canvas) return;
  downAt = [event.clientX, event.clientY];
  if (!cls.guessMode) pauseFollowing();
}, true);
frame.addEventListener("pointermove", (event) => {
  if (downAt && cls.guessMode && event.buttons && Math.hypot(event.clientX - downAt[0], event.clientY - downAt[1]) > CLICK_SLOP_PX) {
    pauseFollowing(); // a pan, not a guess
  }
}, true);
frame.addEventListener("wheel", (event) => { if (event.target === canvas) pauseFollowing(); }, { capture: true, passive: true });
document.addEventListener("keydown", (event) => {
  if (event.target !== frame) return;
  if (cls.guessMode && (event.key === "Enter" || event.key === " ")) {
    // Quiz: Enter places the guess at the keyboard cursor instead of decoding there.
    event.preventDefault();
    event.stopPropagation();
    const cur = lm.state.kbdCursor;
    if (cur) {
      const [x, y] = lm.screenToData(cur[0], cur[1]);
      placeGuess(x, y);
    }
    return;
  }
  if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Enter", " ", "+", "=", "-", "0"].includes(event.key)) {
    pauseFollowing();
  }
}, true);
for (const id of ["new-seed-btn", "reset-view", "history"]) {
  const node = $(id);
  if (node) node.addEventListener("click", () => pauseFollowing(), true);
}
if ($("seed-input")) $("seed-input").addEventListener("input", () => pauseFollowing());

// Quiz mode: a click on the map places the guess marker; map.js's canvas handler (decode) never sees it.
frame.addEventListener("click", (event) => {
  if (!cls.guessMode || event.target !== canvas) return;
  event.stopPropagation();
  const start = downAt;
  downAt = null;
  if (start && Math.hypot(event.clientX - start[0], event.clientY - start[1]) > CLICK_SLOP_PX) return; // a pan
  const rect = canvas.getBoundingClientRect();
  const [x, y] = lm.screenToData(event.clientX - rect.left, event.clientY - rect.top);
  placeGuess(x, y);
}, true);

// ================================================================ tours ====

async function loadTours() {
  try {
    const data = await api(`/api/maps/${enc(mapId)}/tours`);
    cls.tours = Array.isArray(data.tours) ? data.tours : [];
  } catch (_) {
    cls.tours = [];
  }
  renderTours();
}

function renderTours() {
  const list = $("tour-list");
  list.replaceChildren();
  for (const tour of cls.tours) {
    const steps = Array.isArray(tour.steps) ? tour.steps.length : 0;
    const item = el("li", { class: "tour-item", "data-tour-id": tour.id },
      el("span", { class: "tour-item-title" }, el("strong", { text: tour.title }), " ",
        el("span", { class: "muted small", text: `· ${plural(steps, "step")}` })),
      el("button", { type: "button", class: "btn btn-small btn-primary tour-play", text: "Play", onclick: () => playTour(tour) }));
    if (lm.canEdit()) {
      item.append(el("button", {
        type: "button", class: "btn btn-small btn-quiet tour-delete", "aria-label": `Delete the tour ${tour.title}`, text: "Delete",
        onclick: () => deleteTour(tour),
      }));
    }
    list.append(item);
  }
  $("tour-list-empty").hidden = cls.tours.length > 0;
}

async function deleteTour(tour) {
  if (!window.confirm(`Delete the tour “${tour.title}”?`)) return;
  try {
    await api(`/api/maps/${enc(mapId)}/tours/${enc(tour.id)}`, { method: "DELETE", editKey: lm.state.editKey });
    if (cls.tour && cls.tour.id === tour.id) closeTour();
    await loadTours();
  } catch (err) {
    toast(`Could not delete the tour. ${err.message}`, "error");
  }
}

function playTour(tour) {
  if (!tour || !Array.isArray(tour.steps) || !tour.steps.length) return;
  tourPlayer.classList.remove("is-remote");
  cls.tour = tour;
  tourPlayer.hidden = false;
  root.classList.add("is-touring");
  $("tour-player-title").textContent = tour.title;
  showStep(0);
  tourPlayer.focus();
}

function closeTour() {
  cls.tour = null;
  cls.step = -1;
  cls.frames = [];
  tourPlayer.hidden = true;
  root.classList.remove("is-touring");
  schedulePush();
  if (cls.role === "follower" && cls.following && cls.remote) showRemoteCaption(cls.remote.state && cls.remote.state.tour);
}

let stepToken = 0;
async function showStep(index) {
  const tour = cls.tour;
  if (!tour) return;
  const i = Math.max(0, Math.min(index, tour.steps.length - 1));
  const step = tour.steps[i];
  const token = ++stepToken;
  cls.step = i;
  cls.frames = [];
  tourPlayer.dataset.step = String(i);
  $("tour-player-count").textContent = `${i + 1} / ${tour.steps.length}`;
  $("tour-caption-text").textContent = step.caption || "";
  $("tour-prev").disabled = i === 0;
  $("tour-next").disabled = i === tour.steps.length - 1;
  renderFrames([], step);
  pauseFollowing();
  if (triple(step.view)) await lm.setView({ x: step.view[0], y: step.view[1], zoom: step.view[2] });
  if (token !== stepToken) return;
  const seed = Number.isInteger(step.seed) ? step.seed : lm.state.seed;
  if (Number.isInteger(step.seed)) lm.setSeed(step.seed, { decode: false });
  if (pair(step.at)) lm.decodeAt(step.at[0], step.at[1], { seed });
  schedulePush();
  if (Array.isArray(step.path) && step.path.length >= 2) {
    const frames = $("tour-frames");
    frames.hidden = false;
    frames.replaceChildren(el("span", { class: "muted small", text: "Decoding the path…" }));
    try {
      const result = await api(`/api/maps/${enc(mapId)}/path`, {
        method: "POST", json: { points: step.path, steps: PATH_FRAMES, seed },
      });
      if (token !== stepToken) return;
      cls.frames = (result.frames || []).filter((f) => localUrl(f.url));
      renderFrames(cls.frames, step);
      schedulePush();
    } catch (err) {
      if (token === stepToken) frames.replaceChildren(el("span", { class: "error small", text: `Could not decode the path. ${err.message}` }));
    }
  }
}

function renderFrames(frames, step) {
  const box = $("tour-frames");
  box.replaceChildren();
  box.hidden = !frames.length;
  const seed = step && Number.isInteger(step.seed) ? step.seed : lm.state.seed;
  frames.forEach((f, n) => {
    const label = `Path frame ${n + 1} of ${frames.length}: x ${Number(f.x).toFixed(3)}, y ${Number(f.y).toFixed(3)}`;
    box.append(el("button", {
      type: "button", class: "tour-frame", title: label, "aria-label": label,
      onclick: () => { lm.decodeAt(Number(f.x.toFixed(6)), Number(f.y.toFixed(6)), { seed }); },
    }, el("img", { src: f.url, alt: "" })));
  });
}

tourPlayer.addEventListener("keydown", (event) => {
  if (!cls.tour) return;
  if (event.target.closest && event.target.closest("button") && (event.key === "Enter" || event.key === " ")) return;
  if (event.key === "ArrowRight") { event.preventDefault(); showStep(cls.step + 1); }
  else if (event.key === "ArrowLeft") { event.preventDefault(); showStep(cls.step - 1); }
  else if (event.key === "Escape") { event.preventDefault(); closeTour(); frame.focus(); }
});
tourPlayer.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button || !cls.tour) return;
  if (button.id === "tour-next") showStep(cls.step + 1);
  else if (button.id === "tour-prev") showStep(cls.step - 1);
  else if (button.id === "tour-close") { closeTour(); return; }
  if (button.disabled) tourPlayer.focus(); // the first or last step: keep ←/→ working
});

function drawnPath() {
  const vertices = lm.explore && Array.isArray(lm.explore.vertices) ? lm.explore.vertices : [];
  const path = vertices.filter(pair).slice(0, MAX_PATH_POINTS).map(([x, y]) => [Number(x.toFixed(6)), Number(y.toFixed(6))]);
  return path.length >= 2 ? path : null;
}

function addDraftStep() {
  const v = lm.currentView();
  const cur = lm.state.current;
  let path = null;
  if ($("tour-include-path").checked) {
    path = drawnPath();
    if (!path) {
      showError($("tour-error"), "Draw a path on the map first (Paths, in the panel), or untick “Include the path”.");
      return;
    }
  }
  showError($("tour-error"), "");
  if (cls.draft.length >= MAX_TOUR_STEPS) {
    showError($("tour-error"), `A tour has at most ${MAX_TOUR_STEPS} steps.`);
    return;
  }
  cls.draft.push({
    caption: $("tour-caption").value.trim(),
    view: [v.x, v.y, v.zoom],
    at: cur ? [cur.x, cur.y] : null,
    seed: cur ? cur.seed : lm.state.seed,
    path,
  });
  $("tour-caption").value = "";
  $("tour-include-path").checked = false;
  renderDraft();
  $("tour-caption").focus();
}

function renderDraft() {
  const list = $("tour-draft");
  list.replaceChildren();
  cls.draft.forEach((step, n) => {
    let where = step.at ? `decodes x ${step.at[0]}, y ${step.at[1]} · seed ${step.seed}` : `view x ${step.view[0]}, y ${step.view[1]}`;
    if (step.path) where += ` · path of ${step.path.length} points`;
    list.append(el("li", { class: "tour-draft-step" },
      el("span", {}, el("span", { class: "tour-draft-caption", text: step.caption || "(no caption)" }),
        el("span", { class: "muted small", text: ` — ${where}` })),
      el("button", {
        type: "button", class: "btn btn-quiet btn-small", text: "Remove", "aria-label": `Remove step ${n + 1}`,
        onclick: () => { cls.draft.splice(n, 1); renderDraft(); },
      })));
  });
  $("tour-save").disabled = cls.draft.length === 0;
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
    await api(`/api/maps/${enc(mapId)}/tours`, { method: "POST", json: { title, steps: cls.draft }, editKey: lm.state.editKey });
    cls.draft = [];
    $("tour-title").value = "";
    renderDraft();
    await loadTours();
    toast(`Tour “${title}” saved.`);
  } catch (err) {
    showError($("tour-error"), `Could not save the tour. ${err.message}`);
  } finally {
    $("tour-save").disabled = cls.draft.length === 0;
  }
}

// ================================================================ quiz ====

let quizPoll = null;

function playerName() {
  return $("quiz-name").value.trim();
}

function setGuessMode(on) {
  cls.guessMode = Boolean(on) && Boolean(cls.quiz) && !cls.quiz.revealed && !cls.quizPresenterKey;
  root.classList.toggle("is-guessing", cls.guessMode);
  $("quiz-mode-btn").setAttribute("aria-pressed", String(cls.guessMode));
  $("quiz-mode-btn").textContent = cls.guessMode ? "Back to decoding" : "Place a guess on the map";
}

function showQuiz() {
  const q = cls.quiz;
  $("quiz-idle").hidden = Boolean(q) || !lm.canEdit();
  $("quiz-heading").hidden = !q && !lm.canEdit();
  $("quiz-box").hidden = !q;
  if (!q) return;
  $("quiz-box").dataset.roundId = q.id;
  $("quiz-box").dataset.revealed = q.revealed ? "1" : "0";
  if ($("quiz-img").getAttribute("src") !== q.image_url) $("quiz-img").src = q.image_url;
  const presenter = Boolean(cls.quizPresenterKey);
  $("quiz-player").hidden = presenter || q.revealed;
  $("quiz-presenter").hidden = !presenter || q.revealed;
  $("quiz-prompt").textContent = q.revealed ? "The answer is on the map (★)." : "Where on the map was this image decoded?";
}

function newRound(q, presenterKey = null) {
  cls.quiz = { id: q.id, image_url: q.image_url, revealed: Boolean(q.revealed) };
  cls.quizPresenterKey = presenterKey;
  cls.guess = null;
  cls.guessSent = false;
  cls.result = null;
  clearMarkers();
  $("quiz-ranking").hidden = true;
  $("quiz-ranking").replaceChildren();
  $("quiz-confirm-btn").disabled = true;
  $("quiz-status").textContent = !presenterKey ? "Click the map where you think this image came from, then confirm."
    : cls.role === "presenter" ? "Round started. Everyone following sees the image."
      : "Round started. Present to a class so that followers see it and can guess.";
  showQuiz();
  setGuessMode(!presenterKey);
  clearInterval(quizPoll);
  if (presenterKey) {
    writeJson("session", quizKey(), { ...cls.quiz, presenter_key: presenterKey });
    quizPoll = setInterval(refreshQuizCount, QUIZ_POLL_MS);
    refreshQuizCount();
  }
}

async function refreshQuizCount() {
  const q = cls.quiz;
  if (!q || q.revealed) { clearInterval(quizPoll); return; }
  try {
    const status = await api(`/api/quiz/${enc(q.id)}`);
    if (cls.quiz !== q) return;
    $("quiz-players").textContent = `${status.players} guess${status.players === 1 ? "" : "es"}`;
    $("quiz-players").dataset.count = String(status.players);
  } catch (_) { /* try again on the next tick */ }
}

async function startQuiz() {
  const button = $("quiz-start-btn");
  button.disabled = true;
  try {
    const r = await api(`/api/maps/${enc(mapId)}/quiz`, { method: "POST", json: {}, editKey: lm.state.editKey });
    newRound(r, r.presenter_key);
    button.textContent = "Start a new round";
    schedulePush();
  } catch (err) {
    toast(`Could not start a quiz round. ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function handleRemoteQuiz(q) {
  if (!q || typeof q !== "object" || typeof q.id !== "string" || !localUrl(q.image_url)) return;
  if (!cls.quiz || cls.quiz.id !== q.id) {
    newRound({ id: q.id, image_url: q.image_url, revealed: false });
    if (!q.revealed) toast("A quiz round started: where did this image come from?");
    $("quiz-box").scrollIntoView({ block: "nearest" });
  }
  if (q.revealed && !cls.result) fetchResult(q.id);
}

async function fetchResult(id) {
  try {
    const result = await api(`/api/quiz/${enc(id)}`);
    if (result.revealed && cls.quiz && cls.quiz.id === id) showResult(result);
  } catch (err) {
    $("quiz-status").textContent = `Could not load the results. ${err.message}`;
  }
}

function placeGuess(x, y) {
  if (!cls.guessMode) return;
  cls.guess = [Number(x.toFixed(6)), Number(y.toFixed(6))];
  placeMarker(marker("quiz-guess-marker", "cr-guess is-mine", playerName() || "Your guess"), cls.guess[0], cls.guess[1]);
  $("quiz-confirm-btn").disabled = false;
  $("quiz-status").textContent = cls.guessSent
    ? "Guess moved. Confirm again to send the new spot."
    : "Guess placed. Confirm it, or click elsewhere to move it.";
}

async function confirmGuess() {
  const q = cls.quiz;
  if (!q || !cls.guess) return;
  const name = playerName();
  if (!name) {
    $("quiz-status").textContent = "Type your name first.";
    $("quiz-name").focus();
    return;
  }
  try { window.localStorage.setItem(PLAYER_KEY, name); } catch (_) { /* private mode */ }
  $("quiz-confirm-btn").disabled = true;
  try {
    await api(`/api/quiz/${enc(q.id)}/guess`, { method: "POST", json: { player: name, x: cls.guess[0], y: cls.guess[1] } });
    cls.guessSent = true;
    marker("quiz-guess-marker", "cr-guess is-mine", name);
    $("quiz-status").textContent = `Guess sent as ${name}. You can move it until the answer is revealed.`;
    $("quiz-status").dataset.sent = "1";
  } catch (err) {
    $("quiz-status").textContent = err.status === 403 ? "Guesses are closed: the answer was revealed." : `Could not send the guess. ${err.message}`;
    $("quiz-confirm-btn").disabled = false;
  }
}

async function reveal() {
  const q = cls.quiz;
  if (!q || !cls.quizPresenterKey) return;
  $("quiz-reveal-btn").disabled = true;
  try {
    const result = await presenterApi(`/api/quiz/${enc(q.id)}/reveal`, "POST", cls.quizPresenterKey);
    showResult(result);
    writeJson("session", quizKey(), null);
    // Show the hidden image's spot on the map (and, when presenting, on every follower's).
    const a = result.answer;
    lm.setSeed(a.seed, { decode: false });
    lm.decodeAt(a.x, a.y, { seed: a.seed });
    schedulePush();
  } catch (err) {
    toast(`Could not reveal the answer. ${err.message}`, "error");
  } finally {
    $("quiz-reveal-btn").disabled = false;
  }
}

function showResult(result) {
  cls.result = result;
  cls.quiz.revealed = true;
  clearInterval(quizPoll);
  setGuessMode(false);
  showQuiz();
  clearMarkers();
  const mine = cls.guessSent ? playerName() : null;
  for (const [n, g] of (result.ranking || []).entries()) {
    const node = marker(null, `cr-guess${g.player === mine ? " is-mine" : ""}`, `${n + 1}. ${g.player}`);
    placeMarker(node, g.x, g.y);
  }
  if (result.answer) placeMarker(marker("quiz-answer-marker", "cr-answer", "Answer"), result.answer.x, result.answer.y);
  const list = $("quiz-ranking");
  list.replaceChildren();
  for (const g of result.ranking || []) {
    list.append(el("li", { class: `quiz-rank${g.player === mine ? " is-mine" : ""}` },
      el("span", { class: "quiz-rank-name", text: g.player }),
      el("span", { class: "quiz-rank-score", text: `${g.score} pts` }),
      el("span", { class: "muted small", text: `distance ${Number(g.distance).toFixed(3)}` })));
  }
  if (!(result.ranking || []).length) list.append(el("li", { class: "muted", text: "Nobody guessed this round." }));
  list.hidden = false;
  $("quiz-status").textContent = "Answer revealed.";
  list.scrollIntoView({ block: "nearest" });
}

function resumeQuiz() {
  const saved = readJson("session", quizKey());
  if (!saved || !saved.id || !saved.presenter_key) return;
  api(`/api/quiz/${enc(saved.id)}`).then((status) => {
    if (status.revealed) { writeJson("session", quizKey(), null); return; }
    newRound(status, saved.presenter_key);
    schedulePush();
  }).catch(() => writeJson("session", quizKey(), null));
}

// ================================================================ start ====

function applyContrast() {
  if (!lm.scatterplot) return;
  const high = document.documentElement.classList.contains("high-contrast");
  lm.scatterplot.set({ backgroundColor: high ? "#000000" : "#14171c" });
}

function wire() {
  $("present-start-btn").addEventListener("click", startPresenting);
  $("present-end-btn").addEventListener("click", endPresenting);
  $("present-qr-btn").addEventListener("click", showQr);
  $("follow-again-btn").addEventListener("click", followAgain);
  $("tour-add-step").addEventListener("click", addDraftStep);
  $("tour-save").addEventListener("click", saveTour);
  $("quiz-start-btn").addEventListener("click", startQuiz);
  $("quiz-reveal-btn").addEventListener("click", reveal);
  $("quiz-confirm-btn").addEventListener("click", confirmGuess);
  $("quiz-mode-btn").addEventListener("click", () => setGuessMode(!cls.guessMode));
  try { $("quiz-name").value = window.localStorage.getItem(PLAYER_KEY) || ""; } catch (_) { /* private mode */ }
  document.addEventListener("latentmap:view", () => { positionMarkers(); schedulePush(); });
  document.addEventListener("latentmap:decoded", () => schedulePush());
  document.addEventListener("latentmap:contrast", applyContrast);
  $("seed-input").addEventListener("change", () => schedulePush());
  $("new-seed-btn").addEventListener("click", () => setTimeout(schedulePush, 0));
}

async function init(query) {
  if (!lm || !frame) return;
  buildOverlays();
  wire();
  applyContrast();
  showQuiz();
  loadTours();
  const presenting = lm.canEdit() ? await resumePresenting() : false;
  if (lm.canEdit()) resumeQuiz();
  if (!presenting) {
    const code = (query && query.get("follow")) || readJson("session", followKey());
    if (typeof code === "string" && /^[a-z0-9]{4,32}$/.test(code)) follow(code);
  }
}

if (root && lm) {
  if (document.body.dataset.ready === "1") init(new URLSearchParams(window.location.search));
  else document.addEventListener("latentmap:ready", (event) => init(event.detail.query), { once: true });
}
