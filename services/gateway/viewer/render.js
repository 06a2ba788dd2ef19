// Pixels: the film at preview size, window / level, each map laid on the film through the
// result's geometry (the letterbox undone), and the blend: a colour map over the gray film,
// heat below the cut-off fully transparent, optional contour lines.

import { COLORMAPS } from "./colormaps.js";

export const PREVIEW_SIDE = 768; // longest side of what is drawn
export const CONTOUR_LEVELS = [0.25, 0.5, 0.75];

const tables = {};
export function colormap(name) {
  if (!tables[name]) {
    const hex = COLORMAPS[name];
    const table = new Uint8Array(hex.length / 2);
    for (let i = 0; i < table.length; i++) table[i] = parseInt(hex.substr(2 * i, 2), 16);
    tables[name] = table;
  }
  return tables[name];
}

// {width, height, values} at full size -> the same at most PREVIEW_SIDE on its longer side
// (box average), with the full size kept in originalWidth / originalHeight.
export function toPreview(image) {
  const factor = Math.max(1, Math.ceil(Math.max(image.width, image.height) / PREVIEW_SIDE));
  const width = Math.ceil(image.width / factor), height = Math.ceil(image.height / factor);
  const sums = new Float64Array(width * height), counts = new Uint32Array(width * height);
  for (let y = 0; y < image.height; y++) {
    const row = Math.floor(y / factor) * width;
    for (let x = 0; x < image.width; x++) {
      const at = row + Math.floor(x / factor);
      sums[at] += image.values[y * image.width + x];
      counts[at] += 1;
    }
  }
  const values = new Float32Array(width * height);
  for (let i = 0; i < values.length; i++) values[i] = sums[i] / counts[i];
  return { ...image, width, height, values, originalWidth: image.width, originalHeight: image.height };
}

export function percentile(values, fraction) {
  const step = Math.max(1, Math.floor(values.length / 20000));
  const sample = [];
  for (let i = 0; i < values.length; i += step) sample.push(values[i]);
  sample.sort((a, b) => a - b);
  return sample[Math.min(sample.length - 1, Math.floor(fraction * sample.length))];
}

// Window presets: name -> (preview) -> {center, width}.
export const WINDOW_PRESETS = {
  file: (p) => p.window || WINDOW_PRESETS.full(p),
  full: (p) => span(percentile(p.values, 0), percentile(p.values, 1)),
  soft: (p) => span(percentile(p.values, 0.01), percentile(p.values, 0.99)),
  contrast: (p) => span(percentile(p.values, 0.05), percentile(p.values, 0.95)),
};
function span(low, high) {
  return { center: (low + high) / 2, width: Math.max(high - low, 1e-6) };
}

// The gray film (0..255 per pixel) under a window.
export function windowed(preview, window) {
  const gray = new Uint8ClampedArray(preview.values.length);
  const low = window.center - window.width / 2;
  for (let i = 0; i < gray.length; i++) {
    const g = ((preview.values[i] - low) / window.width) * 255;
    gray[i] = preview.invert ? 255 - g : g;
  }
  return gray;
}

export function decodeMap(map) {
  const bytes = Uint8Array.from(atob(map.data), (c) => c.charCodeAt(0));
  const [h, w] = map.shape;
  const values = new Float32Array(h * w);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat16 ? view.getFloat16(2 * i, true) : half(view.getUint16(2 * i, true));
  return { width: w, height: h, values };
}

function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// The map sampled (bilinear) at every preview pixel: preview -> original -> input canvas -> map.
export function heatOnPreview(grid, geometry, preview) {
  const out = new Float32Array(preview.width * preview.height);
  const sx = geometry.content_width / preview.width, sy = geometry.content_height / preview.height;
  const kx = grid.width / geometry.input_width, ky = grid.height / geometry.input_height;
  for (let y = 0; y < preview.height; y++) {
    const my = clamp((geometry.pad_top + (y + 0.5) * sy) * ky - 0.5, grid.height - 1);
    const y0 = Math.floor(my), y1 = Math.min(y0 + 1, grid.height - 1), fy = my - y0;
    for (let x = 0; x < preview.width; x++) {
      const mx = clamp((geometry.pad_left + (x + 0.5) * sx) * kx - 0.5, grid.width - 1);
      const x0 = Math.floor(mx), x1 = Math.min(x0 + 1, grid.width - 1), fx = mx - x0;
      const v = grid.values;
      const top = v[y0 * grid.width + x0] * (1 - fx) + v[y0 * grid.width + x1] * fx;
      const bottom = v[y1 * grid.width + x0] * (1 - fx) + v[y1 * grid.width + x1] * fx;
      out[y * preview.width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

function clamp(value, high) {
  return Math.min(Math.max(value, 0), high);
}

// The blend, written into `image` (an ImageData of the preview's size). `heat` is in display
// units (0..1 after `scale`); null draws the film alone.
export function compose(image, gray, heat, look) {
  const { opacity, cutoff, contours, scale } = look;
  const table = colormap(look.colormap), px = image.data, width = image.width;
  const dim = look.dim ? 0.3 : 1; // a failed model's tile: the film dimmed, no heat
  for (let i = 0; i < gray.length; i++) {
    const g = gray[i] * dim, o = 4 * i;
    px[o] = px[o + 1] = px[o + 2] = g;
    px[o + 3] = 255;
    if (!heat) continue;
    const v = Math.min(Math.max(heat[i] * scale, 0), 1);
    if (v < cutoff || v <= 0) continue;
    const c = 3 * Math.round(v * 255);
    px[o] = g + (table[c] - g) * opacity;
    px[o + 1] = g + (table[c + 1] - g) * opacity;
    px[o + 2] = g + (table[c + 2] - g) * opacity;
  }
  if (heat && contours) drawContours(px, heat, scale, width);
}

function level(v) {
  let k = 0;
  for (const l of CONTOUR_LEVELS) if (v >= l) k++;
  return k;
}

function drawContours(px, heat, scale, width) {
  for (let i = 0; i + width + 1 < heat.length; i++) {
    const here = level(heat[i] * scale);
    if (here !== level(heat[i + 1] * scale) || here !== level(heat[i + width] * scale)) {
      px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = 255;
    }
  }
}

// The colour bar: `width` x `height` pixels, cold at the left, the cut-off greyed out.
export function drawColorbar(canvas, look) {
  const ctx = canvas.getContext("2d"), table = colormap(look.colormap);
  for (let x = 0; x < canvas.width; x++) {
    const v = x / (canvas.width - 1), c = 3 * Math.round(v * 255);
    ctx.fillStyle = v < look.cutoff ? "#555" : `rgb(${table[c]},${table[c + 1]},${table[c + 2]})`;
    ctx.fillRect(x, 0, 1, canvas.height);
  }
}
