// The zone editor's rule escalation and the camera's tracker settings: form <-> the analytics section that
// PUT cameras/{id}/analytics saves, and the API's 422 messages placed next to the field they name. Loaded
// after common.js; its helpers ($, el) and zones.js's editor are used only when called.
"use strict";

// Tracker fields shown in the form: [name, kind]. Others (per-class scores) are kept as loaded.
const TRACKER_FIELDS = [
  ["enabled", "bool"], ["high_score", "num"], ["low_score", "num"], ["new_track_score", "num"],
  ["match_threshold", "num"], ["low_match_threshold", "num"], ["lost_track_s", "num"],
  ["probation_frames", "int"], ["probation_s", "num?"], ["use_masks", "bool"], ["class_aware", "bool"],
];

function renderEscalation(form, rule) {
  const esc = rule.escalate || null;
  const side = esc ? (esc.min_outside !== null && esc.min_outside !== undefined ? "min_outside" : "min_inside") : "";
  form.elements.esc_side.value = side;
  form.elements.esc_share.value = esc && esc[side] !== null && esc[side] !== undefined ? esc[side] : "";
  form.elements.esc_label.value = (esc && esc.label) || "";
  for (const name of ["esc_share", "esc_label"]) form.elements[name].closest("label").hidden = !side;
}

// The rule with its escalation from the form (presence rules only; other kinds have none).
function escalationFromForm(form, rule) {
  if (rule.kind !== "presence") { delete rule.escalate; return rule; }
  const side = form.elements.esc_side.value;
  if (!side) { rule.escalate = null; return rule; }
  const raw = form.elements.esc_share.value;
  const label = form.elements.esc_label.value.trim();
  // An empty share is sent as null: the API answers which threshold is missing, next to the field.
  rule.escalate = { [side]: raw === "" ? null : Number(raw), label: label || null };
  return rule;
}

function renderTracker() {
  const form = $("z-tracker-form");
  const tracker = (editor.analytics && editor.analytics.tracker) || {};
  for (const [name, kind] of TRACKER_FIELDS) {
    const input = form.elements[name];
    if (kind === "bool") input.checked = tracker[name] !== false;
    else input.value = tracker[name] ?? "";
  }
}

function trackerFromForm() {
  const form = $("z-tracker-form");
  const tracker = { ...(editor.analytics.tracker || {}) };
  for (const [name, kind] of TRACKER_FIELDS) {
    const input = form.elements[name];
    if (kind === "bool") { tracker[name] = input.checked; continue; }
    const value = input.value.trim();
    if (value === "") { if (kind === "num?") tracker[name] = null; else delete tracker[name]; continue; }
    tracker[name] = Number(value);
  }
  editor.analytics.tracker = tracker;
  editor.dirty = true;
}

function setupSettings() {
  $("z-tracker-form").addEventListener("change", trackerFromForm);
  $("z-tracker-form").addEventListener("submit", (e) => e.preventDefault());
  // A field's message goes once the field is edited (the next save answers again).
  $("z-tracker-form").addEventListener("input", (e) => {
    const name = e.target.name;
    const box = name && $("z-tracker-form").querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
    if (box) { box.textContent = ""; box.hidden = true; }
    e.target.removeAttribute("aria-invalid");
  });
  $("z-rule-form").addEventListener("input", (e) => {
    if (!e.target.name || !e.target.name.startsWith("esc_")) return;
    const box = $("z-rule-form").querySelector('.field-error[data-field="escalate"]');
    box.textContent = ""; box.hidden = true;
    for (const node of $("z-rule-form").querySelectorAll(".esc [aria-invalid]")) node.removeAttribute("aria-invalid");
  });
}

function clearSettingProblems() {
  for (const box of document.querySelectorAll("#z-rule-form .field-error, #z-tracker-form .field-error")) {
    box.textContent = ""; box.hidden = true;
  }
  for (const node of document.querySelectorAll("#z-rule-form [aria-invalid], #z-tracker-form [aria-invalid]")) node.removeAttribute("aria-invalid");
}

function placeProblem(box, input, message) {
  box.textContent = (box.textContent ? box.textContent + " " : "") + message;
  box.hidden = false;
  if (input) input.setAttribute("aria-invalid", "true");
}

// Put each 422 problem of a save next to its field: tracker.<field>, and rules.<i>.<kind>.escalate[.<field>]
// (the rule is selected so that its form shows). Returns how many it placed.
function showSettingProblems(list) {
  let placed = 0;
  for (const problem of list) {
    const loc = problem.loc.filter((p) => p !== "body");
    if (loc[0] === "tracker" && loc.length > 1) {
      const name = String(loc[1]);
      $("z-tracker").open = true;
      const box = document.querySelector(`#z-tracker-form .field-error[data-field="${CSS.escape(name)}"]`)
        || document.querySelector('#z-tracker-form .field-error[data-field="_form"]');
      placeProblem(box, $("z-tracker-form").elements[name], problem.msg);
      placed += 1;
    } else if (loc[0] === "rules" && loc.includes("escalate")) {
      const index = Number(loc[1]);
      if (editor.rule !== index) { editor.rule = index; renderEditor(); }
      const form = $("z-rule-form");
      const field = loc[loc.indexOf("escalate") + 1];
      const input = field === "label" ? form.elements.esc_label : field ? form.elements.esc_share : form.elements.esc_side;
      placeProblem(form.querySelector('.field-error[data-field="escalate"]'), input, field ? `${field}: ${problem.msg}` : problem.msg);
      placed += 1;
    }
  }
  return placed;
}
