// The page of `deepzip export --web`: fetches model.dzip, decodes it with dzip.wasm, and
// classifies the shipped test images and what is drawn on the canvas. What it finds is also
// left in window.dzipPage (status, timings, logits) for tests and for the curious.
import { Dzip } from "./dzip.js";

const $ = (id) => document.getElementById(id);
const fmt = (n, digits = 0) => n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const state = (window.dzipPage = { status: "loading" });

async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url} could not be fetched (HTTP ${r.status}).`);
  return new Uint8Array(await r.arrayBuffer());
}

function argmax(v) {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function softmax(v) {
  const m = Math.max(...v), e = Array.from(v, (z) => Math.exp(z - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((z) => z / s);
}

// One sample as pixels: each channel's value placed within the ink range (background to full
// stroke) that the export measured on the samples.
function paint(canvas, x, shape, ink) {
  const [c, h, w] = shape;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) {
      const ch = c === 3 ? k : 0, v = (x[ch * h * w + i] - ink.lo[ch]) / (ink.hi[ch] - ink.lo[ch] || 1);
      img.data[4 * i + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function header(info, file, t) {
  const ratio = file.denseBytes / file.fileBytes;
  $("title").textContent = `${info.arch ?? info.name}: a ${fmt(file.fileBytes)}-byte network, decoded in this tab`;
  $("sizes").textContent = `${info.name}: ${fmt(file.fileBytes)} bytes, against ${fmt(file.denseBytes)} bytes for ` +
    `the dense model (${fmt(ratio, 1)}× smaller).`;
  $("times").textContent = `WebAssembly compiled in ${fmt(t.compile, 1)} ms; the file decoded by libdzip in ` +
    `${fmt(t.decode, 1)} ms; the weights packed for inference by dzrt in ${fmt(t.init, 1)} ms.`;
  const body = $("tensors").tBodies[0];
  for (const x of file.tensors) {
    const row = body.insertRow();
    const nonzero = x.values && x.encoding === "sparse" ? x.values.reduce((n, v) => n + (v !== 0), 0) : null;
    const kept = x.positions ? `${fmt(x.positions.length)} of ${fmt(x.numel)}, ${x.codebook.length} centroids`
      : nonzero !== null ? `${fmt(nonzero)} of ${fmt(x.numel)}` : `all ${fmt(x.numel)}`;
    for (const v of [x.name, x.shape.join(" × ") || "scalar", x.dtype, x.encoding, kept]) row.insertCell().textContent = v;
  }
  $("tensor-section").hidden = false;
}

async function strip(info, model) {
  if (!info.image) document.querySelector("#strip-section h2").textContent = "Test samples";
  if (!info.samples) {
    $("strip-note").textContent = `No test samples were shipped: ${info.no_samples}.`;
    $("strip-section").hidden = false;
    return;
  }
  const s = info.samples, n = model.inputSize;
  const x = new Float32Array((await bytes(s.file)).buffer);
  if (x.length !== s.count * n) throw new Error(`${s.file} holds ${x.length} values, not ${s.count} samples of ${n}.`);
  const logits = [];
  const t0 = performance.now();
  for (let i = 0; i < s.count; i++) logits.push(Array.from(model.predict(x.subarray(i * n, (i + 1) * n))));
  const ms = performance.now() - t0;
  const top = logits.map(argmax);
  const right = s.labels ? top.filter((p, i) => p === s.labels[i]).length : null;
  for (let i = 0; i < s.count; i++) {
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    if (info.image) paint(canvas, x.subarray(i * n, (i + 1) * n), info.input_shape, info.ink);
    const cap = document.createElement("figcaption");
    cap.textContent = info.classes[top[i]];
    if (s.labels) {
      fig.className = top[i] === s.labels[i] ? "right" : "wrong";
      fig.title = `true: ${info.classes[s.labels[i]]}`;
      if (top[i] !== s.labels[i]) cap.textContent += ` (not ${info.classes[s.labels[i]]})`;
    }
    if (info.image) fig.append(canvas);
    fig.append(cap);
    $("strip").append(fig);
  }
  $("strip-note").textContent = `${s.source[0].toUpperCase()}${s.source.slice(1)}, classified in ${fmt(ms, 1)} ms ` +
    `(${fmt(ms / s.count, 2)} ms each)` + (right === null ? "." : `: ${right} of ${s.count} right.`);
  $("strip-section").hidden = false;
  Object.assign(state, { logits, top1: top, right, inferMs: ms });
}

// The canvas: strokes of light on black, downscaled to the input's size as a browser scales an
// image (area-averaged), each pixel's brightness mapped onto the ink range.
function pad(info, model) {
  const [c, h, w] = info.input_shape;
  const canvas = $("pad"), ctx = canvas.getContext("2d");
  const seen = $("seen"), small = seen.getContext("2d", { willReadFrequently: true });
  seen.width = w;
  seen.height = h;
  const clear = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    small.fillStyle = "#000";
    small.fillRect(0, 0, w, h);
    $("top").replaceChildren();
    state.drawn = null;
  };
  const classify = () => {
    small.imageSmoothingEnabled = true;
    small.imageSmoothingQuality = "high";
    small.drawImage(canvas, 0, 0, w, h);
    const px = small.getImageData(0, 0, w, h).data;
    const x = new Float32Array(c * h * w);
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < h * w; i++) {
        const v = px[4 * i + (c === 3 ? ch : 0)] / 255;
        x[ch * h * w + i] = info.ink.lo[ch] + v * (info.ink.hi[ch] - info.ink.lo[ch]);
      }
    }
    const logits = model.predict(x), p = softmax(logits);
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]).slice(0, 3);
    $("top").replaceChildren(...order.map((k) => {
      const li = document.createElement("li"), bar = document.createElement("span");
      li.textContent = `${info.classes[k]} ${fmt(100 * p[k], 1)} %`;
      bar.style.width = `${Math.round(100 * p[k])}px`;
      li.append(bar);
      return li;
    }));
    state.drawn = { input: Array.from(x), logits: Array.from(logits), top1: order[0] };
  };
  let last = null, queued = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    ctx.strokeStyle = "#fff";
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = canvas.width / w * 2.2;   // about two input pixels wide, as the images' strokes
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
    if (!queued) {
      queued = true;   // at most one inference a frame while drawing
      requestAnimationFrame(() => { queued = false; classify(); });
    }
  });
  const end = () => { if (last) classify(); last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", clear);
  clear();
  $("draw-section").hidden = false;
}

async function main() {
  if (location.protocol === "file:") {
    throw new Error("This page must be served over HTTP (python3 -m http.server -d THIS_FOLDER), since browsers " +
      "run no modules from file:// pages.");
  }
  const info = await (await fetch("page.json")).json();
  let t = performance.now();
  await Dzip.load();
  const compile = performance.now() - t;
  const [data, ops] = await Promise.all([bytes(info.file), bytes(info.ops)]);
  t = performance.now();
  const file = await Dzip.open(data);
  const decode = performance.now() - t;
  t = performance.now();
  const model = await Dzip.model(data, ops);
  const init = performance.now() - t;
  Object.assign(state, { compileMs: compile, decodeMs: decode, initMs: init, fileBytes: file.fileBytes,
    denseBytes: file.denseBytes, tensors: file.tensors.length });
  header(info, file, { compile, decode, init });
  await strip(info, model);
  if (info.image) pad(info, model);
  state.status = document.body.dataset.status = "ready";
}

main().catch((e) => {
  state.error = e.message;
  $("error").textContent = e.message;
  $("error").hidden = false;
  state.status = document.body.dataset.status = "error";
});
