// Reads a DICOM Part 10 file's pixels in the browser, for display only (the models decode the
// file themselves, on the server). Native (uncompressed) little-endian and RLE Lossless pixel
// data, one sample per pixel; anything else raises DicomPreviewError naming what it is.

export class DicomPreviewError extends Error {}

const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const IMPLICIT_LE = "1.2.840.10008.1.2";
const RLE = "1.2.840.10008.1.2.5";
const SYNTAX_NAMES = {
  "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
  "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
  "1.2.840.10008.1.2.4.50": "JPEG Baseline",
  "1.2.840.10008.1.2.4.51": "JPEG Extended",
  "1.2.840.10008.1.2.4.57": "JPEG Lossless",
  "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
  "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
  "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
  "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
  "1.2.840.10008.1.2.4.91": "JPEG 2000",
};
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const UNDEFINED = 0xffffffff;
// The tags read, and their VR when the transfer syntax does not say it (implicit VR).
const WANTED = {
  "00020010": "UI", "00280002": "US", "00280004": "CS", "00280008": "IS", "00280010": "US",
  "00280011": "US", "00280100": "US", "00280101": "US", "00280103": "US", "00281050": "DS",
  "00281051": "DS", "00281052": "DS", "00281053": "DS", "7fe00010": "OW",
};

export function isDicom(bytes) {
  return bytes.length > 132 && String.fromCharCode(...bytes.subarray(128, 132)) === "DICM";
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 132;
    this.explicit = true;
  }
  u16() { const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  u32() { const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  done() { return this.pos + 8 > this.bytes.length; }

  // One element header: {tag, vr, length}; the reader stands at the value.
  header() {
    const group = this.u16(), element = this.u16();
    const tag = group.toString(16).padStart(4, "0") + element.toString(16).padStart(4, "0");
    if (group === 0xfffe) return { tag, vr: "", length: this.u32() };
    if (!this.explicit && group !== 0x0002) return { tag, vr: WANTED[tag] || "UN", length: this.u32() };
    const vr = String.fromCharCode(this.bytes[this.pos], this.bytes[this.pos + 1]);
    this.pos += 2;
    if (LONG_VRS.has(vr)) { this.pos += 2; return { tag, vr, length: this.u32() }; }
    return { tag, vr, length: this.u16() };
  }

  // Skips an undefined-length value (a sequence): items until the sequence delimiter.
  skipUndefined() {
    while (!this.done()) {
      const item = this.header();
      if (item.tag === "fffee0dd") return;
      if (item.length !== UNDEFINED) { this.pos += item.length; continue; }
      this.skipItem();
    }
  }
  skipItem() {
    while (!this.done()) {
      const inner = this.header();
      if (inner.tag === "fffee00d") return;
      if (inner.length === UNDEFINED) this.skipUndefined(); else this.pos += inner.length;
    }
  }
  // Encapsulated pixel data: the fragments after the offset table, joined.
  fragments() {
    const parts = [];
    let first = true;
    while (!this.done()) {
      const item = this.header();
      if (item.tag === "fffee0dd") break;
      if (!first) parts.push(this.bytes.subarray(this.pos, this.pos + item.length));
      first = false;
      this.pos += item.length;
    }
    return parts;
  }
}

function text(bytes) {
  return String.fromCharCode(...bytes).replace(/[\0 ]+$/, "").trim();
}

function elements(bytes) {
  const reader = new Reader(bytes), found = {};
  while (!reader.done()) {
    const { tag, vr, length } = reader.header();
    if (tag === "7fe00010") {
      found.pixels = length === UNDEFINED ? { fragments: reader.fragments() }
        : { native: bytes.subarray(reader.pos, reader.pos + length) };
      break;
    }
    if (length === UNDEFINED) { reader.skipUndefined(); continue; }
    if (tag in WANTED) {
      const value = bytes.subarray(reader.pos, reader.pos + length);
      found[tag] = vr === "US" ? reader.view.getUint16(reader.pos, true) : text(value);
    }
    reader.pos += length;
    if (tag === "00020010") reader.explicit = found[tag] !== IMPLICIT_LE;
  }
  return found;
}

function decodePackBits(source, out, offset, stride) {
  let i = 0, o = offset;
  while (i < source.length && o < out.length) {
    const n = (source[i++] << 24) >> 24;
    if (n >= 0) {
      for (let k = 0; k <= n; k++, o += stride) out[o] = source[i++];
    } else if (n !== -128) {
      const value = source[i++];
      for (let k = 0; k < 1 - n; k++, o += stride) out[o] = value;
    }
  }
}

// RLE Lossless frame -> little-endian sample bytes (segments are most significant byte first).
function decodeRle(frame, count, bytesPerSample) {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== bytesPerSample) {
    throw new DicomPreviewError(`RLE with ${segments} segments is not a gray image`);
  }
  const out = new Uint8Array(count * bytesPerSample);
  for (let s = 0; s < segments; s++) {
    const start = view.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? view.getUint32(8 + 4 * s, true) : frame.length;
    decodePackBits(frame.subarray(start, end), out, bytesPerSample - 1 - s, bytesPerSample);
  }
  return out;
}

function sampleBytes(found, syntax, count, bytesPerSample) {
  if (syntax === RLE && found.pixels.fragments) {
    const parts = found.pixels.fragments, frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) { frame.set(part, at); at += part.length; }
    return decodeRle(frame, count, bytesPerSample);
  }
  if ((syntax === EXPLICIT_LE || syntax === IMPLICIT_LE) && found.pixels.native) {
    return found.pixels.native;
  }
  const name = SYNTAX_NAMES[syntax] || syntax;
  throw new DicomPreviewError(`the browser cannot show ${name} pixel data (the models can read it)`);
}

function samples(bytes, count, bits, stored, signed) {
  if (bytes.length < count * (bits / 8)) throw new DicomPreviewError("pixel data is truncated");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(count), mask = 2 ** stored - 1, sign = 2 ** (stored - 1);
  for (let i = 0; i < count; i++) {
    let v = bits === 8 ? bytes[i] : view.getUint16(2 * i, true);
    v &= mask;
    values[i] = signed && v >= sign ? v - 2 * sign : v;
  }
  return values;
}

function firstNumber(value, fallback) {
  const n = parseFloat(String(value ?? "").split("\\")[0]);
  return Number.isFinite(n) ? n : fallback;
}

// {width, height, values (modality units, row-major), window: {center, width} | null, invert}
export function readDicom(bytes) {
  const found = elements(bytes);
  const syntax = found["00020010"] || EXPLICIT_LE;
  const [rows, cols] = [found["00280010"], found["00280011"]];
  const bits = found["00280100"], photometric = found["00280004"] || "MONOCHROME2";
  if (!found.pixels || !rows || !cols) throw new DicomPreviewError("the file has no image pixels");
  if ((found["00280002"] || 1) !== 1 || !photometric.startsWith("MONOCHROME")) {
    throw new DicomPreviewError(`the preview shows gray images only, not ${photometric}`);
  }
  if (bits !== 8 && bits !== 16) throw new DicomPreviewError(`${bits}-bit pixels are not shown`);
  const count = rows * cols;
  const raw = sampleBytes(found, syntax, count, bits / 8);
  const values = samples(raw, count, bits, found["00280101"] || bits, found["00280103"] === 1);
  const slope = firstNumber(found["00281053"], 1), intercept = firstNumber(found["00281052"], 0);
  if (slope !== 1 || intercept !== 0) for (let i = 0; i < count; i++) values[i] = values[i] * slope + intercept;
  const center = firstNumber(found["00281050"], NaN), width = firstNumber(found["00281051"], NaN);
  const window = Number.isFinite(center) && width > 0 ? { center, width } : null;
  return { width: cols, height: rows, values, window, invert: photometric === "MONOCHROME1" };
}
