// The selected item (a click on a point, a neighbour chosen in a list): its label and thumbnail, image-to-image
// variations of it, and (for the owner) deleting it.

import { api } from "../api.js";
import { el, showError, toast } from "../common.js";
import { KIND_NAMES, MAX_SEED, PENDING_TEXT } from "../core/constants.js";
import { actions, emit, provide, register, state } from "../core/page.js";
import { hasThumbnail, thumbnailUrl } from "../core/items.js";

const MAX_VARIATIONS = 6;
const $ = (id) => document.getElementById(id);
let variationCount = 0;

function syncDeleteButton() {
  $("delete-btn").hidden = !(state.canEdit && state.selected && state.selected.id);
}

function select(item) {
  state.selected = item || null;
  emit("selected", { item: state.selected });
  const section = $("selected-section");
  syncDeleteButton();
  if (!item) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  if (item.label === null || item.id === null) {
    $("selected-label").textContent = "Loading…";
    $("vary-controls").hidden = true;
    $("selected-thumb").hidden = true;
    actions.itemDetails(item).then(() => {
      if (state.selected === item) select(item);
    }).catch((err) => {
      if (state.selected === item) $("selected-label").textContent = `Could not load this item. ${err.message}`;
    });
    return;
  }
  $("selected-label").textContent = `${KIND_NAMES[item.kind] || item.kind}: ${item.label}`
    + (item.pending ? ` (${PENDING_TEXT})` : "");
  const canVary = hasThumbnail(item) && !item.pending;
  if ($("vary-controls").dataset.itemId !== item.id) $("variations").replaceChildren();
  $("vary-controls").dataset.itemId = item.id;
  $("vary-controls").hidden = !canVary;
  const thumb = $("selected-thumb");
  if (hasThumbnail(item)) {
    thumb.src = thumbnailUrl(item);
    thumb.alt = item.label;
    thumb.hidden = false;
  } else {
    thumb.hidden = true;
    thumb.removeAttribute("src");
  }
}

/** Image-to-image from the selected item: each click a new seed, shown newest first beside its download. */
async function varySelected() {
  const item = state.selected;
  if (!item || !item.id) return;
  const strength = Number($("vary-strength").value);
  variationCount += 1;
  const seed = (state.seed + variationCount) % (MAX_SEED + 1);
  const button = $("vary-btn");
  showError($("vary-error"), "");
  button.disabled = true;
  try {
    const response = await api(`/api/maps/${encodeURIComponent(state.mapId)}/items/${encodeURIComponent(item.id)}/vary`, {
      method: "POST", json: { seed, strength }, raw: true,
    });
    if (state.selected !== item) return;
    const url = URL.createObjectURL(await response.blob());
    const text = `Variation of “${item.label}”, change ${strength.toFixed(2)}, seed ${seed}`;
    const link = el("a", { href: url, download: `latentmap-variation-${item.id}-seed${seed}.png`, title: `${text}: download` },
      el("img", { src: url, alt: text }));
    const list = $("variations");
    list.prepend(el("li", { class: "variation", "data-seed": String(seed) }, link));
    while (list.children.length > MAX_VARIATIONS) list.lastElementChild.remove();
  } catch (err) {
    showError($("vary-error"), `Could not vary this image. ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function deleteSelected() {
  const item = state.selected;
  if (!item || !state.canEdit) return;
  $("delete-btn").disabled = true;
  try {
    await api(`/api/maps/${encodeURIComponent(state.mapId)}/items/${encodeURIComponent(item.id)}`, {
      method: "DELETE", editKey: state.editKey,
    });
    select(null);
    await actions.removeItem(item);
    toast("Item deleted.");
  } catch (err) {
    toast(`Could not delete the item. ${err.message}`, "error");
  } finally {
    $("delete-btn").disabled = false;
  }
}

$("vary-btn").addEventListener("click", varySelected);
$("vary-strength").addEventListener("input", (event) => {
  $("vary-strength-value").textContent = Number(event.target.value).toFixed(2);
});
$("delete-btn").addEventListener("click", deleteSelected);

provide("select", select);
register({ name: "selected" });
