// The dashboard's shared state and helpers: DOM building, the API client with its bearer token, signed
// media links and error display. Loaded first: every other script of the page uses these when called.
// Plain JS, no build step, no third-party code, no inline script (the page's CSP forbids it). Every URL is
// relative so the page works under any Serve route prefix. The token lives in localStorage and goes out
// only as a bearer header; media the browser loads itself (<img>, <video>) uses short-lived signed links
// from POST auth/links, never the token.
"use strict";

const TOKEN_KEY = "trtseg.token";
const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  cameras: new Map(),
  cameraList: [],
  who: { role: "anonymous", can_change: false, can_acknowledge: false },
  links: new Map(), // media path -> {url, until}
  view: "live",
  incidents: new Map(),
  selected: new Set(),
  incidentCursor: null,
  detail: null,
};

// -- helpers ------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (state.token) out.Authorization = "Bearer " + state.token;
  return out;
}

class ApiError extends Error {
  constructor(message, status, detail) { super(message); this.status = status; this.detail = detail; }
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : response.statusText;
    let message = `${method} ${path}: ${response.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
    if (response.status === 401) message = "The API wants a token: enter it at the top right.";
    if (response.status === 403) message = `${typeof detail === "string" ? detail : "forbidden"} (your token is a viewer's)`;
    throw new ApiError(message, response.status, detail);
  }
  return data;
}

// Signed links for media paths, cached until a minute before they expire.
async function signed(paths) {
  const now = Date.now() / 1000;
  const wanted = [...new Set(paths)].filter((p) => { const l = state.links.get(p); return !l || l.until - 60 < now; });
  for (let i = 0; i < wanted.length; i += 200) {
    const answer = await api("auth/links", { method: "POST", body: { paths: wanted.slice(i, i + 200) } });
    for (const [path, url] of Object.entries(answer.links)) state.links.set(path, { url, until: answer.expires_at });
  }
  const out = {};
  for (const p of paths) out[p] = state.links.get(p).url;
  return out;
}

async function link(path) { return (await signed([path]))[path]; }

function withQuery(url, extra) { return url + (url.includes("?") ? "&" : "?") + extra; }

async function guarded(task) {
  try { await task(); showError(""); } catch (error) { showError(error.message); }
}

function fmtTime(value) { return value ? new Date(value).toLocaleString() : "—"; }

function problems(detail) {
  // FastAPI's 422 detail: [{loc, msg}] or a string.
  if (typeof detail === "string") return [{ loc: [], msg: detail }];
  if (Array.isArray(detail)) return detail.map((d) => ({ loc: d.loc || [], msg: d.msg || JSON.stringify(d) }));
  return [{ loc: [], msg: JSON.stringify(detail) }];
}
