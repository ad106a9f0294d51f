// The side panel's tabs (Decode · Explore · Decoders · Teach) below the decoded image, which stays pinned in view
// beside the map. ARIA tabs: arrow keys move between them, Home / End to the ends.

import { provide, register } from "../core/page.js";

const TABS = ["decode", "explore", "decoders", "teach"];
const tabs = () => TABS.map((name) => document.getElementById(`tab-${name}`)).filter((tab) => tab && !tab.hidden);
let current = "decode";

function showTab(name, { focus = false } = {}) {
  const tab = document.getElementById(`tab-${name}`);
  if (!tab || tab.hidden) return;
  current = name;
  for (const other of TABS) {
    const button = document.getElementById(`tab-${other}`);
    const panel = document.getElementById(`tabpanel-${other}`);
    if (!button || !panel) continue;
    const selected = other === name;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    panel.hidden = !selected;
  }
  document.getElementById("map-root").dataset.tab = name;
  if (focus) tab.focus();
}

/** Show or hide a whole tab (the Decoders tab exists only where the space has decoder variants). */
function setTabAvailable(name, available) {
  const tab = document.getElementById(`tab-${name}`);
  if (!tab) return;
  tab.hidden = !available;
  if (!available && current === name) showTab("decode");
}

for (const name of TABS) {
  const tab = document.getElementById(`tab-${name}`);
  if (tab) tab.addEventListener("click", () => showTab(name));
}

document.getElementById("panel-tabs").addEventListener("keydown", (event) => {
  const list = tabs();
  const i = list.findIndex((tab) => tab.id === `tab-${current}`);
  let next = null;
  if (event.key === "ArrowRight") next = list[(i + 1) % list.length];
  else if (event.key === "ArrowLeft") next = list[(i - 1 + list.length) % list.length];
  else if (event.key === "Home") next = list[0];
  else if (event.key === "End") next = list[list.length - 1];
  if (!next) return;
  event.preventDefault();
  showTab(next.id.replace(/^tab-/, ""), { focus: true });
});

provide("showTab", showTab);
provide("setTabAvailable", setTabAvailable);
register({ name: "tabs" });
