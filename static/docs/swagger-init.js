// The API docs page (/docs): Swagger UI from the vendored bundle, on this origin only (no CDN, no inline script,
// no online validator).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
