// trtseg dashboard: plain JS, no build step, no third-party code, no inline script (the page's CSP forbids it).
// Every URL is relative so the page works under any Serve route prefix. The token lives in localStorage and
// goes out only as a bearer header; media the browser loads itself (<img>, <video>) uses short-lived signed
// links from POST auth/links, never the token.
"use strict";

const TOKEN_KEY = "trtseg.token";
const EVENTS_EVERY_MS = 3000;
const INCIDENTS_EVERY_MS = 3000;
const CAMERAS_EVERY_MS = 5000;
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

// -- roles --------------------------------------------------------------------------------------

async function refreshRole() {
  try {
    state.who = await api("auth/whoami");
  } catch (error) {
    state.who = { role: "anonymous", can_change: false, can_acknowledge: false };
    if (error.status !== 401) throw error;
  }
  const badge = $("role");
  badge.textContent = `role: ${state.who.role}`;
  badge.className = `badge role-${state.who.role}`;
  document.body.classList.toggle("can-change", !!state.who.can_change);
  document.body.classList.toggle("can-ack", !!state.who.can_acknowledge);
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = !state.who.can_change;
  for (const node of document.querySelectorAll(".ack-only")) node.hidden = !state.who.can_acknowledge;
  for (const node of document.querySelectorAll(".viewer-only")) node.hidden = state.who.can_change;
  for (const node of document.querySelectorAll("#z-rule-form input, #z-rule-form select, #z-tracker-form input, #z-name")) node.disabled = !state.who.can_change;
}

// -- navigation ---------------------------------------------------------------------------------

const VIEWS = ["live", "incidents", "zones", "events"];

function showView() {
  const wanted = (location.hash || "#live").slice(1);
  state.view = VIEWS.includes(wanted) ? wanted : "live";
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== state.view;
    const nav = $(`nav-${name}`);
    if (name === state.view) nav.setAttribute("aria-current", "page"); else nav.removeAttribute("aria-current");
  }
  if (state.view === "incidents") guarded(refreshIncidents);
  if (state.view === "zones") guarded(loadEditor);
  if (state.view === "events") guarded(async () => { await refreshEvents(); await refreshCounts(); });
}

// -- live grid and camera management ------------------------------------------------------------

const FIGURES = ["fps_in", "fps_out", "drops", "inferred", "latency_ms_mean", "reconnects"];

function figures(stats) {
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
  const img = el("img", { alt: `live view of ${camera.id}`, "data-camera": camera.id });
  const badge = el("span", { class: `badge ${camera.state}`, text: camera.state });
  const stats = el("div", { class: "figures" });
  const error = el("div", { class: "camera-error", role: "status" });
  const name = el("span", { class: "name" });
  const site = el("span", { class: "muted" });
  const toggle = el("button", { type: "button", class: "admin-only", "data-action": "toggle" });
  const actions = el("div", { class: "row actions" },
    el("button", { type: "button", class: "admin-only", "data-action": "edit", text: "Edit" }), toggle,
    el("button", { type: "button", "data-action": "zones", text: "Zones" }),
    el("button", { type: "button", class: "admin-only", "data-action": "remove", text: "Remove" }));
  for (const node of actions.querySelectorAll(".admin-only")) node.hidden = !state.who.can_change;
  actions.addEventListener("click", (e) => {
    const action = e.target.dataset && e.target.dataset.action;
    if (action) cameraAction(camera.id, action);
  });
  const card = el("article", { class: "camera", id: `camera-${camera.id}` }, img,
    el("div", { class: "meta" }, name, site, badge, stats, error, actions));
  return { card, badge, stats, img, error, name, site, toggle, live: false };
}

async function startLive(id, entry) {
  if (entry.live) return;
  entry.live = true;
  try { entry.img.src = await link(`cameras/${enc(id)}/live.mjpg`); } catch (error) { entry.live = false; throw error; }
}

async function refreshCameras() {
  const cameras = await api("cameras");
  state.cameraList = cameras;
  const grid = $("cameras");
  const seen = new Set();
  for (const camera of cameras) {
    seen.add(camera.id);
    let entry = state.cameras.get(camera.id);
    if (!entry) {
      entry = cameraCard(camera);
      state.cameras.set(camera.id, entry);
      grid.append(entry.card);
    }
    const config = camera.config || {};
    entry.name.textContent = config.name || camera.id;
    entry.site.textContent = config.site || "";
    entry.badge.textContent = camera.state;
    entry.badge.className = `badge ${camera.state}`;
    entry.stats.textContent = figures(camera.stats);
    entry.error.textContent = camera.error ? `last error: ${camera.error}` : "";
    entry.toggle.textContent = config.enabled === false ? "Enable" : "Disable";
    entry.card.classList.toggle("disabled", config.enabled === false);
    if (config.enabled !== false && camera.state !== "disabled") await startLive(camera.id, entry);
  }
  for (const [id, entry] of state.cameras) {
    if (!seen.has(id)) { entry.img.src = ""; entry.card.remove(); state.cameras.delete(id); }
  }
  $("no-cameras").hidden = cameras.length > 0;
  $("camera-count").textContent = `(${cameras.length})`;
  for (const id of ["f-camera", "i-camera"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "any" }), ...cameras.map((c) => el("option", { value: c.id, text: c.id })));
    select.value = chosen;
  }
  const zSelect = $("z-camera");
  const zChosen = zSelect.value;
  zSelect.replaceChildren(...cameras.map((c) => el("option", { value: c.id, text: c.id })));
  if (zChosen && cameras.some((c) => c.id === zChosen)) zSelect.value = zChosen;
  $("sites").replaceChildren(
    ...[...new Set(cameras.map((c) => (c.config && c.config.site) || "").filter(Boolean))].map((s) => el("option", { value: s })));
}

function resetLiveViews() {
  state.links.clear();
  for (const entry of state.cameras.values()) { entry.live = false; entry.img.removeAttribute("src"); }
}

async function cameraAction(id, action) {
  const camera = state.cameraList.find((c) => c.id === id);
  if (action === "zones") { $("z-camera").value = id; location.hash = "#zones"; return; }
  if (action === "edit") { openCameraForm(camera); return; }
  await guarded(async () => {
    if (action === "toggle") {
      const enabled = camera && camera.config && camera.config.enabled === false;
      await api(`cameras/${enc(id)}`, { method: "PATCH", body: { enabled } });
    } else if (action === "remove") {
      if (!confirm(`Remove camera ${id}?`)) return;
      await api(`cameras/${enc(id)}`, { method: "DELETE" });
    }
    await refreshCameras();
  });
}

const CAMERA_FIELDS = ["id", "name", "site", "source", "classes", "inference_fps", "push"];

function openCameraForm(camera) {
  const form = $("camera-form");
  form.reset();
  form.dataset.editing = camera ? camera.id : "";
  clearFieldErrors(form);
  $("camera-form-title").textContent = camera ? `Edit camera ${camera.id}` : "Add a camera";
  const config = (camera && camera.config) || {};
  form.elements.id.value = config.id || (camera && camera.id) || "";
  form.elements.id.readOnly = !!camera;
  form.elements.name.value = config.name || "";
  form.elements.site.value = config.site || "";
  form.elements.source.value = config.source || "";
  form.elements.classes.value = (config.classes || []).join(", ");
  form.elements.inference_fps.value = config.inference_fps || "";
  form.elements.push.value = config.push || "";
  form.elements.enabled.checked = config.enabled !== false;
  $("camera-dialog").showModal();
  (camera ? form.elements.source : form.elements.id).focus();
}

function clearFieldErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) { node.textContent = ""; node.hidden = true; }
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showFieldErrors(form, detail) {
  for (const problem of problems(detail)) {
    const loc = problem.loc.filter((p) => p !== "body");
    let field = loc.length ? String(loc[0]) : "_form";
    let box = form.querySelector(`.field-error[data-field="${CSS.escape(field)}"]`);
    if (!box) { box = form.querySelector('.field-error[data-field="_form"]'); field = "_form"; }
    box.textContent = (box.textContent ? box.textContent + " " : "") + (field === "_form" && loc.length ? `${loc.join(".")}: ` : "") + problem.msg;
    box.hidden = false;
    const input = form.elements[field];
    if (input && input.setAttribute) { input.setAttribute("aria-invalid", "true"); }
  }
  const first = form.querySelector("[aria-invalid]");
  if (first) first.focus();
}

async function submitCameraForm(event) {
  event.preventDefault();
  const form = $("camera-form");
  clearFieldErrors(form);
  const editing = form.dataset.editing;
  const body = {};
  for (const name of CAMERA_FIELDS) {
    const value = form.elements[name].value.trim();
    if (name === "classes") { if (value) body.classes = value.split(",").map((s) => s.trim()).filter(Boolean); }
    else if (name === "inference_fps") { if (value) body.inference_fps = Number(value); }
    else if (value) body[name] = value;
  }
  body.enabled = form.elements.enabled.checked;
  try {
    if (editing) {
      delete body.id;
      await api(`cameras/${enc(editing)}`, { method: "PATCH", body });
    } else {
      await api("cameras", { method: "POST", body });
    }
    $("camera-dialog").close();
    await guarded(refreshCameras);
  } catch (error) {
    if (error.status === 422 || error.status === 409 || error.status === 400) showFieldErrors(form, error.status === 409 ? [{ loc: ["body", "id"], msg: error.detail }] : error.detail);
    else showFieldErrors(form, error.message);
  }
}

// -- incidents ----------------------------------------------------------------------------------

function incidentQuery() {
  const params = new URLSearchParams({ limit: "50" });
  const form = $("incident-filters");
  for (const element of form.elements) {
    if (!element.name || !element.value.trim()) continue;
    let value = element.value.trim();
    if (element.type === "datetime-local") value = new Date(value).toISOString();
    params.set(element.name, value);
  }
  return params;
}

function bestKeyframe(incident) {
  const paths = incident.keyframe_paths || {};
  for (const stage of ["alert", "open", "close"]) {
    if (paths[stage]) return { stage, kind: paths[stage].annotated ? "annotated" : "raw" };
  }
  return null;
}

function incidentRow(incident, thumbs) {
  const id = incident.incident_id;
  const frame = bestKeyframe(incident);
  const thumbPath = frame ? `incidents/${enc(id)}/keyframe/${frame.stage}/${frame.kind}` : null;
  const thumb = thumbPath ? el("img", { class: "thumb", alt: `key frame of ${id}`, src: thumbs[thumbPath] }) : el("span", { class: "muted", text: "—" });
  const check = el("input", { type: "checkbox", "aria-label": `select ${id}`, "data-select": id });
  check.checked = state.selected.has(id);
  check.addEventListener("change", () => { if (check.checked) state.selected.add(id); else state.selected.delete(id); updateAckButton(); });
  const open = el("button", { type: "button", class: "link", text: fmtTime(incident.started_at), "aria-label": `open incident ${id}` });
  open.addEventListener("click", () => openIncident(id));
  thumb.addEventListener("click", () => openIncident(id));
  const row = el("tr", { "data-incident": id, class: incident.acknowledged ? "acked" : "" },
    el("td", {}, check), el("td", {}, thumb), el("td", {}, open),
    el("td", { text: incident.camera_id }), el("td", { text: incident.rule }),
    el("td", { text: incident.zone || incident.line || "—" }), el("td", { text: incident.class_name || "—" }),
    el("td", {}, el("span", { class: `badge sev-${incident.severity}`, text: incident.severity })),
    el("td", {}, el("span", { class: `badge ${incident.status}`, text: incident.status })),
    el("td", { class: "result-cell", text: incident.result }),
    el("td", { class: "ack-cell", text: incident.acknowledged ? `✓ ${incident.acknowledged_by || ""}` : "—" }));
  return row;
}

function updateAckButton() {
  $("ack-selected").disabled = state.selected.size === 0;
  $("ack-selected").textContent = state.selected.size ? `Acknowledge selected (${state.selected.size})` : "Acknowledge selected";
}

async function refreshIncidents(append = false) {
  const params = incidentQuery();
  if (append && state.incidentCursor) params.set("cursor", state.incidentCursor);
  const page = await api("incidents?" + params.toString());
  const items = page.items || [];
  const paths = [];
  for (const incident of items) {
    const frame = bestKeyframe(incident);
    if (frame) paths.push(`incidents/${enc(incident.incident_id)}/keyframe/${frame.stage}/${frame.kind}`);
  }
  const thumbs = paths.length ? await signed(paths) : {};
  const body = document.querySelector("#incidents tbody");
  const rows = items.map((incident) => { state.incidents.set(incident.incident_id, incident); return incidentRow(incident, thumbs); });
  if (append) body.append(...rows); else body.replaceChildren(...rows);
  state.incidentCursor = page.next_cursor || null;
  $("incidents-more").hidden = !state.incidentCursor;
  $("no-incidents").hidden = body.children.length > 0;
  const shown = new Set([...body.querySelectorAll("tr")].map((r) => r.dataset.incident));
  for (const id of [...state.selected]) if (!shown.has(id)) state.selected.delete(id);
  updateAckButton();
}

async function acknowledge(ids) {
  const by = state.who.role === "anonymous" ? null : state.who.role;
  if (ids.length === 1) await api(`incidents/${enc(ids[0])}/ack`, { method: "POST", body: { by } });
  else await api("incidents/ack", { method: "POST", body: { ids, by } });
  for (const id of ids) state.selected.delete(id);
  await refreshIncidents();
}

function trackSvg(incident) {
  const svg = $("incident-track");
  svg.replaceChildren();
  const points = (incident.trajectory || []).filter((p) => p.length >= 3);
  if (!points.length) { svg.hidden = true; return; }
  svg.hidden = false;
  svg.append(svgEl("polyline", { points: points.map((p) => `${p[1] * 1000},${p[2] * 1000}`).join(" "), class: "track" }));
  const last = points[points.length - 1];
  svg.append(svgEl("circle", { cx: last[1] * 1000, cy: last[2] * 1000, r: 14, class: "track-end" }));
}

async function showStage(incident, stage) {
  const kind = incident.keyframe_paths[stage].annotated ? "annotated" : "raw";
  $("incident-img").src = await link(`incidents/${enc(incident.incident_id)}/keyframe/${stage}/${kind}`);
  $("incident-img").dataset.stage = stage;
  for (const button of $("incident-stages").children) button.setAttribute("aria-pressed", String(button.dataset.stage === stage));
}

async function openIncident(id) {
  await guarded(async () => {
    const incident = await api(`incidents/${enc(id)}`);
    state.detail = incident;
    $("incident-title").textContent = `${incident.severity} · ${incident.rule} · ${incident.camera_id}`;
    $("incident-result").textContent = incident.result;
    const fields = [
      ["Incident", incident.incident_id], ["Site", incident.site], ["Camera", incident.camera_id],
      ["Rule", `${incident.rule} (${incident.rule_kind})`], ["Zone / line", incident.zone || incident.line || "—"],
      ["Class", incident.class_name || "—"], ["Track", incident.track_id ?? "—"], ["Status", incident.status],
      ["Started", fmtTime(incident.started_at)], ["Last seen", fmtTime(incident.last_seen_at)],
      ["Ended", fmtTime(incident.ended_at)], ["Became an alert", fmtTime(incident.escalated_at)],
      ["Confidence", `${incident.confidence.toFixed(2)} (best ${incident.best_confidence.toFixed(2)})`],
      ["Share", incident.fraction == null ? "—" : `${Math.round(incident.fraction * 100)} % (peak ${Math.round((incident.peak_fraction || 0) * 100)} %)`],
      ["Objects", incident.object_count == null ? "—" : `${incident.object_count} (peak ${incident.peak_count})`],
      ["Frames", incident.frames_seen],
      ["Acknowledged", incident.acknowledged ? `${fmtTime(incident.acknowledged_at)} by ${incident.acknowledged_by || "—"}` : "no"],
    ];
    $("incident-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
    const stages = ["open", "alert", "close"].filter((s) => incident.keyframe_paths && incident.keyframe_paths[s]);
    $("incident-stages").replaceChildren(...stages.map((stage) => {
      const button = el("button", { type: "button", "data-stage": stage, text: stage });
      button.addEventListener("click", () => guarded(() => showStage(incident, stage)));
      return button;
    }));
    const img = $("incident-img");
    img.hidden = !stages.length;
    if (stages.length) await showStage(incident, stages.includes("alert") ? "alert" : stages[0]);
    $("incident-updates").replaceChildren(...(incident.trajectory || []).slice(-30).map((p) =>
      el("li", { text: `+${Number(p[0]).toFixed(1)} s at (${Number(p[1]).toFixed(2)}, ${Number(p[2]).toFixed(2)})` })),
      el("li", { text: `last seen ${fmtTime(incident.last_seen_at)}` }));
    trackSvg(incident);
    $("incident-ack").disabled = incident.acknowledged;
    $("incident-ack").textContent = incident.acknowledged ? "Acknowledged" : "Acknowledge";
    const video = $("incident-clip");
    const sameClip = video.dataset.incident === id && video.getAttribute("src");
    if (!sameClip) {
      video.hidden = true; video.removeAttribute("src"); delete video.dataset.incident; $("incident-clip-note").textContent = "";
      stopOverlay();  // nothing of the previous incident stays drawn
    }
    const dialog = $("incident-dialog");
    if (!dialog.open) dialog.showModal();
    let info = null;
    try {
      info = await api(`incidents/${enc(id)}/clip/info`);
      if (!sameClip) { video.src = await link(`incidents/${enc(id)}/clip`); video.dataset.incident = id; }
      video.hidden = false;
      $("incident-clip-note").textContent = `clip ${info.duration_s.toFixed(1)} s${info.capped ? " (capped)" : ""}`;
    } catch (error) {
      $("incident-clip-note").textContent = error.status === 404 ? "no clip (yet)" : "";
      if (error.status !== 404) throw error;
    }
    await startOverlay(id, info);
  });
}

// -- zone and line editor -----------------------------------------------------------------------

const editor = { camera: null, analytics: null, shape: null, point: null, rule: null, drag: null, dirty: false };

function shapes() { return [...editor.analytics.zones.map((z, i) => ({ type: "zone", index: i, item: z })), ...editor.analytics.lines.map((l, i) => ({ type: "line", index: i, item: l }))]; }
function currentShape() {
  if (!editor.shape || !editor.analytics) return null;
  const list = editor.shape.type === "zone" ? editor.analytics.zones : editor.analytics.lines;
  return list[editor.shape.index] || null;
}

async function loadEditor(force = false) {
  const id = $("z-camera").value || (state.cameraList[0] && state.cameraList[0].id);
  if (!id) return;
  if (!force && editor.camera === id && editor.analytics) return;
  $("z-camera").value = id;
  editor.camera = id;
  editor.analytics = await api(`cameras/${enc(id)}/analytics`);
  editor.analytics.zones = editor.analytics.zones || [];
  editor.analytics.lines = editor.analytics.lines || [];
  editor.analytics.rules = editor.analytics.rules || [];
  editor.shape = editor.analytics.zones.length ? { type: "zone", index: 0 } : null;
  editor.point = null; editor.rule = null;
  setEditorMessage("", "");
  clearSettingProblems();
  renderTracker();
  await refreshPicture();
  renderEditor();
}

async function refreshPicture() {
  const img = $("z-img");
  const url = await link(`cameras/${enc(editor.camera)}/frame.jpg`);
  img.src = withQuery(url, `t=${Date.now()}`);
}

function setEditorMessage(error, ok) {
  $("z-error").textContent = error; $("z-error").hidden = !error;
  $("z-saved").textContent = ok; $("z-saved").hidden = !ok;
}

function renderEditor() {
  const svg = $("z-svg");
  svg.replaceChildren();
  if (!editor.analytics) return;
  for (const { type, index, item } of shapes()) {
    const selected = editor.shape && editor.shape.type === type && editor.shape.index === index;
    const pts = item.points.map((p) => `${p[0] * 1000},${p[1] * 1000}`).join(" ");
    const cls = `${type}${selected ? " selected" : ""}`;
    if (type === "zone") svg.append(svgEl(item.points.length >= 3 ? "polygon" : "polyline", { points: pts, class: cls, "data-shape": `${type}:${index}` }));
    else svg.append(svgEl("polyline", { points: pts, class: cls, "data-shape": `${type}:${index}` }));
    if (item.points.length) {
      const [x, y] = item.points[0];
      const label = svgEl("text", { x: x * 1000 + 12, y: y * 1000 - 12, class: "shape-label" });
      label.textContent = item.name;
      svg.append(label);
    }
    if (selected) {
      item.points.forEach((p, i) => svg.append(svgEl("circle", {
        cx: p[0] * 1000, cy: p[1] * 1000, r: 14, class: `vertex${editor.point === i ? " active" : ""}`, "data-point": i,
      })));
    }
  }
  const list = $("z-shapes");
  list.replaceChildren(...shapes().map(({ type, index, item }) => {
    const selected = editor.shape && editor.shape.type === type && editor.shape.index === index;
    const button = el("button", { type: "button", class: selected ? "selected" : "", "aria-pressed": String(!!selected),
      text: `${type === "zone" ? "▱" : "╱"} ${item.name} (${item.points.length} pt)` });
    button.addEventListener("click", () => { editor.shape = { type, index }; editor.point = null; renderEditor(); });
    return el("li", {}, button);
  }));
  const shape = currentShape();
  $("z-shape-form").hidden = !shape;
  if (shape) {
    if (document.activeElement !== $("z-name")) $("z-name").value = shape.name;
    $("z-shape-info").textContent = editor.shape.type === "zone"
      ? `zone: ${shape.points.length} points (at least 3)` : `line: ${shape.points.length} of 2 points; left/right as seen from the first point`;
  }
  renderRules();
}

function ruleTarget(rule) { return rule.kind === "crossing" ? `line ${rule.line}` : (rule.zone ? `zone ${rule.zone}` : "whole frame"); }

function renderRules() {
  const rules = editor.analytics.rules;
  $("z-rules").replaceChildren(...rules.map((rule, i) => {
    const button = el("button", { type: "button", class: editor.rule === i ? "selected" : "", "aria-pressed": String(editor.rule === i),
      text: `${rule.name}: ${rule.kind}, ${ruleTarget(rule)}, ${rule.severity}` });
    button.addEventListener("click", () => { editor.rule = i; renderEditor(); });
    return el("li", {}, button);
  }));
  const form = $("z-rule-form");
  const rule = editor.rule !== null ? rules[editor.rule] : null;
  form.hidden = !rule;
  if (!rule) return;
  const zoneSel = form.elements.zone;
  zoneSel.replaceChildren(el("option", { value: "", text: "whole frame" }), ...editor.analytics.zones.map((z) => el("option", { value: z.name, text: z.name })));
  const lineSel = form.elements.line;
  lineSel.replaceChildren(...editor.analytics.lines.map((l) => el("option", { value: l.name, text: l.name })));
  for (const name of ["name", "kind", "zone", "line", "severity", "membership", "anchor", "direction"]) form.elements[name].value = rule[name] ?? "";
  for (const name of ["min_inside", "min_outside", "min_dwell_s", "min_count", "min_confidence", "min_duration_s"]) form.elements[name].value = rule[name] ?? "";
  form.elements.classes.value = (rule.classes || []).join(", ");
  renderEscalation(form, rule);
  for (const label of form.querySelectorAll("[data-kinds]")) label.hidden = !label.dataset.kinds.split(" ").includes(rule.kind);
}

const BASE_RULE = ["name", "classes", "min_confidence", "min_area", "min_duration_s", "severity", "cooldown_s", "close_after_s", "label"];
const ZONE_TEST = ["zone", "membership", "anchor", "min_inside", "min_outside", "hysteresis", "median_frames"];
const RULE_KEYS = {
  presence: [...BASE_RULE, ...ZONE_TEST, "window", "min_hits", "escalate"],
  dwell: [...BASE_RULE, ...ZONE_TEST, "min_dwell_s"],
  count: [...BASE_RULE, ...ZONE_TEST, "min_count"],
  crossing: [...BASE_RULE, "line", "direction", "anchor", "min_frames"],
};

function reshapeRule(rule, kind) {
  const out = { kind };
  for (const key of RULE_KEYS[kind]) if (rule[key] !== undefined) out[key] = rule[key];
  if (kind === "dwell" && !out.min_dwell_s) out.min_dwell_s = 10;
  if (kind === "count" && !out.min_count) out.min_count = 2;
  if (kind === "crossing" && !out.line && editor.analytics.lines.length) out.line = editor.analytics.lines[0].name;
  if (kind !== "crossing" && out.zone === undefined) out.zone = editor.analytics.zones.length ? editor.analytics.zones[0].name : null;
  return out;
}

function ruleFromForm() {
  const form = $("z-rule-form");
  const rules = editor.analytics.rules;
  let rule = { ...rules[editor.rule] };
  const kind = form.elements.kind.value;
  if (kind !== rule.kind) rule = reshapeRule(rule, kind);
  rule.name = form.elements.name.value.trim();
  rule.severity = form.elements.severity.value || "detection";
  rule.anchor = form.elements.anchor.value || "bottom_center";
  rule.classes = form.elements.classes.value.split(",").map((s) => s.trim()).filter(Boolean);
  const num = (name) => { const v = form.elements[name].value; return v === "" ? null : Number(v); };
  if (rule.kind === "crossing") {
    rule.line = form.elements.line.value; rule.direction = form.elements.direction.value || "both";
  } else {
    rule.zone = form.elements.zone.value || null;
    rule.membership = form.elements.membership.value || "mask_fraction";
    rule.min_inside = num("min_inside");
    rule.min_outside = num("min_outside");
  }
  if (rule.kind === "dwell") rule.min_dwell_s = num("min_dwell_s");
  if (rule.kind === "count") rule.min_count = num("min_count");
  const confidence = num("min_confidence"); if (confidence !== null) rule.min_confidence = confidence;
  const duration = num("min_duration_s"); if (duration !== null) rule.min_duration_s = duration;
  rules[editor.rule] = escalationFromForm(form, rule);
  editor.dirty = true;
  renderEditor();
}

function uniqueName(prefix, taken) {
  let i = 1;
  while (taken.includes(`${prefix}${i}`)) i += 1;
  return `${prefix}${i}`;
}

function svgPoint(event) {
  const rect = $("z-svg").getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return [Number(clamp((event.clientX - rect.left) / rect.width).toFixed(4)), Number(clamp((event.clientY - rect.top) / rect.height).toFixed(4))];
}

function setupEditor() {
  const svg = $("z-svg");
  svg.addEventListener("pointerdown", (event) => {
    if (!state.who.can_change || !editor.analytics) return;
    const shape = currentShape();
    const vertex = event.target.closest && event.target.closest("circle.vertex");
    if (vertex && shape) {
      editor.point = Number(vertex.dataset.point);
      editor.drag = { moved: false, pointerId: event.pointerId };
      svg.setPointerCapture(event.pointerId);
      renderEditor();
      event.preventDefault();
      return;
    }
    const hit = event.target.dataset && event.target.dataset.shape;
    if (hit && (!shape || hit !== `${editor.shape.type}:${editor.shape.index}`) && shape && ((editor.shape.type === "zone" && shape.points.length >= 3) || (editor.shape.type === "line" && shape.points.length >= 2))) {
      const [type, index] = hit.split(":");
      editor.shape = { type, index: Number(index) }; editor.point = null; renderEditor();
      return;
    }
    if (!shape) return;
    if (editor.shape.type === "line" && shape.points.length >= 2) { setEditorMessage("A line has two points: drag them, or delete one first.", ""); return; }
    shape.points.push(svgPoint(event));
    editor.point = shape.points.length - 1;
    editor.dirty = true;
    setEditorMessage("", "");
    renderEditor();
  });
  svg.addEventListener("pointermove", (event) => {
    if (!editor.drag) return;
    const shape = currentShape();
    if (!shape || editor.point === null) return;
    shape.points[editor.point] = svgPoint(event);
    editor.drag.moved = true; editor.dirty = true;
    renderEditor();
  });
  const endDrag = () => { editor.drag = null; };
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", endDrag);
  svg.addEventListener("keydown", (event) => {
    const shape = currentShape();
    if (!shape || editor.point === null || !state.who.can_change) return;
    const step = event.shiftKey ? 0.05 : 0.01;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[event.key]) {
      const p = shape.points[editor.point];
      shape.points[editor.point] = [Math.min(1, Math.max(0, +(p[0] + moves[event.key][0]).toFixed(4))), Math.min(1, Math.max(0, +(p[1] + moves[event.key][1]).toFixed(4)))];
    } else if (event.key === "Delete" || event.key === "Backspace") {
      deletePoint();
    } else if (event.key === "Tab") return;
    else return;
    editor.dirty = true;
    event.preventDefault();
    renderEditor();
  });
  $("z-img").addEventListener("load", () => {
    const img = $("z-img");
    if (img.naturalWidth) $("z-stage").style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
  });
  $("z-camera").addEventListener("change", () => guarded(() => loadEditor(true)));
  $("z-refresh").addEventListener("click", () => guarded(refreshPicture));
  $("z-add-zone").addEventListener("click", () => {
    const name = uniqueName("zone", editor.analytics.zones.map((z) => z.name));
    editor.analytics.zones.push({ name, points: [] });
    editor.shape = { type: "zone", index: editor.analytics.zones.length - 1 }; editor.point = null;
    renderEditor(); $("z-svg").focus();
  });
  $("z-add-line").addEventListener("click", () => {
    const name = uniqueName("line", editor.analytics.lines.map((l) => l.name));
    editor.analytics.lines.push({ name, points: [] });
    editor.shape = { type: "line", index: editor.analytics.lines.length - 1 }; editor.point = null;
    renderEditor(); $("z-svg").focus();
  });
  $("z-name").addEventListener("input", () => {
    const shape = currentShape();
    if (!shape) return;
    const old = shape.name;
    shape.name = $("z-name").value.trim();
    for (const rule of editor.analytics.rules) {
      if (editor.shape.type === "zone" && rule.zone === old) rule.zone = shape.name;
      if (editor.shape.type === "line" && rule.line === old) rule.line = shape.name;
    }
    editor.dirty = true; renderEditor();
  });
  $("z-del-point").addEventListener("click", () => { deletePoint(); renderEditor(); });
  $("z-del-shape").addEventListener("click", () => {
    if (!editor.shape) return;
    (editor.shape.type === "zone" ? editor.analytics.zones : editor.analytics.lines).splice(editor.shape.index, 1);
    editor.shape = null; editor.point = null; editor.dirty = true; renderEditor();
  });
  $("z-add-rule").addEventListener("click", () => {
    const name = uniqueName("rule", editor.analytics.rules.map((r) => r.name));
    const zone = editor.shape && editor.shape.type === "zone" ? currentShape().name : (editor.analytics.zones[0] || {}).name || null;
    editor.analytics.rules.push({ kind: "presence", name, zone, severity: "alert", classes: [], membership: "mask_fraction", anchor: "bottom_center" });
    editor.rule = editor.analytics.rules.length - 1; editor.dirty = true; renderEditor();
    $("z-rule-form").elements.name.focus();
  });
  $("z-del-rule").addEventListener("click", () => {
    if (editor.rule === null) return;
    editor.analytics.rules.splice(editor.rule, 1); editor.rule = null; editor.dirty = true; renderEditor();
  });
  $("z-rule-form").addEventListener("change", ruleFromForm);
  $("z-rule-form").addEventListener("submit", (e) => e.preventDefault());
  $("z-save").addEventListener("click", saveAnalytics);
}

function deletePoint() {
  const shape = currentShape();
  if (!shape || editor.point === null) return;
  shape.points.splice(editor.point, 1);
  editor.point = shape.points.length ? Math.min(editor.point, shape.points.length - 1) : null;
  editor.dirty = true;
}

function describeProblem(problem) {
  const loc = problem.loc.filter((p) => p !== "body");
  let where = loc.join(".");
  if (loc[0] === "zones" || loc[0] === "lines" || loc[0] === "rules") {
    const list = editor.analytics[loc[0]] || [];
    const item = list[loc[1]];
    if (item) where = `${loc[0].slice(0, -1)} '${item.name}'${loc.length > 2 ? " " + loc.slice(2).join(".") : ""}`;
  }
  return where ? `${where}: ${problem.msg}` : problem.msg;
}

async function saveAnalytics() {
  setEditorMessage("", "");
  clearSettingProblems();
  try {
    const saved = await api(`cameras/${enc(editor.camera)}/analytics`, { method: "PUT", body: editor.analytics });
    editor.analytics = saved;
    editor.dirty = false;
    setEditorMessage("", `Saved: ${saved.zones.length} zone(s), ${saved.lines.length} line(s), ${saved.rules.length} rule(s).`);
    renderTracker();
    renderEditor();
  } catch (error) {
    const text = error.status === 422 ? problems(error.detail).map(describeProblem).join("; ") : error.message;
    setEditorMessage(text, "");
    if (error.status === 422) showSettingProblems(problems(error.detail));  // and next to the field it names
  }
}

// -- events (the old page) ----------------------------------------------------------------------

function filterQuery() {
  const params = new URLSearchParams({ limit: "25" });
  for (const [name, id] of [["site", "f-site"], ["camera_id", "f-camera"], ["class_name", "f-class"], ["status", "f-status"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  return params.toString();
}

async function openViewer(eventId) {
  await guarded(async () => {
    $("viewer-img").src = withQuery(await link(`events/${enc(eventId)}/keyframe`), "kind=annotated");
    $("viewer").showModal();
  });
}

async function refreshEvents() {
  const page = await api("events?" + filterQuery());
  const paths = page.items.filter((e) => e.keyframe_annotated_path || e.keyframe_raw_path).map((e) => `events/${enc(e.event_id)}/keyframe`);
  const urls = paths.length ? await signed(paths) : {};
  const body = document.querySelector("#events tbody");
  const rows = page.items.map((event) => {
    const path = `events/${enc(event.event_id)}/keyframe`;
    const thumb = event.keyframe_annotated_path || event.keyframe_raw_path
      ? el("img", { class: "thumb", loading: "lazy", alt: `key frame of ${event.event_id}`, tabindex: "0",
        src: withQuery(urls[path], `kind=${event.keyframe_annotated_path ? "annotated" : "raw"}`) })
      : el("span", { class: "muted", text: "—" });
    if (thumb.tagName === "IMG") {
      thumb.addEventListener("click", () => openViewer(event.event_id));
      thumb.addEventListener("keydown", (e) => { if (e.key === "Enter") openViewer(event.event_id); });
    }
    return el("tr", { "data-event": event.event_id },
      el("td", {}, thumb),
      el("td", { text: new Date(event.started_at).toLocaleString() }),
      el("td", { text: event.site }), el("td", { text: event.camera_id }), el("td", { text: event.class_name }),
      el("td", { text: event.best_confidence.toFixed(2) }), el("td", { text: String(event.frames_seen) }),
      el("td", {}, el("span", { class: `badge ${event.status}`, text: event.status })));
  });
  body.replaceChildren(...rows);
  $("no-events").hidden = rows.length > 0;
}

async function refreshCounts() {
  const counts = await api("events/counts?group_by=day,class_name");
  const rows = counts.rows.slice().sort((a, b) => (b.day || "").localeCompare(a.day || "") || b.count - a.count);
  document.querySelector("#counts tbody").replaceChildren(...rows.map((row) =>
    el("tr", {}, el("td", { text: row.day || "" }), el("td", { text: row.class_name || "" }), el("td", { text: String(row.count) }))));
  $("classes").replaceChildren(
    ...[...new Set(rows.map((r) => r.class_name).filter(Boolean))].map((c) => el("option", { value: c })));
}

async function refreshReady() {
  const badge = $("ready");
  try {
    const response = await fetch("ready", { headers: headers() });
    const ready = response.ok && (await response.json()).ready;
    badge.textContent = ready ? "ready" : "not ready";
    badge.className = `badge ${ready ? "ready" : "not-ready"}`;
  } catch (_) {
    badge.textContent = "unreachable";
    badge.className = "badge not-ready";
  }
}

// -- wiring -------------------------------------------------------------------------------------

function setup() {
  const input = $("token");
  input.value = state.token;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = input.value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    resetLiveViews();
    refreshAll();
  });
  $("token-clear").addEventListener("click", () => {
    state.token = ""; input.value = ""; localStorage.removeItem(TOKEN_KEY); resetLiveViews(); refreshAll();
  });
  $("filters").addEventListener("input", () => guarded(refreshEvents));
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("incident-filters").addEventListener("input", () => guarded(() => refreshIncidents()));
  $("incident-filters").addEventListener("submit", (e) => e.preventDefault());
  $("incidents-more").addEventListener("click", () => guarded(() => refreshIncidents(true)));
  $("ack-all").addEventListener("change", () => {
    for (const box of document.querySelectorAll("#incidents tbody input[data-select]")) {
      box.checked = $("ack-all").checked;
      if (box.checked) state.selected.add(box.dataset.select); else state.selected.delete(box.dataset.select);
    }
    updateAckButton();
  });
  $("ack-selected").addEventListener("click", () => guarded(async () => { await acknowledge([...state.selected]); $("ack-all").checked = false; }));
  $("incident-ack").addEventListener("click", () => guarded(async () => {
    const id = state.detail && state.detail.incident_id;
    if (!id) return;
    await acknowledge([id]);
    await openIncident(id);
  }));
  $("incident-dialog").addEventListener("close", () => {
    const v = $("incident-clip"); v.pause(); v.removeAttribute("src"); delete v.dataset.incident; stopOverlay(); state.detail = null;
  });
  $("camera-add").addEventListener("click", () => openCameraForm(null));
  $("camera-form").addEventListener("submit", submitCameraForm);
  $("camera-cancel").addEventListener("click", () => $("camera-dialog").close());
  window.addEventListener("hashchange", showView);
  setupEditor();
  setupSettings();
  setupOverlay();
}

function refreshAll() {
  guarded(async () => {
    await refreshRole();
    await refreshCameras();
    showView();
    await refreshEvents();
    await refreshCounts();
  });
  refreshReady();
}

setup();
refreshAll();
setInterval(() => guarded(refreshCameras), CAMERAS_EVERY_MS);
setInterval(() => {
  if (state.view === "events" && $("auto").checked) guarded(async () => { await refreshEvents(); await refreshCounts(); });
}, EVENTS_EVERY_MS);
setInterval(() => {
  if (state.view === "incidents" && $("incidents-live").checked && !$("incident-dialog").open) guarded(() => refreshIncidents());
}, INCIDENTS_EVERY_MS);
setInterval(refreshReady, 10000);
