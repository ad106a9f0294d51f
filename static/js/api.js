// Small fetch wrapper: every failure becomes an ApiError with a message a person can read.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: [{loc, msg, type}, ...]
    return detail.map((d) => (d && d.msg ? `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}` : String(d))).join("; ");
  }
  if (detail && typeof detail === "object") return JSON.stringify(detail);
  return "";
}

const STATUS_HINTS = {
  400: "The request was not accepted",
  403: "Not allowed: this needs the map's edit link",
  404: "Not found",
  409: "Conflict",
  413: "Too large",
  415: "Unsupported file type",
  422: "Invalid input",
  429: "Too many requests, wait a moment",
  500: "Server error",
  502: "Server unreachable",
  503: "Server busy or starting",
};

async function errorFrom(response) {
  let message = "";
  try {
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      message = detailText((await response.json()).detail);
    } else {
      const text = (await response.text()).trim();
      if (text && text.length < 300) message = text;
    }
  } catch (_) { /* keep the generic message */ }
  const hint = STATUS_HINTS[response.status] || `HTTP ${response.status}`;
  return new ApiError(message ? `${hint}: ${message}` : hint, response.status);
}

/**
 * Fetch `path` and return parsed JSON (or the Response for `raw`). Throws ApiError.
 * options: {method, json, body, editKey, raw, signal}
 */
export async function api(path, options = {}) {
  const headers = {};
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  if (options.editKey) headers["X-Edit-Key"] = options.editKey;
  let response;
  try {
    response = await fetch(path, { method: options.method || "GET", headers, body, signal: options.signal });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("Network error: the server could not be reached", 0);
  }
  if (!response.ok) throw await errorFrom(response);
  if (options.raw) return response;
  if (response.status === 204) return null;
  return response.json();
}
