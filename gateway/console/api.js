// The console's client of the Strata HTTP API (docs/api.md). The token is
// kept in sessionStorage (this tab only, gone when it closes) and sent as a
// bearer header; it never goes into a URL.

const tokenKey = "strata.console.token";

export function getToken() { return sessionStorage.getItem(tokenKey) || ""; }
export function setToken(t) { t ? sessionStorage.setItem(tokenKey, t) : sessionStorage.removeItem(tokenKey); }

export class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers(extra) {
  const h = Object.assign({ "Accept": "application/json" }, extra || {});
  const t = getToken();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function fail(res) {
  let code = "http_" + res.status, message = res.statusText;
  try {
    const b = await res.json();
    if (b && b.error) { code = b.error.code; message = b.error.message; }
  } catch (_) { /* not JSON */ }
  throw new APIError(res.status, code, message);
}

export async function get(path, signal) {
  const res = await fetch(path, { headers: headers(), signal, credentials: "omit", cache: "no-store" });
  if (!res.ok) await fail(res);
  return res.json();
}

export async function send(method, path, body) {
  const res = await fetch(path, {
    method, credentials: "omit",
    headers: headers({ "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) await fail(res);
  return res.json();
}

// lines reads an NDJSON response (history, follow, tail), calling fn with
// each value, until the stream ends or signal aborts.
export async function lines(path, signal, fn) {
  const res = await fetch(path, { headers: headers({ "Accept": "application/x-ndjson" }), signal, credentials: "omit", cache: "no-store" });
  if (!res.ok) await fail(res);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) fn(JSON.parse(line));
    }
  }
  if (buf.trim()) fn(JSON.parse(buf));
}

// objectPath is the API path of an object, its name escaped segment-wise.
export function objectPath(cls, name) {
  return "/v1/objects/" + encodeURIComponent(cls) + "/" + encodeURIComponent(name);
}
