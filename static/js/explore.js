// Exploration tools on the map page (paths, neighbours, search, colour by, clusters, lasso, bundles).
// Builds on window.latentmap and the latentmap:* events that map.js emits.
