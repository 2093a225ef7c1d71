// voiceprompt console: progressive enhancement only; every form works without this file.
"use strict";

// Drag and drop onto the upload area puts the files into its file input (the form posts them).
function setupDropzone() {
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("up-files");
  const chosen = document.getElementById("chosen");
  if (!zone || !input) return;
  const show = () => {
    const names = Array.from(input.files || []).map((f) => f.name);
    chosen.textContent = names.length ? names.join(", ") : "No files chosen";
  };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!files || !files.length) return;
    const all = new DataTransfer();
    Array.from(files).forEach((f) => all.items.add(f));
    input.files = all.files;
    show();
  });
}

// Filters and tenant switches apply as soon as they change.
function setupAutosubmit() {
  document.querySelectorAll("form[data-autosubmit] select").forEach((el) =>
    el.addEventListener("change", () => el.form.submit()));
  document.querySelectorAll("select[data-navigate]").forEach((el) =>
    el.addEventListener("change", () => { window.location.href = el.value; }));
}

// Optional keys: the switch enables or disables the key's input.
function setupEnables() {
  document.querySelectorAll("input[data-enables]").forEach((box) => {
    const target = document.getElementById(box.dataset.enables);
    if (!target) return;
    const sync = () => { target.readOnly = !box.checked; target.classList.toggle("muted", !box.checked); };
    box.addEventListener("change", sync);
    sync();
  });
}

// The preview player: show the rendered length next to the planned one.
function setupPreviewAudio() {
  const audio = document.getElementById("preview-audio");
  const out = document.getElementById("audio-duration");
  if (!audio || !out) return;
  audio.addEventListener("loadedmetadata", () => {
    if (isFinite(audio.duration)) out.textContent = `Rendered: ${audio.duration.toFixed(1)} s.`;
  });
}

// A reminder's page follows the database: status and new events arrive by server-sent events.
function setupReminderStream() {
  const box = document.getElementById("reminder");
  if (!box || !box.dataset.stream || !window.EventSource) return;
  const live = document.getElementById("live");
  const source = new EventSource(box.dataset.stream);
  source.addEventListener("open", () => { live.textContent = "live"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; });
  source.addEventListener("reminder", (e) => {
    const state = JSON.parse(e.data);
    for (const [key, value] of Object.entries(state)) {
      const el = box.querySelector(`[data-field="${key}"]`);
      if (!el) continue;
      const text = value === null || value === "" ? "—" : String(value);
      if (el.textContent === text) continue;
      el.textContent = text;
      if (key === "status") {
        el.className = `badge s-${value} flash`;
        setTimeout(() => el.classList.remove("flash"), 1500);
      }
    }
  });
  source.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    const body = document.getElementById("events");
    if (!body || body.querySelector(`[data-event="${ev.id}"]`)) return;
    const row = document.createElement("tr");
    row.dataset.event = ev.id;
    [["#", ev.id], ["When", ev.at], ["What", ev.kind], ["Detail", ev.detail]].forEach(([label, value], i) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      if (i === 2) { const b = document.createElement("strong"); b.textContent = value; td.appendChild(b); }
      else td.textContent = value;
      if (i === 3) td.className = "mono wrap";
      row.appendChild(td);
    });
    body.appendChild(row);
  });
  window.addEventListener("pagehide", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  setupDropzone();
  setupAutosubmit();
  setupEnables();
  setupPreviewAudio();
  setupReminderStream();
});
