// What the page was opened with: ?window=N (seconds) is passed on to every stream it follows,
// so a short window can be watched (or tested) without changing the server. An access token,
// when the service requires one, is kept for this tab only (sessionStorage).

const TOKEN_KEY = "serverless-sse.token";

function windowFromQuery() {
  const raw = new URLSearchParams(location.search).get("window");
  if (raw === null) return null;
  const seconds = Number(raw);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
}

export const config = {
  windowSeconds: windowFromQuery(),

  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },

  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** Headers for a request to the service: JSON, and the token if there is one. */
export function requestHeaders(extra = {}) {
  const headers = { "Content-Type": "application/json", ...extra };
  if (config.token) headers.Authorization = `Bearer ${config.token}`;
  return headers;
}

/**
 * A stream's URL on this origin. EventSource cannot send headers, so the token goes in the
 * query (the service accepts ?access_token= unless it was told not to).
 */
export function streamUrl(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  if (config.windowSeconds !== null) url.searchParams.set("window", String(config.windowSeconds));
  if (config.token) url.searchParams.set("access_token", config.token);
  return url.toString();
}
