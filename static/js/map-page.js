// The map page: the core (state, events, pointer), every panel registering with it, then the map itself.
// Panels register in this order; it is the order they start in and add their part to share links.

import "./core/pointer.js";
import "./panels/decode.js";
import "./panels/selected.js";
import "./panels/share.js";
import "./panels/edit.js";
import "./panels/explore.js";
import "./panels/columns.js";
import "./panels/variants.js";
import "./render/terrain_control.js";
import "./panels/present.js";
import "./panels/tours.js";
import "./panels/quiz.js";
import "./panels/side-panel.js";
import { boot } from "./map.js";

boot();
