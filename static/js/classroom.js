// Classroom mode on the map page (present / follow, guided tours, quiz).
// Builds on window.latentmap and the latentmap:* events that map.js emits.
