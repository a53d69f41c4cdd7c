// The page: a drawing pad whose strokes go to /api/runs/ID/draw as PNG while you draw (one request in flight at a
// time, the newest drawing next), and an upload form for /api/runs/ID/predict. No libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let drawRun = null;

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function callApi(url, options) {
  const res = await fetch(url, options);
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function bytesOf(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// Paint one grey map (h*w bytes starting at offset) onto a canvas.
function paintGrey(canvas, bytes, offset, h, w) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = bytes[offset + i];
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function showMaps(container, payload) {
  const [c, h, w] = payload.shape;
  const bytes = bytesOf(payload.data);
  while (container.children.length < c) container.appendChild(document.createElement("canvas"));
  while (container.children.length > c) container.lastChild.remove();
  for (let k = 0; k < c; k++) paintGrey(container.children[k], bytes, k * h * w, h, w);
  container.dataset.drawn = String(c);
}

function showScores(classes, probs, prediction) {
  const table = $("scores");
  table.textContent = "";
  classes.forEach((name, i) => {
    const row = table.insertRow();
    row.dataset.cls = name;
    if (name === prediction) row.className = "top";
    row.insertCell().textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.round(150 * probs[i])}px`;
    row.insertCell().appendChild(bar);
    row.insertCell().textContent = `${(100 * probs[i]).toFixed(1)}%`;
  });
}

// Drawing pad: pointer events cover mouse, pen and touch alike.
const pad = $("pad");
const ctx = pad.getContext("2d");
let drawing = false, last = null, dirty = false, inFlight = false, strokes = 0, answers = 0;

function setBusy(busy) {  // exposed for tests and assistive tools: is an answer on its way, and how many came
  inFlight = busy;
  document.body.dataset.busy = busy ? "1" : "0";
  document.body.dataset.answers = String(answers);
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  strokes = 0;
  $("prediction").textContent = "-";
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}

function line(a, b) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 18;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  last = point(e);
  line(last, last);
  strokes++;
  schedule();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e);
  line(last, p);
  last = p;
  schedule();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => { drawing = false; schedule(); });
}
$("clear").addEventListener("click", clearPad);

function schedule() {
  dirty = true;
  if (!inFlight && drawRun && strokes) send();
}

async function send() {
  dirty = false;
  setBusy(true);
  try {
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const r = await callApi(`/api/runs/${encodeURIComponent(drawRun.id)}/draw`,
      { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
    if (!strokes) return;  // cleared while the answer was on its way
    $("prediction").textContent = r.prediction;
    showScores(drawRun.classes, r.probs, r.prediction);
    const [h, w] = r.input.shape;
    paintGrey($("seen"), bytesOf(r.input.data), 0, h, w);
    showMaps($("c1"), r.features.c1);
    showMaps($("c3"), r.features.c3);
    answers++;
    showError("");
  } catch (err) {
    showError(err.message);
  } finally {
    if (dirty && strokes) send();
    else setBusy(false);
  }
}

// Upload: any loaded run, top-5 and the overlay of where it looked.
$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  const id = $("run-select").value;
  if (!file || !id) return;
  try {
    const r = await callApi(`/api/runs/${encodeURIComponent(id)}/predict`,
      { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
    const list = $("top5");
    list.textContent = "";
    for (const t of r.top) {
      const li = document.createElement("li");
      li.textContent = `${t.class}: ${(100 * t.prob).toFixed(1)}%`;
      list.appendChild(li);
    }
    $("method").textContent = r.method ? `overlay: ${r.method} for the top class` : "no overlay for this model";
    $("overlay").src = r.overlay;
    $("overlay").hidden = false;
    showError("");
  } catch (err) {
    showError(err.message);
  }
});

async function init() {
  clearPad();
  try {
    const { runs } = await callApi("/api/runs");
    drawRun = runs.find((r) => r.drawable) || null;
    $("no-lenet").hidden = Boolean(drawRun);
    $("draw-run").textContent = drawRun ? `run ${drawRun.id}: ${drawRun.model} trained on ${drawRun.data}` : "";
    const select = $("run-select");
    for (const r of runs) select.add(new Option(`${r.id} (${r.model}, ${r.data})`, r.id));
    $("upload-panel").dataset.runs = String(runs.length);
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(err.message);
  }
}
init();
