// agegender upload page: choose / drop / paste a photo or use the camera, POST it to v1/predict, draw the boxes
// on a canvas and list the results. Plain JS, no build step, no external resources. Server strings are only
// ever inserted with textContent (never innerHTML).
"use strict";

const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#9c36b5", "#c2255c", "#0b7285", "#5f3dc4", "#e67700"];
const $ = (id) => document.getElementById(id);
let limits = null;
let stream = null;

function pct(p) {
  return p == null ? "" : `${(100 * p).toFixed(0)}%`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

async function loadInfo() {
  try {
    const r = await fetch("v1/models");
    const j = await r.json();
    const m = (j.models || [])[0] || {};
    $("model").textContent = `model ${m.name || "?"} ${m.version || ""} · ${(m.tasks || []).join(", ")}`;
    limits = j.limits || null;
    if (limits) {
      $("limits").textContent = `${limits.accepted_types.map((t) => t.toUpperCase()).join(", ")} · up to ` +
        `${(limits.max_upload_bytes / 1048576).toFixed(0)} MB and ${(limits.max_pixels / 1e6).toFixed(0)} megapixels`;
    }
  } catch (e) {
    $("model").textContent = "model info unavailable";
  }
}

function labelOf(p) {
  const parts = [];
  if (p.gender) parts.push(p.gender);
  if (p.age && p.age.years != null) parts.push(`${Math.round(p.age.years)} y`);
  else if (p.age && p.age.group) parts.push(p.age.group);
  return parts.join(", ");
}

function draw(img, result) {
  const canvas = $("view");
  const maxW = Math.min(720, document.body.clientWidth - 32);
  const scale = Math.min(1, maxW / img.naturalWidth);
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  if (!result) return;
  // boxes are in pixels of the image as the server decoded it (EXIF orientation applied, like the browser)
  const sx = canvas.width / (result.image.width || img.naturalWidth);
  const sy = canvas.height / (result.image.height || img.naturalHeight);
  const font = Math.max(12, Math.round(canvas.width / 40));
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  result.people.forEach((p, i) => {
    const [x1, y1, x2, y2] = p.box;
    const color = COLORS[i % COLORS.length];
    ctx.lineWidth = Math.max(2, canvas.width / 250);
    ctx.strokeStyle = color;
    ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    const text = `${i + 1}: ${labelOf(p)}`;
    const w = ctx.measureText(text).width + 8;
    const ty = y1 * sy - font - 6 >= 0 ? y1 * sy - font - 6 : y1 * sy;
    ctx.fillStyle = color;
    ctx.fillRect(x1 * sx, ty, w, font + 6);
    ctx.fillStyle = "white";
    ctx.fillText(text, x1 * sx + 4, ty + 3);
  });
}

function topEntry(probs) {
  if (!probs) return null;
  let best = null;
  for (const [k, v] of Object.entries(probs)) if (best == null || v > best[1]) best = [k, v];
  return best;
}

function cell(row, label, prob, title) {
  const td = el("td", label == null ? "–" : label);
  if (prob != null) td.appendChild(el("span", pct(prob), "p"));
  if (title) td.title = title;
  row.appendChild(td);
  return td;
}

function distTitle(probs) {
  return probs ? Object.entries(probs).map(([k, v]) => `${k}: ${pct(v)}`).join("\n") : "";
}

function bars(container, title, probs) {
  if (!probs) return;
  container.appendChild(el("h4", title));
  for (const [k, v] of Object.entries(probs)) {
    container.appendChild(el("span", k));
    const bar = el("div", null, "bar");
    bar.style.width = `${Math.max(0.5, 100 * v)}%`;
    container.appendChild(bar);
    container.appendChild(el("span", pct(v)));
  }
}

function fillTable(result) {
  const body = $("results").querySelector("tbody");
  const probs = $("probs");
  body.replaceChildren();
  probs.replaceChildren();
  if (!result.people.length) {
    const row = el("tr");
    const td = el("td", result.message || "nobody found");
    td.colSpan = 6;
    row.appendChild(td);
    body.appendChild(row);
    return;
  }
  result.people.forEach((p, i) => {
    const row = el("tr", null, "person");
    row.dataset.gender = p.gender || "";
    row.dataset.age = p.age && p.age.years != null ? String(p.age.years) : "";
    const num = el("td");
    const sw = el("span", null, "swatch");
    sw.style.background = COLORS[i % COLORS.length];
    num.append(sw, String(i + 1));
    row.appendChild(num);
    cell(row, p.gender, p.gender_probs ? p.gender_probs[p.gender] : null, distTitle(p.gender_probs));
    const age = p.age || {};
    const years = age.years != null ? age.years.toFixed(1) : null;
    const iv = age.interval ? ` (${Math.round(age.interval[0])}–${Math.round(age.interval[1])})` : "";
    const minor = age.p_under_18 != null ? `; under 18: ${pct(age.p_under_18)}` : "";
    cell(row, years == null ? null : years + iv, null,
      (age.interval ? `${pct(age.interval_mass)} interval: ${age.interval[0]}–${age.interval[1]} years` : "") + minor);
    cell(row, age.group || null, age.group_probs ? age.group_probs[age.group] : null, distTitle(age.group_probs));
    const eth = topEntry(p.ethnicity_probs);
    cell(row, p.ethnicity, eth ? p.ethnicity_probs[p.ethnicity] : null, distTitle(p.ethnicity_probs));
    cell(row, p.detector_score != null ? p.detector_score.toFixed(2) : null, null, "");
    body.appendChild(row);

    const det = el("details");
    det.open = result.people.length === 1;
    det.appendChild(el("summary", `person ${i + 1}: all probabilities`));
    const grid = el("div", null, "bars");
    bars(grid, "gender", p.gender_probs);
    bars(grid, `age group (${age.scheme || ""})`, age.group_probs);
    bars(grid, "ethnicity", p.ethnicity_probs);
    bars(grid, "attributes", p.attributes);
    det.appendChild(grid);
    probs.appendChild(det);
  });
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = url;
  });
}

async function analyse(file) {
  if (!file) return;
  if (limits && file.size > limits.max_upload_bytes) {
    setStatus(`${file.name || "the photo"} is ${(file.size / 1048576).toFixed(1)} MB, over the server's limit of ` +
      `${(limits.max_upload_bytes / 1048576).toFixed(0)} MB.`, "error");
    return;
  }
  setStatus(`Analysing ${file.name || "the photo"}…`, "busy");
  const url = URL.createObjectURL(file);
  const form = new FormData();
  form.append("file", file, file.name || "upload.jpg");
  try {
    const [img, resp] = await Promise.all([loadImage(url).catch(() => null), fetch("v1/predict", {
      method: "POST", body: form,
    })]);
    let j = null;
    try { j = await resp.json(); } catch (e) { j = null; }
    if (!resp.ok) {
      const msg = j && j.error ? `${j.error.message} (${j.error.code}, HTTP ${resp.status})` : `HTTP ${resp.status}`;
      setStatus(`Could not analyse ${file.name || "the photo"}: ${msg}`, "error");
      return;
    }
    $("output").hidden = false;
    if (img) draw(img, j);
    fillTable(j);
    const n = j.people.length;
    setStatus(`${file.name || "photo"}: ${n === 0 ? "nobody found" : n === 1 ? "1 person" : n + " people"} · ` +
      `${j.image.width}×${j.image.height} px · ${j.timing_ms.total.toFixed(0)} ms`, "done");
  } catch (e) {
    setStatus(`Could not reach the server: ${e.message}`, "error");
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}

// ------------------------------------------------------------------------------------------------ camera
async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("No camera access here: browsers allow it only on secure (HTTPS) pages and on localhost.", "error");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (e) {
    setStatus(`The camera could not be opened: ${e.message}`, "error");
    return;
  }
  const v = $("video");
  v.srcObject = stream;
  v.hidden = false;
  await v.play();
  $("camera-start").hidden = true;
  $("camera-shoot").hidden = false;
  $("camera-stop").hidden = false;
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("video").hidden = true;
  $("camera-start").hidden = false;
  $("camera-shoot").hidden = true;
  $("camera-stop").hidden = true;
}

function shoot() {
  const v = $("video");
  if (!v.videoWidth) return;
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  c.toBlob((blob) => analyse(new File([blob], "camera.jpg", { type: "image/jpeg" })), "image/jpeg", 0.92);
}

// ------------------------------------------------------------------------------------------------ wiring
function init() {
  loadInfo();
  $("file").addEventListener("change", (e) => analyse(e.target.files[0]));
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) analyse(item.getAsFile());
  });
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("camera-shoot").addEventListener("click", shoot);
}

document.addEventListener("DOMContentLoaded", init);
