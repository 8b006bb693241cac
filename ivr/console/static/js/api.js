// The /v1 API as the console uses it: the token from localStorage on every request, errors as
// the API's problem details, and which operations this server has (from its OpenAPI document,
// so a page can say "not available" without requesting a route that is not there).

const TOKEN_KEY = "ivr.console.token";
export const WS_PROTOCOL = "ivr.v1";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set: (value) => localStorage.setItem(TOKEN_KEY, value.trim()),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, message, fields = [], code = null) {
    super(message);
    this.status = status;
    this.fields = fields;
    this.code = code; // the problem's stable code (e.g. "invalid_body"); null when unknown
  }

  // "message: field: problem; …" for a status line.
  describe() {
    const fields = this.fields.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message));
    return [this.message, ...fields].join(" — ");
  }
}

function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    u.searchParams.set(key, Array.isArray(value) ? value.join(",") : value);
  }
  return u;
}

async function send(method, path, { query, body } = {}) {
  const headers = { Authorization: `Bearer ${token.get()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  if (response.ok) return response;
  let error = { message: response.statusText, fields: [] };
  try {
    error = problem(await response.json()) || error;
  } catch {
    // not JSON (a proxy's page): keep the status text
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("ivr:unauthorized"));
  throw new ApiError(response.status, error.message, error.fields, error.code);
}

// An error body: RFC 9457 problem details (`detail`, `fields`, `code`), or the older
// {"error": {"message", "fields"}} shape a server of the previous release answers.
function problem(body) {
  if (typeof body?.detail === "string") {
    return { message: body.detail, fields: body.fields || [], code: body.code || null };
  }
  if (body?.error?.message !== undefined) {
    return { message: body.error.message, fields: body.error.fields || [], code: null };
  }
  return null;
}

export async function api(method, path, options) {
  return (await send(method, path, options)).json();
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body = {}) => api("POST", path, { body });
export const put = (path, body) => api("PUT", path, { body });

export async function blob(path) {
  return (await send("GET", path)).blob();
}

// --- what this server offers -------------------------------------------------------------

let documentPromise = null;

export function openapi() {
  documentPromise ??= fetch("/v1/openapi.json")
    .then((r) => (r.ok ? r.json() : { paths: {} }))
    .catch(() => ({ paths: {} }));
  return documentPromise;
}

export async function has(method, path) {
  const doc = await openapi();
  return Boolean(doc.paths?.[path]?.[method.toLowerCase()]);
}

// The enum of a request body's field, e.g. the callback outcomes, straight from the schema.
export async function bodyEnum(method, path, field) {
  const doc = await openapi();
  const content = doc.paths?.[path]?.[method.toLowerCase()]?.requestBody?.content;
  let schema = content?.["application/json"]?.schema;
  if (schema?.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema?.properties?.[field]?.enum || null;
}

// --- WebSockets ---------------------------------------------------------------------------

// Browsers cannot set an Authorization header on a WebSocket: the token goes as a
// subprotocol instead (not in the URL, so not in access logs).
// A token with characters a subprotocol cannot carry goes as ?token= (the server takes both).
const PROTOCOL_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function socket(path) {
  const u = new URL(path, location.origin);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const secret = token.get();
  if (PROTOCOL_CHARS.test(secret)) return new WebSocket(u, [WS_PROTOCOL, `bearer.${secret}`]);
  u.searchParams.set("token", secret);
  return new WebSocket(u, [WS_PROTOCOL]);
}
