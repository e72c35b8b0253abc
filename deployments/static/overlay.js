// The incident detail's overlays: the rule's zone or line and the tracked object's mask outline, drawn on a
// canvas over the clip in step with its playback, and the zone over the key frame. The outline track comes
// from GET incidents/{id}/track (capture times of every sample) and the clip's start from
// GET incidents/{id}/clip/info: video time = capture time - start_ts. Loaded after common.js, whose helpers
// (api, enc) it uses only when called.
"use strict";

const overlay = { track: null, clipStart: null, frame: 0, video: null };
// An outline older than this (or than 2.5 sampling intervals) is not shown: the object was not seen then.
const OUTLINE_HOLD_S = 1.0;

// The rectangle an object-fit: contain picture of w x h occupies in a box of bw x bh.
function containRect(bw, bh, w, h) {
  if (!w || !h || !bw || !bh) return { x: 0, y: 0, w: bw, h: bh };
  const scale = Math.min(bw / w, bh / h);
  return { x: (bw - w * scale) / 2, y: (bh - h * scale) / 2, w: w * scale, h: h * scale };
}

// The sample shown at capture time ts: the latest at or before it, if recent enough; null otherwise.
function sampleAt(track, ts) {
  const samples = (track && track.samples) || [];
  let lo = 0, hi = samples.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (samples[mid].ts <= ts + 1e-3) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (found < 0) return null;
  const hold = Math.max(OUTLINE_HOLD_S, 2.5 * (track.every_s || 0));
  return ts - samples[found].ts <= hold ? samples[found] : null;
}

function path(ctx, rect, points, closed) {
  ctx.beginPath();
  points.forEach(([x, y], i) => {
    const px = rect.x + x * rect.w, py = rect.y + y * rect.h;
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  if (closed) ctx.closePath();
}

// Draw shapes (and outlines) over a media element of natural size w x h; returns how many outlines it drew.
function drawOverlay(canvas, media, w, h, shapes, outlines, alert) {
  const ratio = window.devicePixelRatio || 1;
  const bw = media.clientWidth, bh = media.clientHeight;
  if (canvas.width !== Math.round(bw * ratio) || canvas.height !== Math.round(bh * ratio)) {
    canvas.width = Math.round(bw * ratio); canvas.height = Math.round(bh * ratio);
  }
  canvas.style.width = `${bw}px`; canvas.style.height = `${bh}px`;
  canvas.style.left = `${media.offsetLeft}px`; canvas.style.top = `${media.offsetTop}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, bw, bh);
  const rect = containRect(bw, bh, w, h);
  ctx.lineWidth = 2;
  for (const shape of shapes || []) {
    path(ctx, rect, shape.points, shape.closed);
    ctx.setLineDash([8, 5]);
    ctx.strokeStyle = shape.closed ? "#4c8dff" : "#f0c040";
    ctx.stroke();
    ctx.setLineDash([]);
    if (shape.closed) { ctx.fillStyle = "rgba(76, 141, 255, 0.12)"; ctx.fill(); }
    const [x, y] = shape.points[0] || [0, 0];
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillStyle = "#fff";
    ctx.fillText(shape.name, rect.x + x * rect.w + 4, rect.y + y * rect.h + 15);
  }
  ctx.lineWidth = 3;
  for (const polygon of outlines || []) {
    path(ctx, rect, polygon, true);
    ctx.fillStyle = alert ? "rgba(217, 83, 79, 0.35)" : "rgba(47, 163, 107, 0.35)";
    ctx.fill();
    ctx.strokeStyle = alert ? "#ff5a52" : "#3ddc84";
    ctx.stroke();
  }
  canvas.dataset.shapes = (shapes || []).map((s) => s.name).join(",");
  return (outlines || []).length;
}

// One frame of the clip overlay: the outline of the sample at the video's capture time.
function drawClipOverlay() {
  const video = overlay.video, canvas = $("incident-overlay");
  if (!video || !overlay.track || overlay.clipStart === null || video.hidden) { canvas.hidden = true; return; }
  canvas.hidden = false;
  const ts = overlay.clipStart + video.currentTime;
  const sample = sampleAt(overlay.track, ts);
  const alert = state.detail && state.detail.severity === "alert";
  const drawn = drawOverlay(canvas, video, video.videoWidth, video.videoHeight, overlay.track.shapes,
    sample ? sample.outlines : [], alert);
  canvas.dataset.videoTs = ts.toFixed(3);
  canvas.dataset.drawnTs = sample ? sample.ts.toFixed(3) : "";
  canvas.dataset.outlines = String(drawn);
}

function overlayLoop() {
  overlay.frame = 0;
  drawClipOverlay();
  if (overlay.video && !overlay.video.paused && !overlay.video.ended) overlay.frame = requestAnimationFrame(overlayLoop);
}

function setupOverlay() {
  const video = $("incident-clip");
  overlay.video = video;
  for (const name of ["play", "playing"]) video.addEventListener(name, () => { if (!overlay.frame) overlayLoop(); });
  for (const name of ["seeked", "loadeddata", "pause", "timeupdate"]) video.addEventListener(name, drawClipOverlay);
  $("incident-img").addEventListener("load", drawKeyframeZones);
  window.addEventListener("resize", () => { drawClipOverlay(); drawKeyframeZones(); });
}

// The incident's zone or line over the key frame (the annotated picture has it too; the raw one does not).
function drawKeyframeZones() {
  const img = $("incident-img"), canvas = $("incident-img-overlay");
  const shapes = (overlay.track && overlay.track.shapes) || [];
  canvas.hidden = img.hidden || !img.naturalWidth || !shapes.length;
  if (canvas.hidden) return;
  drawOverlay(canvas, img, img.naturalWidth, img.naturalHeight, shapes, [], false);
}

// Called by openIncident: fetch the track (and, when there is a clip, its start) and draw.
async function startOverlay(incidentId, clipInfo) {
  stopOverlay();
  overlay.track = await api(`incidents/${enc(incidentId)}/track`);
  overlay.clipStart = clipInfo && typeof clipInfo.start_ts === "number" ? clipInfo.start_ts : null;
  const samples = overlay.track.samples.length;
  $("incident-overlay-note").textContent = samples
    ? `${samples} outline(s) of the object, drawn over the clip as it plays` : "no outlines stored for this incident";
  drawKeyframeZones();
  drawClipOverlay();
  if (overlay.video && !overlay.video.paused && !overlay.video.ended) overlayLoop();  // re-opened while playing
}

function stopOverlay() {
  if (overlay.frame) cancelAnimationFrame(overlay.frame);
  overlay.frame = 0; overlay.track = null; overlay.clipStart = null;
  $("incident-overlay-note").textContent = "";
  for (const id of ["incident-overlay", "incident-img-overlay"]) {
    const canvas = $(id);
    if (!canvas) continue;
    canvas.hidden = true;
    for (const key of ["drawnTs", "videoTs", "outlines", "shapes"]) delete canvas.dataset[key];
  }
}
