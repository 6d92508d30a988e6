// Calls to the JSON API with the session's anti-CSRF token on every state-changing request;
// a lost session sends the browser to the login page.

let csrfToken = null;

// Set once the session is known (GET /api/me).
export function setCsrfToken(token) {
  csrfToken = token;
}

// method, path, optional JSON body → { status, ok, data } whatever the status, for callers
// that act on an error's body (409 slot_taken carries alternatives).
export async function request(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (csrfToken && method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { location.href = "/login"; throw new Error("unauthenticated"); }
  const data = await res.json().catch(() => ({}));
  return { status: res.status, ok: res.ok, data };
}

// method, path, optional JSON body → the parsed JSON reply; throws Error(message) on failure.
export async function api(method, path, body) {
  const res = await request(method, path, body);
  if (!res.ok) throw new Error(res.data.message || `HTTP ${res.status}`);
  return res.data;
}

// Like api(), but sends `text` as is (a CSV or JSON file the user picked).
export async function apiText(method, path, text, type) {
  const headers = { "Content-Type": type || "text/plain; charset=utf-8" };
  if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const res = await fetch(path, { method, headers, body: text });
  if (res.status === 401) { location.href = "/login"; throw new Error("unauthenticated"); }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || res.statusText);
  return data;
}
