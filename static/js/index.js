import { api } from "./api.js";
import { el, formatDate, initLargeTextToggle, showError, toDate } from "./common.js";

initLargeTextToggle();

const list = document.getElementById("map-list");
const status = document.getElementById("maps-status");
const form = document.getElementById("create-form");
const titleInput = document.getElementById("create-title");
const submit = document.getElementById("create-submit");
const formError = document.getElementById("create-error");

/** Maps whose edit key this browser holds (when the server does not list its maps). */
async function mapsWithStoredKeys() {
  const ids = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const name = localStorage.key(i);
      if (name && name.startsWith("latentmap:key:")) ids.push(name.slice("latentmap:key:".length));
    }
  } catch (_) { /* private mode: none */ }
  const found = await Promise.all(ids.map((id) => api(`/api/maps/${encodeURIComponent(id)}`).catch(() => null)));
  return found.filter(Boolean);
}

async function fetchMaps() {
  try {
    return await api("/api/maps");
  } catch (err) {
    if (err.status !== 403) throw err;
    return mapsWithStoredKeys();  // listing is off here: show the maps this browser owns
  }
}

async function loadMaps() {
  try {
    const maps = await fetchMaps();
    list.replaceChildren();
    if (!maps.length) {
      status.textContent = "No maps yet. Create the first one above.";
      return;
    }
    status.textContent = `${maps.length} map${maps.length === 1 ? "" : "s"}`;
    maps.sort((a, b) => ((toDate(b.created_at) || 0) - (toDate(a.created_at) || 0)));
    for (const m of maps) {
      const count = typeof m.count === "number" ? `${m.count} point${m.count === 1 ? "" : "s"}` : "";
      let editable = false;
      try { editable = Boolean(localStorage.getItem(`latentmap:key:${m.id}`)); } catch (_) { /* private mode */ }
      list.append(
        el("li", { class: "map-list-item" },
          el("span", { class: "map-list-title" },
            el("a", { href: `/m/${encodeURIComponent(m.id)}`, class: "map-link", text: m.title || m.id }),
            editable ? el("span", { class: "badge", title: "This browser holds the edit key", text: "yours" }) : null),
          el("span", { class: "muted small", text: [count, m.space, formatDate(m.created_at)].filter(Boolean).join(" · ") }),
        ),
      );
    }
  } catch (err) {
    status.textContent = `Could not load the maps. ${err.message}`;
    status.classList.add("error");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const title = titleInput.value.trim();
  if (!title) {
    showError(formError, "Give the map a title.");
    titleInput.focus();
    return;
  }
  showError(formError, "");
  submit.disabled = true;
  submit.textContent = "Creating…";
  try {
    const created = await api("/api/maps", { method: "POST", json: { title } });
    try { localStorage.setItem(`latentmap:key:${created.id}`, created.edit_key); } catch (_) { /* map page stores it from the fragment too */ }
    window.location.assign(`/m/${encodeURIComponent(created.id)}#key=${encodeURIComponent(created.edit_key)}`);
  } catch (err) {
    showError(formError, `Could not create the map. ${err.message}`);
    submit.disabled = false;
    submit.textContent = "Create map";
  }
});

const importForm = document.getElementById("import-form");
const importFile = document.getElementById("import-file");
const importSubmit = document.getElementById("import-submit");
const importError = document.getElementById("import-error");

importForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = importFile.files && importFile.files[0];
  if (!file) {
    showError(importError, "Choose a map bundle (.zip) first.");
    importFile.focus();
    return;
  }
  showError(importError, "");
  importSubmit.disabled = true;
  importSubmit.textContent = "Importing…";
  try {
    const body = new FormData();
    body.append("file", file, file.name);
    const created = await api("/api/bundles", { method: "POST", body });
    try { localStorage.setItem(`latentmap:key:${created.id}`, created.edit_key); } catch (_) { /* the map page stores it from the fragment too */ }
    window.location.assign(`/m/${encodeURIComponent(created.id)}#key=${encodeURIComponent(created.edit_key)}`);
  } catch (err) {
    showError(importError, `Could not import the bundle. ${err.message}`);
    importSubmit.disabled = false;
    importSubmit.textContent = "Import bundle";
  }
});

async function loadHealth() {
  try {
    const health = await api("/api/health");
    document.getElementById("space-info").textContent = `Space: ${health.space} on ${health.device}`;
  } catch (err) {
    document.getElementById("space-info").textContent = `The server is not ready: ${err.message}`;
  }
}

loadMaps();
loadHealth();
