// Present to a class, or follow a presenter: the presenter's view, decoded spot, seed and every panel's part
// (core/page.js presentState(): tour step, quiz round, …) go to the server at most every PUSH_INTERVAL_MS;
// followers get it over server-sent events and apply it until they explore on their own ("Follow again").

import { api, ApiError } from "../api.js";
import { toast } from "../common.js";
import { actions, emit, on, presentState, provide, register, setView, state } from "../core/page.js";
import { mode } from "../core/pointer.js";
import { enc, pair, plural, presenterApi, readJson, triple, writeJson } from "./classroom-shared.js";

const PUSH_INTERVAL_MS = 200; // at most 5 presenter updates a second, the last one always sent
const FOLLOWER_POLL_MS = 4000;

const $ = (id) => document.getElementById(id);
const root = $("map-root");
const frame = $("map-frame");
const mapId = root.dataset.mapId;
const presentKey = () => `latentmap:presenting:${mapId}`;
const followKey = () => `latentmap:following:${mapId}`;

const cls = {
  role: null, // "presenter" | "follower" | null
  presentation: null, // presenter: {code, presenter_key, follow_url, qr_url, expires_at}
  followCode: null,
  following: false, // follower: the presenter's state is applied as it comes
  ended: false,
  followers: 0,
  remote: null, // follower: the last {version, state, followers} received
};

// ---------------------------------------------------------------- presenting ----

let pushTimer = null;
let pushBusy = false;
let pushDirty = false;
let lastPushAt = 0;
let followerPoll = null;

/** Send the presenter's state: at most every PUSH_INTERVAL_MS, one request at a time, the latest always last. */
function schedulePush() {
  if (cls.role !== "presenter" || !state.ready) return;
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
    const result = await presenterApi(`/api/presentations/${enc(p.code)}/state`, "PUT", p.presenter_key, presentState());
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
    const p = await api(`/api/maps/${enc(mapId)}/presentations`, { method: "POST", json: {}, editKey: state.editKey });
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

// ---------------------------------------------------------------- following ----

let source = null;

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
      const lost = "Lost the connection to the presentation. Reload the page to follow again.";
      api(`/api/presentations/${enc(code)}`).then(() => setFollowStatus(lost)).catch((err) => {
        if (err.status === 404) followEnded();
        else setFollowStatus(lost);
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
  emit("remote-state", { state: {}, following: false, ended: true });
}

function onRemoteState(data) {
  if (!data || typeof data !== "object") return;
  cls.remote = data;
  const remote = data.state && typeof data.state === "object" ? data.state : {};
  if (cls.following) {
    setFollowStatus(followText());
    applyRemote(remote);
  } else {
    emit("remote-state", { state: remote, following: false, ended: false });
  }
}

async function applyRemote(remote) {
  emit("remote-state", { state: remote, following: true, ended: false });
  if (triple(remote.view)) await setView({ x: remote.view[0], y: remote.view[1], zoom: remote.view[2] });
  const seed = Number.isInteger(remote.seed) && remote.seed >= 0 ? remote.seed : state.seed;
  if (pair(remote.at)) {
    const cur = state.current;
    if (!cur || cur.x !== remote.at[0] || cur.y !== remote.at[1] || cur.seed !== seed) {
      actions.setSeed(seed, { decode: false });
      actions.decodeAt(remote.at[0], remote.at[1], { seed });
    }
  } else if (seed !== state.seed) {
    actions.setSeed(seed, { decode: false });
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

// Input on the map means "let me explore": stop following until "Follow again". Placing a quiz guess is not
// exploring; panning while guessing is.
on("user-input", ({ kind }) => {
  if (kind === "press" && mode() === "guess") return;
  pauseFollowing();
});

// ---------------------------------------------------------------- start ----

$("present-start-btn").addEventListener("click", startPresenting);
$("present-end-btn").addEventListener("click", endPresenting);
$("present-qr-btn").addEventListener("click", showQr);
$("follow-again-btn").addEventListener("click", followAgain);
frame.append($("follow-box")); // the follow status sits on the map, where a student looks

/** A follower's view of the presenter's state while following (else null). */
provide("presenting", () => cls.role === "presenter");
provide("followedState", () => (cls.role === "follower" && cls.following && cls.remote ? cls.remote.state || {} : null));

on("share-state", schedulePush);
on("decoded", schedulePush);
on("seed", schedulePush);

register({
  name: "classroom",
  mirror: cls,
  async start(query) {
    const presenting = state.canEdit ? await resumePresenting() : false;
    if (presenting) return;
    const code = query.get("follow") || readJson("session", followKey());
    if (typeof code === "string" && /^[a-z0-9]{4,32}$/.test(code)) follow(code);
  },
});
