// Events (the old page): the filtered list of events with key frames, and the counts per day and class.
"use strict";

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

function setupEvents() {
  $("filters").addEventListener("input", () => guarded(refreshEvents));
  $("filters").addEventListener("submit", (e) => e.preventDefault());
}
