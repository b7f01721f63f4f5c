// dermoseg web page: sends the chosen image to POST /v1/analyze and shows what comes back. Plain JavaScript,
// no build step, nothing loaded from elsewhere. Every number shown is the API's own value (no recomputation).
"use strict";

const CLASS_NAMES = {
  MEL: "Melanoma", NV: "Melanocytic nevus", BCC: "Basal cell carcinoma", AKIEC: "Actinic keratosis / Bowen's",
  BKL: "Benign keratosis", DF: "Dermatofibroma", VASC: "Vascular lesion",
};
const $ = (id) => document.getElementById(id);
let limits = null;       // from GET /health: max_upload_bytes, max_pixels
let photoUrl = null;     // object URL of the chosen file
let busy = false;

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function setStatus(text) { $("status").textContent = text; }

function fmt(value, digits) {
  if (value === null || value === undefined || value === "") return "–";
  return typeof value === "number" ? value.toFixed(digits) : String(value);
}

function megabytes(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

// Plain words for every way a request can fail.
function explain(status, detail) {
  const reason = detail ? ` (${detail})` : "";
  switch (status) {
    case 401: return "This server needs an access token. Enter it under Options and try again.";
    case 408: return "The upload stalled before the whole image arrived. Please check the connection and try again.";
    case 413: return "This image is too large for the server" + reason + ".";
    case 415: return "This file is not an image the server can read. Please choose a JPEG, PNG, BMP, TIFF or WebP image.";
    case 422: return "The image could not be read: the file may be empty or damaged" + reason + ".";
    case 503: return "The server is busy with other images. Please try again in a few seconds.";
    default: return `Something went wrong on the server (error ${status}). Please try again; if it happens again, tell the person who runs it.`;
  }
}

async function loadLimits() {
  try {
    const response = await fetch("/health");
    if (response.ok) limits = await response.json();
  } catch (e) { /* the upload itself will report an unreachable server */ }
}

function toggleView(mask) {
  $("show-overlay").setAttribute("aria-pressed", String(!mask));
  $("show-mask").setAttribute("aria-pressed", String(mask));
  $("mask-image").setAttribute("visibility", mask ? "visible" : "hidden");
  $("photo").setAttribute("visibility", mask ? "hidden" : "visible");
  $("outline").setAttribute("visibility", mask ? "hidden" : "visible");
}

function drawChart(diagnosis) {
  const chart = $("chart");
  chart.replaceChildren();
  for (const cls of diagnosis.classes) {
    const p = diagnosis.probabilities[cls];
    const row = document.createElement("div");
    row.className = "bar-row" + (cls === diagnosis.top_class ? " top" : "");
    row.setAttribute("role", "listitem");
    row.dataset.class = cls;
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = `${CLASS_NAMES[cls] || cls} (${cls})`;
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "block";
    bar.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = (100 * p).toFixed(1) + " %";
    row.append(label, track, value);
    chart.appendChild(row);
  }
  $("disclaimer").textContent = diagnosis.disclaimer;
}

function show(result) {
  const m = result.measurements;
  const { width, height } = result.image;
  const view = $("view");
  view.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (const id of ["photo", "mask-image"]) {
    $(id).setAttribute("width", width);
    $(id).setAttribute("height", height);
  }
  const maskUrl = "data:image/png;base64," + result.mask_png;
  $("photo").setAttribute("href", photoUrl);
  $("mask-image").setAttribute("href", maskUrl);
  const points = result.contour;
  $("outline").setAttribute("d", points.length ? "M" + points.map((p) => `${p[0]},${p[1]}`).join("L") + "Z" : "");
  toggleView(false);

  $("area-px").textContent = String(m.lesion_area_px);
  $("area-pct").textContent = fmt(m.lesion_area_pct, 2);
  $("area-mm").textContent = m.area_mm2 === null ? "" : ` = ${fmt(m.area_mm2, 2)} mm²`;
  $("image-size").textContent = `${width} × ${height} px`;
  $("bbox").textContent = m.lesion_area_px ? `${m.bbox_x}, ${m.bbox_y}, ${m.bbox_width}, ${m.bbox_height} px` : "–";
  $("diameter").textContent = m.diameter_px === null ? "–"
    : `${fmt(m.diameter_px, 1)} px` + (m.diameter_mm === null ? " (give the pixel size under Options for mm)" : ` = ${fmt(m.diameter_mm, 2)} mm`);
  $("asymmetry").textContent = m.asymmetry_major === null ? "–" : `${fmt(m.asymmetry_major, 3)}, ${fmt(m.asymmetry_minor, 3)}`;
  $("compactness").textContent = fmt(m.compactness, 3);
  $("colours").textContent = m.colours.length ? `${m.colours.length}: ${m.colours.join(", ").replaceAll("_", " ")}` : "none";
  $("probability").textContent = fmt(result.mean_lesion_probability, 3);
  $("model-note").textContent = `Model ${result.model.name} (sha256 ${result.model.sha256.slice(0, 12)}…), ${fmt(result.seconds, 2)} s.`;

  $("warning").hidden = !result.warning;
  $("warning").textContent = result.warning ? "Check this result: " + result.warning + "." : "";
  const quality = result.quality;
  $("quality").hidden = !quality;
  $("quality").textContent = quality ? "Mask quality (estimated Jaccard): " + (quality.message || JSON.stringify(quality)) : "";

  const stem = result.image.image_id;
  $("download-mask").href = maskUrl;
  $("download-mask").download = `${stem}_segmentation.png`;
  const csvUrl = URL.createObjectURL(new Blob([result.csv], { type: "text/csv" }));
  $("download-csv").href = csvUrl;
  $("download-csv").download = `${stem}_results.csv`;

  drawChart(result.diagnosis);
  $("result").hidden = false;
}

async function analyze(file) {
  if (busy) return;
  showError("");
  if (!file) return;
  if (limits && file.size > limits.max_upload_bytes) {
    showError(`This image is too large: ${megabytes(file.size)}; the server accepts up to ${megabytes(limits.max_upload_bytes)}.`);
    return;
  }
  if (file.size === 0) {
    showError("This file is empty (0 bytes). Please choose another image.");
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("threshold", $("threshold").value || "0.5");
  if ($("mm").value) form.append("mm_per_pixel", $("mm").value);
  const headers = {};
  if ($("token").value) headers.Authorization = "Bearer " + $("token").value;

  busy = true;
  setStatus(`Analysing ${file.name}…`);
  try {
    const response = await fetch("/v1/analyze", { method: "POST", body: form, headers });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      if (response.status === 401) $("options").open = true;
      showError(explain(response.status, body && body.detail));
      setStatus("");
      return;
    }
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    $("photo-note").hidden = true;
    show(body);
    setStatus(`${file.name}: done.`);
  } catch (e) {
    showError("Could not reach the dermoseg server. Is it still running?");
    setStatus("");
  } finally {
    busy = false;
  }
}

$("file").addEventListener("change", (event) => { const file = event.target.files[0]; event.target.value = ""; analyze(file); });
$("show-overlay").addEventListener("click", () => toggleView(false));
$("show-mask").addEventListener("click", () => toggleView(true));
$("photo").addEventListener("error", () => { $("photo-note").hidden = false; toggleView(true); });
const drop = $("drop");
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => analyze(e.dataTransfer.files[0]));
// A file dropped outside the box must not replace the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
loadLimits();
