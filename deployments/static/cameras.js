// The live grid and camera management: a card per camera with its live view, state and figures, and the
// add/edit dialog (the API's 422 messages placed next to the field they name).
"use strict";

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

function setupCameraForm() {
  $("camera-add").addEventListener("click", () => openCameraForm(null));
  $("camera-form").addEventListener("submit", submitCameraForm);
  $("camera-cancel").addEventListener("click", () => $("camera-dialog").close());
}
