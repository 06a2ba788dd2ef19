// The viewer page: one image in, every model's verdict and map out, side by side. Talks to the
// gateway it was served from (GET /v1/models, POST /v1/explain/stream) and to nothing else;
// the image stays in this page's memory.

import { COLORMAPS, DEFAULT_COLORMAP } from "./colormaps.js";
import { DicomPreviewError, isDicom, readDicom } from "./dicom.js";
import {
  WINDOW_PRESETS, compose, decodeMap, drawColorbar, heatOnPreview, toPreview, windowed,
} from "./render.js";

const $ = (id) => document.getElementById(id);
const state = {
  models: [], file: null, preview: null, previewNote: "", gray: null, window: null,
  results: new Map(), heats: new Map(), tiles: new Map(), seq: 0, startedAt: 0,
  view: { scale: 1, tx: 0, ty: 0 }, answeredAt: new Map(),
};

// -- the gateway ------------------------------------------------------------------------------

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error ? `${body.error.code}: ${body.error.message}` : JSON.stringify(body);
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: authHeaders() });
  if (response.status === 401) {
    $("token-set").hidden = false;
    showMessage("This gateway needs a client token: enter it under Access, then choose the image again.");
    return;
  }
  if (!response.ok) return showMessage(`Cannot list the models: ${await errorText(response)}`);
  state.models = (await response.json()).models;
  hideMessage();
  fillRequestChoices();
  setStatus(`${state.models.length} models served. Choose or drop an image to begin.`);
}

function fillRequestChoices() {
  const methods = [...new Set(state.models.flatMap((m) => m.methods || []))];
  const method = $("method");
  method.replaceChildren(...(methods.length ? methods : ["gradcam"]).map((m) => new Option(m, m)));
  method.value = methods.includes("gradcam") ? "gradcam" : method.options[0].value;
  const classes = state.models.find((m) => m.classes.length)?.classes || [];
  $("target").replaceChildren(
    new Option("positive class", "positive"),
    new Option("predicted class", "predicted"),
    ...classes.map((name, index) => new Option(`${index}: ${name}`, String(index))),
  );
}

function streamUrl() {
  const query = new URLSearchParams({
    models: state.models.map((m) => m.name).join(","),
    methods: $("method").value,
    target: $("target").value,
    normalize: String($("normalize").checked),
  });
  return `/v1/explain/stream?${query}`;
}

async function explain() {
  if (!state.file) return;
  const seq = ++state.seq;
  state.results.clear();
  state.heats.clear();
  state.answeredAt.clear();
  state.startedAt = performance.now();
  buildTiles();
  hideMessage();
  setStatus(`Asking ${state.models.length} models…`, "running");
  let response;
  try {
    response = await fetch(streamUrl(), {
      method: "POST",
      body: state.file.bytes,
      headers: { "Content-Type": "application/octet-stream", ...authHeaders() },
    });
  } catch (error) {
    return failAll(`The gateway did not answer: ${error.message}`);
  }
  if (!response.ok) return failAll(`${state.file.name}: ${await errorText(response)}`, seq);
  await readLines(response, seq, (line) => onResult(JSON.parse(line), seq));
  if (seq === state.seq) finish();
}

async function readLines(response, seq, onLine) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (seq !== state.seq) return reader.cancel();
    buffered += decoder.decode(value || new Uint8Array(), { stream: !done });
    const lines = buffered.split("\n");
    buffered = lines.pop();
    lines.filter((l) => l.trim()).forEach(onLine);
    if (done) return;
  }
}

function failAll(text, seq = state.seq) {
  if (seq !== state.seq) return;
  showMessage(text);
  if (!state.preview) {
    // Nothing to show (not an image): the message alone.
    state.tiles.clear();
    $("grid").replaceChildren();
  }
  for (const [name, tile] of state.tiles) if (name !== "") setTileError(tile, "no answer: see the message above");
  setStatus("No model answered.", "failed");
}

function onResult(body, seq) {
  if (seq !== state.seq) return;
  state.results.set(body.model, body);
  state.answeredAt.set(body.model, performance.now() - state.startedAt);
  const map = body.result?.maps?.[0];
  if (body.status.code === "OK" && map && body.result.geometry) {
    ensurePreview(body.result.geometry);
    if (!isZeroMap(map)) {
      state.heats.set(body.model, heatOnPreview(decodeMap(map), body.result.geometry, state.preview));
    }
  }
  fillTile(state.tiles.get(body.model), body);
  renderAll();
  setStatus(`${state.results.size} of ${state.models.length} models answered…`, "running");
}

function finish() {
  const last = Math.max(0, ...state.answeredAt.values());
  const failed = [...state.results.values()].filter((r) => r.status.code !== "OK").length;
  for (const [name, tile] of state.tiles) {
    if (name && !state.results.has(name)) setTileError(tile, "no answer in the stream");
  }
  const status = $("status");
  status.dataset.lastTileMs = String(Math.round(last));
  setStatus(
    `${state.results.size} models answered (${failed} with an error); last tile ${Math.round(last)} ms after the drop.`,
    "done",
  );
  $("export-png").disabled = $("export-json").disabled = false;
}

// -- the image --------------------------------------------------------------------------------

async function openFile(file) {
  if (!file) return;
  setStatus(`Reading ${file.name}…`, "loading");
  const bytes = new Uint8Array(await file.arrayBuffer());
  state.file = { name: file.name, size: file.size, bytes };
  state.preview = null;
  state.previewNote = "";
  $("export-png").disabled = $("export-json").disabled = true;
  try {
    state.preview = toPreview(isDicom(bytes) ? readDicom(bytes) : await readPicture(file));
  } catch (error) {
    if (!(error instanceof DicomPreviewError) && !(error instanceof PictureError)) throw error;
    state.previewNote = `No preview: ${error.message}.`;
  }
  applyPreset($("preset").value === "manual" ? "file" : $("preset").value);
  await explain();
}

class PictureError extends Error {}

async function readPicture(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new PictureError("the browser cannot read this file as a picture");
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height), ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const values = new Float32Array(bitmap.width * bitmap.height);
  for (let i = 0; i < values.length; i++) {
    values[i] = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
  }
  return { width: bitmap.width, height: bitmap.height, values, window: { center: 127.5, width: 255 }, invert: false };
}

// No preview (e.g. JPEG 2000 pixel data): maps go on a dark film of the image's size.
function ensurePreview(geometry) {
  if (state.preview) return;
  const image = { width: geometry.original_width, height: geometry.original_height, invert: false };
  const preview = toPreview({ ...image, values: new Float32Array(image.width * image.height) });
  state.preview = { ...preview, window: { center: 2, width: 16 } };
  applyPreset("file");
}

function applyPreset(name) {
  if (!state.preview) return;
  state.window = WINDOW_PRESETS[name](state.preview);
  $("preset").value = name;
  $("level").value = round(state.window.center);
  $("width").value = round(state.window.width);
  state.gray = windowed(state.preview, state.window);
  renderAll();
}

function manualWindow() {
  const center = parseFloat($("level").value), width = parseFloat($("width").value);
  if (!state.preview || !Number.isFinite(center) || !(width > 0)) return;
  state.window = { center, width };
  $("preset").value = "manual";
  state.gray = windowed(state.preview, state.window);
  renderAll();
}

// -- tiles ------------------------------------------------------------------------------------

function buildTiles() {
  const grid = $("grid");
  state.tiles.clear();
  grid.replaceChildren();
  const original = newTile("", "Original", describeFile());
  original.querySelector(".verdict").hidden = true;
  original.setAttribute("aria-busy", "false");
  original.querySelector(".note").textContent = state.previewNote;
  for (const model of state.models) {
    const tile = newTile(model.name, model.name, describeModel(model));
    tile.classList.toggle("not-ready", !model.ready);
    tile.querySelector(".badges").replaceChildren(...badges(model));
    tile.querySelector(".note").textContent = "waiting for the model…";
  }
  renderAll();
}

function newTile(key, title, subtitle) {
  const tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.model = key;
  tile.querySelector(".name").textContent = title;
  tile.querySelector(".arch").textContent = subtitle;
  tile.setAttribute("aria-label", key ? `model ${key}` : "original image");
  attachView(tile.querySelector(".frame"));
  $("grid").append(tile);
  state.tiles.set(key, tile);
  return tile;
}

function describeFile() {
  const kb = (state.file.size / 1024).toFixed(0);
  const size = state.preview ? `${state.preview.originalWidth}×${state.preview.originalHeight}` : "";
  return `${state.file.name} · ${kb} KiB ${size ? "· " + size : ""}`;
}

function describeModel(model) {
  const depth = model.depth ? ` · depth ${model.depth}` : "";
  const params = model.parameters ? ` · ${(model.parameters / 1e6).toFixed(1)} M params` : "";
  return `${model.architecture || "not described by its backend"}${depth}${params}`;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

function badges(model) {
  const list = [];
  if (!model.trained) list.push(badge("untrained (random weights)", "untrained"));
  else if (model.trained_on === "phantom (synthetic)") list.push(badge("trained on the synthetic phantom", "phantom"));
  else list.push(badge(`trained on ${model.trained_on || model.weights_source || "?"}`, "trained"));
  if (!model.ready) list.push(badge(`not ready: ${model.detail}`, "warn"));
  return list;
}

function setTileError(tile, text) {
  tile.classList.add("failed");
  tile.setAttribute("aria-busy", "false");
  tile.querySelector(".error").textContent = text;
  tile.querySelector(".note").textContent = "";
}

function fillTile(tile, body) {
  if (!tile) return;
  tile.setAttribute("aria-busy", "false");
  if (body.status.code !== "OK") {
    return setTileError(tile, `${body.status.code} (HTTP ${body.status.http_status}): ${body.status.message}`);
  }
  const result = body.result, p = result.positive_probability, map = result.maps[0];
  const bar = tile.querySelector(".bar");
  bar.setAttribute("aria-valuenow", p.toFixed(3));
  bar.setAttribute("aria-label", `probability ${p.toFixed(3)}, threshold ${result.threshold.toFixed(2)}`);
  bar.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
  bar.querySelector(".threshold").style.left = `${(100 * result.threshold).toFixed(1)}%`;
  tile.querySelector(".label").textContent =
    `${result.label}: p = ${p.toFixed(3)} (threshold ${result.threshold.toFixed(2)})`;
  tile.classList.toggle("positive", result.positive);
  const seen = result.seen_in_training ? "Seen in training: this image is one the model was trained on, not a held-out answer. " : "";
  tile.querySelector(".note").textContent = seen + (map ? mapNote(map) : "no map in the answer");
  tile.querySelector(".timings").textContent = timings(body);
}

// A CAM whose raw range is below this is drawn as nothing and said to be all zero (grad-cam
// divides by max - min + 1e-7, so such a map "normalizes" to values near 0).
const ZERO_MAP_RANGE = 1e-6;

function isZeroMap(map) {
  return map.raw_max - map.raw_min < ZERO_MAP_RANGE;
}

function mapNote(map) {
  const grid = `CAM ${map.method}, grid ${map.shape[0]}×${map.shape[1]}, class ${map.target_class}`;
  if (!isZeroMap(map)) return grid;
  return `${grid}. All-zero map (raw max ${map.raw_max.toPrecision(2)}): the model points nowhere.`;
}

function timings(body) {
  const t = body.result.timings, g = body.gateway_timings;
  const stages = ["decode", "preprocess", "forward_cam", "encode"].map((s) => `${s} ${t[`${s}_ms`].toFixed(0)}`);
  return `ms: ${stages.join(" · ")} · backend ${g.backend_ms.toFixed(0)} · answered after ${Math.round(state.answeredAt.get(body.model))}`;
}

// -- drawing ----------------------------------------------------------------------------------

function look() {
  const normalize = $("normalize").checked;
  let scale = 1;
  if (!normalize) {
    const maxima = [...state.results.values()].map((r) => r.result?.maps?.[0]?.raw_max || 0);
    scale = 1 / Math.max(1e-12, ...maxima);
  }
  return {
    colormap: $("colormap").value,
    opacity: Number($("opacity").value) / 100,
    cutoff: Number($("cutoff").value) / 100,
    contours: $("contours").checked,
    scale,
  };
}

function renderAll() {
  const current = look();
  drawColorbar($("colorbar"), current);
  $("scale-note").textContent = $("normalize").checked
    ? "Maps are min-max normalized per image: 1 = each model's own hottest point."
    : "Raw CAM values on one scale: 1 = the largest raw value among the models.";
  if (!state.preview || !state.gray) return;
  for (const [name, tile] of state.tiles) {
    const canvas = tile.querySelector("canvas");
    if (canvas.width !== state.preview.width || canvas.height !== state.preview.height) {
      canvas.width = state.preview.width;
      canvas.height = state.preview.height;
    }
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(canvas.width, canvas.height);
    const failed = tile.classList.contains("failed");
    compose(image, state.gray, name ? state.heats.get(name) || null : null, { ...current, dim: failed });
    ctx.putImageData(image, 0, 0);
  }
  applyView();
}

// -- synced zoom and pan ----------------------------------------------------------------------

function applyView() {
  const { scale, tx, ty } = state.view;
  for (const tile of state.tiles.values()) {
    tile.querySelector("canvas").style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
  }
}

function zoom(factor, x = 0, y = 0) {
  const v = state.view, next = Math.min(16, Math.max(1, v.scale * factor));
  v.tx = x - ((x - v.tx) * next) / v.scale;
  v.ty = y - ((y - v.ty) * next) / v.scale;
  v.scale = next;
  if (next === 1) v.tx = v.ty = 0;
  applyView();
}

function attachView(frame) {
  frame.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = frame.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  frame.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY };
    frame.setPointerCapture(event.pointerId);
  });
  frame.addEventListener("pointermove", (event) => {
    if (!drag) return;
    state.view.tx += event.clientX - drag.x;
    state.view.ty += event.clientY - drag.y;
    drag = { x: event.clientX, y: event.clientY };
    applyView();
  });
  frame.addEventListener("pointerup", () => { drag = null; });
  frame.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [20, 0], ArrowRight: [-20, 0], ArrowUp: [0, 20], ArrowDown: [0, -20] };
    if (event.key === "+" || event.key === "=") zoom(1.25);
    else if (event.key === "-") zoom(0.8);
    else if (event.key === "0") resetView();
    else if (moves[event.key]) {
      state.view.tx += moves[event.key][0];
      state.view.ty += moves[event.key][1];
      applyView();
    } else return;
    event.preventDefault();
  });
}

function resetView() {
  state.view = { scale: 1, tx: 0, ty: 0 };
  applyView();
}

// -- export -----------------------------------------------------------------------------------

function download(blob, name) {
  const url = URL.createObjectURL(blob), link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function stem() {
  return (state.file?.name || "image").replace(/\.[^.]*$/, "");
}

function exportPng() {
  const tiles = [...state.tiles.entries()], side = 320, caption = 64, columns = Math.min(4, tiles.length);
  const canvas = document.createElement("canvas");
  canvas.width = columns * side;
  canvas.height = Math.ceil(tiles.length / columns) * (side + caption) + 40;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  tiles.forEach(([name, tile], i) => {
    const x = (i % columns) * side, y = Math.floor(i / columns) * (side + caption);
    const source = tile.querySelector("canvas"), k = Math.min(side / source.width, side / source.height);
    ctx.drawImage(source, x + (side - source.width * k) / 2, y, source.width * k, source.height * k);
    ctx.fillStyle = "#eee";
    ctx.font = "14px sans-serif";
    ctx.fillText(tile.querySelector(".name").textContent, x + 6, y + side + 18);
    ctx.font = "12px sans-serif";
    const line = name ? tile.querySelector(".label").textContent || tile.querySelector(".error").textContent : describeFile();
    ctx.fillText(line.slice(0, 52), x + 6, y + side + 36);
    ctx.fillText(tile.querySelector(".note").textContent.slice(0, 52), x + 6, y + side + 52);
  });
  const bar = $("colorbar"), top = canvas.height - 30;
  ctx.drawImage(bar, 6, top, 256, 14);
  ctx.fillStyle = "#eee";
  ctx.fillText(`0 … 1  ${$("colormap").value}, ${$("scale-note").textContent}`, 270, top + 12);
  canvas.toBlob((blob) => download(blob, `${stem()}_viewer.png`), "image/png");
}

function exportJson() {
  const body = {
    image: { name: state.file.name, bytes: state.file.size },
    options: { method: $("method").value, target: $("target").value, normalize: $("normalize").checked },
    models: state.models,
    results: [...state.results.values()],
  };
  download(new Blob([JSON.stringify(body, null, 2)], { type: "application/json" }), `${stem()}_viewer.json`);
}

// -- page -------------------------------------------------------------------------------------

function round(value) {
  return Number(value.toPrecision(6));
}

function setStatus(text, phase = "idle") {
  $("status").textContent = text;
  $("status").dataset.phase = phase;
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

function wire() {
  const colormap = $("colormap");
  colormap.replaceChildren(...Object.keys(COLORMAPS).map((name) => new Option(name, name)));
  colormap.value = DEFAULT_COLORMAP;
  $("file").addEventListener("change", (event) => openFile(event.target.files[0]).catch(report));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    openFile(event.dataTransfer.files[0]).catch(report);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  for (const id of ["opacity", "cutoff", "colormap", "contours"]) $(id).addEventListener("input", onLook);
  for (const id of ["method", "target", "normalize"]) $(id).addEventListener("change", () => explain().catch(report));
  $("preset").addEventListener("change", () => applyPreset($("preset").value));
  for (const id of ["level", "width"]) $(id).addEventListener("change", manualWindow);
  $("zoom-in").addEventListener("click", () => zoom(1.25));
  $("zoom-out").addEventListener("click", () => zoom(0.8));
  $("zoom-reset").addEventListener("click", resetView);
  $("export-png").addEventListener("click", exportPng);
  $("export-json").addEventListener("click", exportJson);
  $("token").addEventListener("change", () => loadModels().catch(report));
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  renderAll();
}

function onLook() {
  $("opacity-out").textContent = `${$("opacity").value} %`;
  $("cutoff-out").textContent = (Number($("cutoff").value) / 100).toFixed(2);
  renderAll();
}

function report(error) {
  showMessage(`Something went wrong in the page: ${error.message}`);
  setStatus("Stopped by an error.", "failed");
}

wire();
loadModels().catch(report);
