// trtseg dashboard: plain JS, no build step, no third-party code. Every URL is relative so the page
// works under any Serve route prefix. The token lives in localStorage and goes out as a bearer header;
// <img> tags cannot send headers, so media URLs carry it as ?access_token= instead.
"use strict";

const TOKEN_KEY = "trtseg.token";
const EVENTS_EVERY_MS = 3000;
const CAMERAS_EVERY_MS = 5000;
const state = { token: localStorage.getItem(TOKEN_KEY) || "", cameras: new Map() };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function mediaUrl(path) {
  if (!state.token) return path;
  return path + (path.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(state.token);
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { headers });
  if (response.status === 401) throw new Error("The API wants a token: enter it at the top right.");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = JSON.stringify((await response.json()).detail); } catch (_) { /* not JSON */ }
    const error = new Error(`${path}: ${response.status} ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

const FIGURES = ["fps_in", "fps_out", "drops", "inferred", "latency_ms_mean", "reconnects"];

function figures(stats) {
  // Stats come as {decoder: {...}, output: {...}} (or flat): show the few figures people look at.
  const flat = {};
  for (const [key, value] of Object.entries(stats || {})) {
    if (value && typeof value === "object") {
      for (const [inner, number] of Object.entries(value)) if (typeof number === "number") flat[`${key}.${inner}`] = number;
    } else if (typeof value === "number") flat[key] = value;
  }
  const parts = [];
  const shown = new Set();
  for (const [key, value] of Object.entries(flat)) {
    const name = key.split(".").pop();
    if (!FIGURES.includes(name) || shown.has(name)) continue;
    shown.add(name);
    const label = name.replace("latency_ms_mean", "latency ms").replace(/_/g, " ");
    parts.push(`${label} ${Number.isInteger(value) ? value : value.toFixed(1)}`);
  }
  return parts.slice(0, 8).join(" · ");
}

function cameraCard(camera) {
  const img = el("img", { alt: `live view of ${camera.id}`, "data-camera": camera.id, src: mediaUrl(`cameras/${encodeURIComponent(camera.id)}/live.mjpg`) });
  const badge = el("span", { class: `badge ${camera.state}`, text: camera.state });
  const stats = el("div", { class: "figures", text: figures(camera.stats) });
  const title = (camera.config && camera.config.name) || camera.id;
  const site = (camera.config && camera.config.site) || "";
  const card = el("article", { class: "camera", id: `camera-${camera.id}` }, img,
    el("div", { class: "meta" }, el("span", { class: "name", text: title }), el("span", { class: "muted", text: site }), badge, stats));
  return { card, badge, stats, img };
}

async function refreshCameras() {
  const cameras = await api("cameras");
  const grid = document.getElementById("cameras");
  const seen = new Set();
  for (const camera of cameras) {
    seen.add(camera.id);
    let entry = state.cameras.get(camera.id);
    if (!entry) {
      entry = cameraCard(camera);
      state.cameras.set(camera.id, entry);
      grid.append(entry.card);
    }
    entry.badge.textContent = camera.state;
    entry.badge.className = `badge ${camera.state}`;
    entry.stats.textContent = figures(camera.stats);
  }
  for (const [id, entry] of state.cameras) {
    if (!seen.has(id)) { entry.img.src = ""; entry.card.remove(); state.cameras.delete(id); }
  }
  document.getElementById("no-cameras").hidden = cameras.length > 0;
  document.getElementById("camera-count").textContent = `(${cameras.length})`;
  const select = document.getElementById("f-camera");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "any" }), ...cameras.map((c) => el("option", { value: c.id, text: c.id })));
  select.value = chosen;
  document.getElementById("sites").replaceChildren(
    ...[...new Set(cameras.map((c) => (c.config && c.config.site) || "").filter(Boolean))].map((s) => el("option", { value: s })));
}

function filterQuery() {
  const params = new URLSearchParams({ limit: "25" });
  for (const [name, id] of [["site", "f-site"], ["camera_id", "f-camera"], ["class_name", "f-class"], ["status", "f-status"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(name, value);
  }
  return params.toString();
}

function openViewer(eventId) {
  document.getElementById("viewer-img").src = mediaUrl(`events/${eventId}/keyframe?kind=annotated`);
  document.getElementById("viewer").showModal();
}

async function refreshEvents() {
  const page = await api("events?" + filterQuery());
  const body = document.querySelector("#events tbody");
  const rows = page.items.map((event) => {
    const thumb = event.keyframe_annotated_path || event.keyframe_raw_path
      ? el("img", { class: "thumb", loading: "lazy", alt: `key frame of ${event.event_id}`,
        src: mediaUrl(`events/${event.event_id}/keyframe?kind=${event.keyframe_annotated_path ? "annotated" : "raw"}`) })
      : el("span", { class: "muted", text: "—" });
    if (thumb.tagName === "IMG") thumb.addEventListener("click", () => openViewer(event.event_id));
    return el("tr", { "data-event": event.event_id },
      el("td", {}, thumb),
      el("td", { text: new Date(event.started_at).toLocaleString() }),
      el("td", { text: event.site }), el("td", { text: event.camera_id }), el("td", { text: event.class_name }),
      el("td", { text: event.best_confidence.toFixed(2) }), el("td", { text: String(event.frames_seen) }),
      el("td", {}, el("span", { class: `badge ${event.status}`, text: event.status })));
  });
  body.replaceChildren(...rows);
  document.getElementById("no-events").hidden = rows.length > 0;
}

async function refreshCounts() {
  const counts = await api("events/counts?group_by=day,class_name");
  const rows = counts.rows.slice().sort((a, b) => (b.day || "").localeCompare(a.day || "") || b.count - a.count);
  document.querySelector("#counts tbody").replaceChildren(...rows.map((row) =>
    el("tr", {}, el("td", { text: row.day || "" }), el("td", { text: row.class_name || "" }), el("td", { text: String(row.count) }))));
  document.getElementById("classes").replaceChildren(
    ...[...new Set(rows.map((r) => r.class_name).filter(Boolean))].map((c) => el("option", { value: c })));
}

async function refreshReady() {
  const badge = document.getElementById("ready");
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  try {
    const response = await fetch("ready", { headers });
    const ready = response.ok && (await response.json()).ready;
    badge.textContent = ready ? "ready" : "not ready";
    badge.className = `badge ${ready ? "ready" : "not-ready"}`;
  } catch (_) {
    badge.textContent = "unreachable";
    badge.className = "badge not-ready";
  }
}

async function guarded(task) {
  try { await task(); showError(""); } catch (error) { showError(error.message); }
}

function resetLiveViews() {
  for (const entry of state.cameras.values()) entry.img.src = mediaUrl(`cameras/${encodeURIComponent(entry.img.dataset.camera)}/live.mjpg`);
}

function setup() {
  const input = document.getElementById("token");
  input.value = state.token;
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = input.value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    resetLiveViews();
    refreshAll();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    state.token = ""; input.value = ""; localStorage.removeItem(TOKEN_KEY); resetLiveViews(); refreshAll();
  });
  document.getElementById("filters").addEventListener("input", () => guarded(refreshEvents));
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
}

function refreshAll() {
  guarded(async () => { await refreshCameras(); await refreshEvents(); await refreshCounts(); });
  refreshReady();
}

setup();
refreshAll();
setInterval(() => guarded(refreshCameras), CAMERAS_EVERY_MS);
setInterval(() => { if (document.getElementById("auto").checked) guarded(async () => { await refreshEvents(); await refreshCounts(); }); }, EVENTS_EVERY_MS);
setInterval(refreshReady, 10000);
