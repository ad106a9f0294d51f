// The share bar: the read-only link to this view (copied on "Share"), the owner's edit link, and "Fit view".

import { copyText, toast } from "../common.js";
import { actions, emit, register, shareLink, shareStateChanged, state } from "../core/page.js";

const $ = (id) => document.getElementById(id);

function editLink() {
  return `${shareLink()}#key=${encodeURIComponent(state.editKey)}`;
}

$("share-btn").addEventListener("click", async () => {
  shareStateChanged();
  const link = shareLink();
  $("share-url").value = link;
  const ok = await copyText(link);
  toast(ok ? "View-only link copied." : "Copy the link from the field below.");
  if (!ok) $("share-url").select();
});
$("copy-edit-btn").addEventListener("click", async () => {
  if (!state.canEdit) return;
  const ok = await copyText(editLink());
  toast(ok ? "Edit link copied. Anyone with it can change this map." : "Could not copy the edit link.", ok ? "info" : "error");
});
$("share-url").addEventListener("focus", (event) => event.target.select());
$("reset-view").addEventListener("click", () => {
  emit("user-input", { kind: "fit" });
  actions.fitView();
});

register({ name: "share" });
