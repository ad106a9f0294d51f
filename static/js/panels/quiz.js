// The quiz: the owner starts a round (an image decoded at a hidden spot), players place a guess on the map in the
// pointer's guess mode and confirm it, the owner reveals the answer and the ranking. Followers of a presentation
// get the round with the presenter's state.

import { api } from "../api.js";
import { el, toast } from "../common.js";
import { actions, on, register, screenToData, shareStateChanged, state } from "../core/page.js";
import { handle, mode, setMode } from "../core/pointer.js";
import { clearMarkers, enc, localUrl, marker, placeMarker, presenterApi, readJson, writeJson } from "./classroom-shared.js";

const QUIZ_POLL_MS = 2000;
const PLAYER_KEY = "latentmap:player";
const $ = (id) => document.getElementById(id);
const root = $("map-root");
const mapId = root.dataset.mapId;
const quizKey = () => `latentmap:quiz:${mapId}`;

const quiz = {
  round: null, // {id, image_url, revealed}
  presenterKey: null, // the owner's key for this round (never shown)
  guess: null, // [x, y] placed on the map
  guessSent: false,
  result: null, // revealed round: {answer, ranking, ...}
};
let quizPoll = null;

function playerName() {
  return $("quiz-name").value.trim();
}

function canGuess() {
  return Boolean(quiz.round) && !quiz.round.revealed && !quiz.presenterKey;
}

function setGuessMode(on) {
  if (on && canGuess()) setMode("guess");
  else if (mode() === "guess") setMode("decode");
  renderGuessButton();
}

function renderGuessButton() {
  const guessing = mode() === "guess";
  root.classList.toggle("is-guessing", guessing);
  $("quiz-mode-btn").setAttribute("aria-pressed", String(guessing));
  $("quiz-mode-btn").textContent = guessing ? "Back to decoding" : "Place a guess on the map";
}

function showQuiz() {
  const q = quiz.round;
  $("quiz-idle").hidden = Boolean(q) || !state.canEdit;
  $("quiz-heading").hidden = !q && !state.canEdit;
  $("quiz-box").hidden = !q;
  if (!q) return;
  $("quiz-box").dataset.roundId = q.id;
  $("quiz-box").dataset.revealed = q.revealed ? "1" : "0";
  if ($("quiz-img").getAttribute("src") !== q.image_url) $("quiz-img").src = q.image_url;
  const presenter = Boolean(quiz.presenterKey);
  $("quiz-player").hidden = presenter || q.revealed;
  $("quiz-presenter").hidden = !presenter || q.revealed;
  $("quiz-prompt").textContent = q.revealed ? "The answer is on the map (★)." : "Where on the map was this image decoded?";
}

function newRound(q, presenterKey = null) {
  quiz.round = { id: q.id, image_url: q.image_url, revealed: Boolean(q.revealed) };
  quiz.presenterKey = presenterKey;
  quiz.guess = null;
  quiz.guessSent = false;
  quiz.result = null;
  clearMarkers();
  $("quiz-ranking").hidden = true;
  $("quiz-ranking").replaceChildren();
  $("quiz-confirm-btn").disabled = true;
  const presenting = actions.presenting();
  $("quiz-status").textContent = !presenterKey ? "Click the map where you think this image came from, then confirm."
    : presenting ? "Round started. Everyone following sees the image."
      : "Round started. Present to a class so that followers see it and can guess.";
  showQuiz();
  setGuessMode(!presenterKey);
  clearInterval(quizPoll);
  if (presenterKey) {
    writeJson("session", quizKey(), { ...quiz.round, presenter_key: presenterKey });
    quizPoll = setInterval(refreshQuizCount, QUIZ_POLL_MS);
    refreshQuizCount();
  }
}

async function refreshQuizCount() {
  const q = quiz.round;
  if (!q || q.revealed) { clearInterval(quizPoll); return; }
  try {
    const status = await api(`/api/quiz/${enc(q.id)}`);
    if (quiz.round !== q) return;
    $("quiz-players").textContent = `${status.players} guess${status.players === 1 ? "" : "es"}`;
    $("quiz-players").dataset.count = String(status.players);
  } catch (_) { /* try again on the next tick */ }
}

async function startQuiz() {
  const button = $("quiz-start-btn");
  button.disabled = true;
  try {
    const r = await api(`/api/maps/${enc(mapId)}/quiz`, { method: "POST", json: {}, editKey: state.editKey });
    newRound(r, r.presenter_key);
    button.textContent = "Start a new round";
    shareStateChanged();
  } catch (err) {
    toast(`Could not start a quiz round. ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function handleRemoteQuiz(q) {
  if (!q || typeof q !== "object" || typeof q.id !== "string" || !localUrl(q.image_url)) return;
  if (!quiz.round || quiz.round.id !== q.id) {
    newRound({ id: q.id, image_url: q.image_url, revealed: false });
    if (!q.revealed) toast("A quiz round started: where did this image come from?");
    actions.showTab("teach");
    $("quiz-box").scrollIntoView({ block: "nearest" });
  }
  if (q.revealed && !quiz.result) fetchResult(q.id);
}

async function fetchResult(id) {
  try {
    const result = await api(`/api/quiz/${enc(id)}`);
    if (result.revealed && quiz.round && quiz.round.id === id) showResult(result);
  } catch (err) {
    $("quiz-status").textContent = `Could not load the results. ${err.message}`;
  }
}

function placeGuess(x, y) {
  if (mode() !== "guess") return;
  quiz.guess = [Number(x.toFixed(6)), Number(y.toFixed(6))];
  placeMarker(marker("quiz-guess-marker", "cr-guess is-mine", playerName() || "Your guess"), quiz.guess[0], quiz.guess[1]);
  $("quiz-confirm-btn").disabled = false;
  $("quiz-status").textContent = quiz.guessSent
    ? "Guess moved. Confirm again to send the new spot."
    : "Guess placed. Confirm it, or click elsewhere to move it.";
}

async function confirmGuess() {
  const q = quiz.round;
  if (!q || !quiz.guess) return;
  const name = playerName();
  if (!name) {
    $("quiz-status").textContent = "Type your name first.";
    $("quiz-name").focus();
    return;
  }
  try { window.localStorage.setItem(PLAYER_KEY, name); } catch (_) { /* private mode */ }
  $("quiz-confirm-btn").disabled = true;
  try {
    await api(`/api/quiz/${enc(q.id)}/guess`, { method: "POST", json: { player: name, x: quiz.guess[0], y: quiz.guess[1] } });
    quiz.guessSent = true;
    marker("quiz-guess-marker", "cr-guess is-mine", name);
    $("quiz-status").textContent = `Guess sent as ${name}. You can move it until the answer is revealed.`;
    $("quiz-status").dataset.sent = "1";
  } catch (err) {
    $("quiz-status").textContent = err.status === 403 ? "Guesses are closed: the answer was revealed." : `Could not send the guess. ${err.message}`;
    $("quiz-confirm-btn").disabled = false;
  }
}

async function reveal() {
  const q = quiz.round;
  if (!q || !quiz.presenterKey) return;
  $("quiz-reveal-btn").disabled = true;
  try {
    const result = await presenterApi(`/api/quiz/${enc(q.id)}/reveal`, "POST", quiz.presenterKey);
    showResult(result);
    writeJson("session", quizKey(), null);
    // Show the hidden image's spot on the map (and, when presenting, on every follower's).
    const a = result.answer;
    actions.setSeed(a.seed, { decode: false });
    actions.decodeAt(a.x, a.y, { seed: a.seed });
    shareStateChanged();
  } catch (err) {
    toast(`Could not reveal the answer. ${err.message}`, "error");
  } finally {
    $("quiz-reveal-btn").disabled = false;
  }
}

function showResult(result) {
  quiz.result = result;
  quiz.round.revealed = true;
  clearInterval(quizPoll);
  setGuessMode(false);
  showQuiz();
  clearMarkers();
  const mine = quiz.guessSent ? playerName() : null;
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
    shareStateChanged();
  }).catch(() => writeJson("session", quizKey(), null));
}

// Guess mode: a click on the map (or Enter / Space on the keyboard cursor) places the guess; nothing decodes.
handle("guess", {
  click: ({ x, y }) => placeGuess(x, y),
  key(event, cursor) {
    if (event.key !== "Enter" && event.key !== " ") return false;
    const [x, y] = screenToData(cursor[0], cursor[1]);
    placeGuess(x, y);
    return true;
  },
  leave: renderGuessButton,
});
on("mode", renderGuessButton);
on("remote-state", ({ state: remote }) => handleRemoteQuiz(remote.quiz));

$("quiz-start-btn").addEventListener("click", startQuiz);
$("quiz-reveal-btn").addEventListener("click", reveal);
$("quiz-confirm-btn").addEventListener("click", confirmGuess);
$("quiz-mode-btn").addEventListener("click", () => setGuessMode(mode() !== "guess"));

register({
  name: "quiz",
  mirror: quiz,
  start() {
    try { $("quiz-name").value = window.localStorage.getItem(PLAYER_KEY) || ""; } catch (_) { /* private mode */ }
    showQuiz();
    if (state.canEdit) resumeQuiz();
  },
  presentState() {
    const q = quiz.round;
    return q ? { quiz: { id: q.id, image_url: q.image_url, revealed: Boolean(q.revealed) } } : {};
  },
});
