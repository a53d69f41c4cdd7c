// The page: a drawing pad whose strokes go to /api/runs/ID/draw as PNG while you draw (one request in flight at a
// time, the newest drawing next), and an upload form for /api/runs/ID/predict. No libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let drawRun = null;
let limits = { max_body_bytes: 8 * 1024 * 1024, max_pixels: 16e6 };

// The API's errors carry a stable code; the page says what happened in a person's words. The API's own line stays
// in the message's tooltip, for whoever debugs it.
const PHRASES = {
  unsupported_type: () => "That file is not a PNG or JPEG image. Choose a .png or .jpg file.",
  too_large: () => `That image is too large: the limit is ${Math.floor(limits.max_body_bytes / 2 ** 20)} MB and ` +
    `${Math.round(limits.max_pixels / 1e6)} megapixels. Choose a smaller image or resize it.`,
  unreadable_image: () => "That file could not be read as an image: it may be damaged, or not really a PNG or " +
    "JPEG. Try another file.",
  empty_body: () => "That file is empty. Choose an image file.",
  too_little_ink: () => "Too small to read: draw a larger digit, filling most of the box.",
  unknown_run: () => "That run is no longer loaded. Reload the page.",
  not_drawable: () => "This run does not read drawings; use the upload panel.",
  offline: () => "The server did not answer. Is milestones serve still running?",
};

class ApiFailure extends Error {
  constructor(code, status, detail) {
    super(detail);
    this.code = code;
    this.status = status;
  }
}

function plainWords(err) {
  const phrase = PHRASES[err.code];
  return phrase ? phrase() : `Something went wrong on the server (HTTP ${err.status || "?"}); its log says why.`;
}

function showMessage(id, err) {  // err: an ApiFailure, or null to hide
  const el = $(id);
  el.textContent = err ? plainWords(err) : "";
  el.title = err ? err.message : "";
  el.dataset.code = err ? err.code : "";
  el.hidden = !err;
}

function showError(err) {
  showMessage("error", err);
}

async function callApi(url, options) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (err) {
    throw new ApiFailure("offline", 0, String(err));
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiFailure(body.code || "http_error", res.status, body.error || `HTTP ${res.status}`);
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

// Softmax models: ten probabilities. The paper's LeNet-5: its RBF layer's ten squared distances, smaller is closer,
// since a softmax over them reads ~100% for the closest class whatever was drawn.
function showScores(classes, r) {
  const table = $("scores");
  table.textContent = "";
  const distances = r.output === "distances";
  const values = distances ? r.distances : r.probs;
  const longest = Math.max(...values, 1e-12);
  classes.forEach((name, i) => {
    const row = table.insertRow();
    row.dataset.cls = name;
    if (name === r.prediction) row.className = "top";
    row.insertCell().textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.round(150 * (distances ? values[i] / longest : values[i]))}px`;
    row.insertCell().appendChild(bar);
    row.insertCell().textContent = distances ? values[i].toFixed(1) : `${(100 * values[i]).toFixed(1)}%`;
  });
  table.dataset.output = r.output;
  $("scores-kind").textContent = distances
    ? "squared distance to each digit's prototype (smaller = closer)" : "softmax probability";
  const note = $("score-note");
  note.hidden = !distances;
  if (distances) {
    const order = values.map((d, i) => [d, i]).sort((a, b) => a[0] - b[0]);
    const gap = order[1][0] - order[0][0];
    note.textContent = `This is the paper's output layer: the closest prototype wins. The next closest, ` +
      `${classes[order[1][1]]}, is ${gap.toFixed(1)} further. A softmax over distances turns any gap above ` +
      "about 7 into 99.9% or more, right or wrong, so no percentages are shown.";
  }
}

function resetAnswer() {  // the empty state: no class, no scores, no input, no maps
  $("prediction").textContent = "-";
  $("scores").textContent = "";
  $("scores-kind").textContent = "";
  $("score-note").hidden = true;
  const seen = $("seen");
  seen.width = seen.height = 32;  // resizing a canvas blanks it
  for (const id of ["c1", "c3"]) {
    $(id).textContent = "";
    $(id).dataset.drawn = "0";
  }
}

// Drawing pad: pointer events cover mouse, pen and touch alike.
const pad = $("pad");
const ctx = pad.getContext("2d");
let drawing = false, last = null, dirty = false, inFlight = false, strokes = 0, answers = 0, epoch = 0;

function setBusy(busy) {  // exposed for tests and assistive tools: is an answer on its way, and how many came
  inFlight = busy;
  document.body.dataset.busy = busy ? "1" : "0";
  document.body.dataset.answers = String(answers);
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  strokes = 0;
  epoch++;  // an answer still on its way is for the old drawing: dropped
  resetAnswer();
  showMessage("draw-message", null);
  showError(null);
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
  const sent = epoch;
  try {
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    let r = null, refused = null;
    try {
      r = await callApi(`/api/runs/${encodeURIComponent(drawRun.id)}/draw`,
        { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
    } catch (err) {
      if (err.code !== "too_little_ink") throw err;
      refused = err;  // a dot or a scribble: an answer, but no class
    }
    if (sent !== epoch) return;
    answers++;
    showMessage("draw-message", refused);
    showError(null);
    if (refused) {
      resetAnswer();
      return;
    }
    $("prediction").textContent = r.prediction;
    showScores(drawRun.classes, r);
    const [h, w] = r.input.shape;
    paintGrey($("seen"), bytesOf(r.input.data), 0, h, w);
    showMaps($("c1"), r.features.c1);
    showMaps($("c3"), r.features.c3);
  } catch (err) {
    if (sent === epoch) showError(err);
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
  // the answer for another image must not stay beside this one
  $("top5").textContent = "";
  $("top5-kind").textContent = "";
  $("method").textContent = "";
  $("overlay").hidden = true;
  showMessage("upload-message", null);
  try {
    if (file.size > limits.max_body_bytes) throw new ApiFailure("too_large", 0, `${file.size} bytes, not sent`);
    const r = await callApi(`/api/runs/${encodeURIComponent(id)}/predict`,
      { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
    const distances = r.output === "distances";
    const list = $("top5");
    for (const t of r.top) {
      const li = document.createElement("li");
      li.textContent = distances ? `${t.class}: ${t.distance.toFixed(1)}` : `${t.class}: ${(100 * t.prob).toFixed(1)}%`;
      list.appendChild(li);
    }
    $("top5-kind").textContent = distances ? "the five closest prototypes: squared distance, smaller = closer " +
      "(LeNet-5's RBF output; a softmax over it would read ~100% for the closest, so none is shown)" : "";
    $("method").textContent = r.method ? `overlay: ${r.method} for the top class` : "no overlay for this model";
    $("overlay").src = r.overlay;
    $("overlay").hidden = false;
  } catch (err) {
    showMessage("upload-message", err);
  }
});

async function init() {
  clearPad();
  try {
    const answer = await callApi("/api/runs");
    const runs = answer.runs;
    limits = answer.limits || limits;
    drawRun = runs.find((r) => r.drawable) || null;
    $("no-lenet").hidden = Boolean(drawRun);
    $("draw-run").textContent = drawRun ? `run ${drawRun.id}: ${drawRun.model} trained on ${drawRun.data}` : "";
    const select = $("run-select");
    for (const r of runs) select.add(new Option(`${r.id} (${r.model}, ${r.data})`, r.id));
    $("upload-panel").dataset.runs = String(runs.length);
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(err);
  }
}
init();
