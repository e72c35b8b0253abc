// The zone and line editor: a camera's zones, lines and rules drawn and edited over its latest frame, saved
// with PUT cameras/{id}/analytics (settings.js holds the rule escalation and tracker settings).
"use strict";

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
