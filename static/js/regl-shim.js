// regl 2.1.1 ships only a UMD build: /static/vendor/regl-2.1.1.min.js (loaded as a classic <script> before any
// module) sets the global `createREGL`. The import map in map.html points the bare specifier "regl", which
// regl-scatterplot's ESM build imports, at this module.
export default globalThis.createREGL;
