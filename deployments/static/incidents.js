// Incidents review: the filtered, paged list with bulk acknowledgement, and the detail dialog (fields, key
// frames, trajectory, clip; overlay.js draws over the clip and key frame).
"use strict";

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

function setupIncidents() {
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
}
