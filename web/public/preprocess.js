// MNIST-style preprocessing of a drawing, in the page: the same steps, thresholds and arithmetic as the Python
// function edgeport.core.images.mnist_preprocess. The steps are documented once, in the docstring of
// edgeport/core/images.py (grayscale; invert when the border is light; remove the background; stretch contrast;
// crop to the ink; Lanczos-resize the longest side to 20 px; paste into 28x28 centred on the centre of mass).
// Then the model's own normalisation, (x / 255 - mean) / std (toModelInput here, Model.prepare in Python).
//
// Hand-written rather than canvas drawImage: the browser's canvas scaling is not specified exactly, so it
// could not match the Python side. Pillow's 8-bit Lanczos resample (libImaging/Resample.c: double
// coefficients normalised, rounded to 22-bit fixed point, two passes in the order Pillow 13 picks, each
// clipped to 0..255) is reproduced step by step, so both sides give the same uint8 28x28 image; tests/web
// checks it on drawn digits (a Pillow that changes its resampler would show up there).

export const SIZE = 28; // output side (MNIST)
export const BOX = 20; // the ink's longest side after scaling
const LIGHT_BACKGROUND = 127; // border median above this: dark ink on a light page, invert
const MIN_INK = 32; // brightest pixel after background removal below this: blank, nothing to classify
const INK_THRESHOLD = 64; // after the contrast stretch, pixels at or above this are ink (for the crop)

/** Step 1: RGBA bytes (ImageData.data), composited on white -> Pillow "L" luma (uint8). The page's pad is
 * opaque (filled white), so the compositing, a plain alpha blend here, is exact only for opaque pixels. */
export function toGray(rgba, width, height) {
  const g = new Uint8Array(width * height);
  for (let i = 0; i < g.length; i++) {
    const a = rgba[4 * i + 3];
    const over = (c) => (a === 255 ? c : Math.round((c * a + 255 * (255 - a)) / 255)); // onto a white page
    const r = over(rgba[4 * i]), gr = over(rgba[4 * i + 1]), b = over(rgba[4 * i + 2]);
    g[i] = (r * 19595 + gr * 38470 + b * 7471 + 0x8000) >> 16; // Pillow's L24: 0.299 R + 0.587 G + 0.114 B
  }
  return g;
}

/** numpy's median: the mean of the two middle values for an even count. */
function median(values) {
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** numpy's rint / Python's round: halves go to the even neighbour. */
function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------- Pillow's Lanczos resample, 8-bit
const PRECISION_BITS = 32 - 8 - 2;

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0); // support 3

/** precompute_coeffs + normalize_coeffs_8bpc: per output pixel [first input index, count, int weights]. */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 3 * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      k.push(w);
      ww += w;
    }
    const fixed = k.map((w) => {
      const v = ww !== 0 ? w / ww : w;
      return v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    });
    out.push([xmin, xmax, fixed]);
  }
  return out;
}

function clip8(ss) {
  if (ss >= 2 ** (PRECISION_BITS + 8)) return 255;
  if (ss <= 0) return 0;
  return Math.floor(ss / 2 ** PRECISION_BITS);
}

function horizontalPass(img, w, h, dw) {
  const cs = coefficients(w, dw);
  const out = new Uint8Array(dw * h);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < dw; xx++) {
      const [xmin, n, k] = cs[xx];
      let ss = 1 << (PRECISION_BITS - 1);
      for (let x = 0; x < n; x++) ss += img[y * w + x + xmin] * k[x];
      out[y * dw + xx] = clip8(ss);
    }
  }
  return out;
}

function verticalPass(img, w, h, dh) {
  const cs = coefficients(h, dh);
  const out = new Uint8Array(w * dh);
  for (let yy = 0; yy < dh; yy++) {
    const [ymin, n, k] = cs[yy];
    for (let x = 0; x < w; x++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < n; y++) ss += img[(y + ymin) * w + x] * k[y];
      out[yy * w + x] = clip8(ss);
    }
  }
  return out;
}

/** Image.resize((dw, dh), LANCZOS) of a uint8 (sh, sw) image, passes in Pillow's order (ImagingResampleInner:
 * vertical first when the height shrinks by more than twice as many pixels as the width, else horizontal). */
function resizeLanczos(src, sw, sh, dw, dh) {
  const horizontalFirst = !(sh - dh > 0 && sh - dh > (sw - dw) * 2);
  let img = src;
  if (horizontalFirst) {
    if (dw !== sw) img = horizontalPass(img, sw, sh, dw);
    if (dh !== sh) img = verticalPass(img, dw, sh, dh);
  } else {
    if (dh !== sh) img = verticalPass(img, sw, sh, dh);
    if (dw !== sw) img = horizontalPass(img, sw, dh, dw);
  }
  return img;
}

// ---------------------------------------------------------------- the steps
/**
 * Steps 1-7: an RGBA drawing -> {image: Uint8Array(28 * 28), light ink on dark, inverted}, or null when the
 * drawing has no ink (the Python side raises InputError there).
 */
export function mnistPreprocess(rgba, width, height, size = SIZE, box = BOX) {
  const gray = toGray(rgba, width, height);
  const border = [];
  for (let x = 0; x < width; x++) border.push(gray[x], gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(gray[y * width], gray[y * width + width - 1]);
  const inverted = median(border) > LIGHT_BACKGROUND; // step 2
  const bg = Math.trunc(median(inverted ? border.map((v) => 255 - v) : border));
  const x = new Int32Array(gray.length);
  let peak = 0;
  for (let i = 0; i < x.length; i++) { // step 3: background to 0
    const v = Math.min(255, Math.max(0, (inverted ? 255 - gray[i] : gray[i]) - bg));
    x[i] = v;
    if (v > peak) peak = v;
  }
  if (peak < MIN_INK) return null;
  const factor = 255 / peak;
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  const stretched = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) { // step 4: contrast; step 5: the ink's bounding box
    const v = roundHalfEven(x[i] * factor);
    stretched[i] = v;
    if (v >= INK_THRESHOLD) {
      const px = i % width, py = (i - px) / width;
      if (px < x0) x0 = px;
      if (px > x1) x1 = px;
      if (py < y0) y0 = py;
      if (py > y1) y1 = py;
    }
  }
  const cw = x1 - x0 + 1, ch = y1 - y0 + 1;
  const crop = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) for (let c = 0; c < cw; c++) crop[y * cw + c] = stretched[(y0 + y) * width + x0 + c];
  const scale = box / Math.max(ch, cw); // step 6
  const nh = Math.max(1, roundHalfEven(ch * scale)), nw = Math.max(1, roundHalfEven(cw * scale));
  const digit = resizeLanczos(crop, cw, ch, nw, nh);
  let mass = 0, my = 0, mx = 0;
  for (let y = 0; y < nh; y++) {
    for (let c = 0; c < nw; c++) { const v = digit[y * nw + c]; mass += v; my += v * y; mx += v * c; }
  }
  if (mass <= 0) return null;
  const cy = my / mass, cx = mx / mass; // step 7
  const top = Math.min(Math.max(roundHalfEven(size / 2 - cy), 0), size - nh);
  const left = Math.min(Math.max(roundHalfEven(size / 2 - cx), 0), size - nw);
  const image = new Uint8Array(size * size);
  for (let y = 0; y < nh; y++) for (let c = 0; c < nw; c++) image[(top + y) * size + left + c] = digit[y * nw + c];
  return { image, inverted, box: [x0, y0, x1 + 1, y1 + 1] };
}

/** The model's float32 input, (x / 255 - mean) / std, each step rounded to float32 as numpy does it. */
export function toModelInput(pixels, mean = 0, std = 1) {
  const m = Math.fround(mean), s = Math.fround(std);
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(Math.fround(pixels[i] / 255) - m) / s;
  return x;
}
