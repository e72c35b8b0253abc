// trtseg dashboard: the page shell (token, role, readiness, navigation) and the wiring that starts it all.
// Loaded last, after common.js and the scripts of each view (see index.html), so everything it calls exists.
"use strict";

const EVENTS_EVERY_MS = 3000;
const INCIDENTS_EVERY_MS = 3000;
const CAMERAS_EVERY_MS = 5000;

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

// -- readiness ----------------------------------------------------------------------------------

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
  setupEvents();
  setupIncidents();
  setupCameraForm();
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
