// The owner's controls: add prompts, upload (or drop) images, re-project the map. Visitors never see them.

import { api } from "../api.js";
import { showError, toast } from "../common.js";
import { actions, register, renderer, state } from "../core/page.js";

const UPLOAD_CHUNK = 8;
const PROMPT_CHUNK = 50;
const $ = (id) => document.getElementById(id);
const root = $("map-root");
const frame = $("map-frame");

function setBusy(text) {
  $("add-progress").hidden = !text;
  $("add-progress-text").textContent = text || "";
  for (const id of ["prompt-submit", "upload-submit", "refit-btn"]) $(id).disabled = Boolean(text);
  root.dataset.adding = text ? "1" : "0";
}

async function addPrompts(text) {
  const prompts = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  if (!prompts.length) {
    showError($("edit-error"), "Write at least one prompt (one per line).");
    return;
  }
  showError($("edit-error"), "");
  let done = 0;
  try {
    for (let i = 0; i < prompts.length; i += PROMPT_CHUNK) {
      const chunk = prompts.slice(i, i + PROMPT_CHUNK);
      setBusy(prompts.length > PROMPT_CHUNK
        ? `Placing prompts ${done + 1}–${done + chunk.length} of ${prompts.length}…`
        : `Placing ${prompts.length} prompt${prompts.length === 1 ? "" : "s"}…`);
      const result = await api(`/api/maps/${encodeURIComponent(state.mapId)}/prompts`, {
        method: "POST", json: { prompts: chunk }, editKey: state.editKey,
      });
      await actions.addItems(result.items || []);
      done += chunk.length;
    }
    $("prompt-input").value = "";
    toast(`Added ${done} prompt${done === 1 ? "" : "s"}.`);
  } catch (err) {
    // Keep the lines that did not make it, so nothing typed is lost.
    $("prompt-input").value = prompts.slice(done).join("\n");
    showError($("edit-error"), `Could not add ${done ? `${prompts.length - done} of the prompts` : "the prompts"}. ${err.message}`);
  } finally {
    setBusy("");
    if (done) actions.refreshMeta();
  }
}

async function uploadFiles(fileList) {
  const files = [...fileList].filter((f) => f && (f.type.startsWith("image/") || /\.(png|jpe?g|gif|webp|bmp)$/i.test(f.name)));
  const skipped = fileList.length - files.length;
  if (!files.length) {
    showError($("edit-error"), skipped ? "Those files are not images." : "Choose one or more images first.");
    return;
  }
  showError($("edit-error"), "");
  let done = 0;
  const errors = [];
  for (let i = 0; i < files.length; i += UPLOAD_CHUNK) {
    const chunk = files.slice(i, i + UPLOAD_CHUNK);
    setBusy(`Adding images ${done + 1}–${done + chunk.length} of ${files.length}…`);
    const form = new FormData();
    for (const file of chunk) form.append("files", file, file.name);
    try {
      const result = await api(`/api/maps/${encodeURIComponent(state.mapId)}/images`, {
        method: "POST", body: form, editKey: state.editKey,
      });
      await actions.addItems(result.items || []);
      done += chunk.length;
    } catch (err) {
      errors.push(err.message);
      if (err.status === 403) break;
    }
  }
  setBusy("");
  if (done) actions.refreshMeta();
  $("file-input").value = "";
  if (errors.length) {
    showError($("edit-error"), `Could not add ${files.length - done} of ${files.length} image${files.length === 1 ? "" : "s"}. ${errors.join(" ")}`);
  }
  if (done) toast(`Added ${done} image${done === 1 ? "" : "s"}.`);
  if (skipped) toast(`Skipped ${skipped} file${skipped === 1 ? "" : "s"} that ${skipped === 1 ? "is" : "are"} not an image.`, "error");
}

$("prompt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  addPrompts($("prompt-input").value);
});
$("prompt-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    addPrompts($("prompt-input").value);
  }
});
$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  uploadFiles($("file-input").files);
});

// ---------------------------------------------------------------- drag & drop onto the map ----

let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && [...(event.dataTransfer.types || [])].includes("Files");
}
frame.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  const overlay = $("drop-overlay");
  overlay.textContent = state.canEdit ? "Drop images to add them to the map" : "Only the map's owner can add images";
  overlay.classList.toggle("is-refused", !state.canEdit);
  overlay.hidden = false;
});
frame.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = state.canEdit ? "copy" : "none";
});
frame.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $("drop-overlay").hidden = true;
});
frame.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  if (!state.canEdit) {
    toast("Only the map's owner can add images (open the edit link).", "error");
    return;
  }
  uploadFiles(event.dataTransfer.files);
});

// ---------------------------------------------------------------- re-project ----

$("refit-btn").addEventListener("click", () => {
  const dialog = $("refit-dialog");
  dialog.returnValue = "";
  dialog.showModal();
});
$("refit-dialog").addEventListener("close", async () => {
  if ($("refit-dialog").returnValue !== "confirm") return;
  setBusy("Re-projecting all points…");
  try {
    await api(`/api/maps/${encodeURIComponent(state.mapId)}/refit`, { method: "POST", editKey: state.editKey });
    await actions.refreshMeta({ reload: "always" });
    await renderer().fitView();
    toast("Map re-projected.");
  } catch (err) {
    showError($("edit-error"), `Could not re-project the map. ${err.message}`);
  } finally {
    setBusy("");
  }
});

register({ name: "edit" });
