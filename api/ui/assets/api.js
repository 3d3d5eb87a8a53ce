// The public API, with the signed-in token. A 401 anywhere means the token is no longer good:
// the dashboard forgets it and asks again (see main.js).

import { token } from "./auth.js";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const listeners = { unauthorized: () => {} };

/** Called on any 401 answer (main.js shows the sign-in form again). */
export function onUnauthorized(fn) {
  listeners.unauthorized = fn;
}

export function unauthorized() {
  listeners.unauthorized();
}

export function authHeaders(value = token()) {
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** A JSON request; resolves with the parsed answer (null for 204), rejects with ApiError. */
export async function request(method, path, { body, signal, bearer } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(bearer) };
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && bearer === undefined) unauthorized();
    throw new ApiError(response.status, data);
  }
  return data;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, body = {}, options) => request("POST", path, { ...options, body });
export const del = (path, options) => request("DELETE", path, options);

/** A query string from the defined values of `params` ("" when none). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const q = encodeURIComponent;

/** The log's head now: where a page's first reads and its feed meet (any token may ask). */
export async function head() {
  return (await get("/v1/projections")).head;
}
