// Image preprocessing in the page: the same steps, rounding and arithmetic as edgeport/core/images.py, so the page
// feeds a model exactly the pixels Python would (tests/web check equal pixels). The steps are documented once, in
// the docstring of edgeport/core/images.py; each function here names the Python function it mirrors.
//
//   step 1   decoded RGBA (the browser decodes the file) -> composite on white -> Pillow "L" or RGB  (toChannels)
//   resize   Pillow BILINEAR to fit (pad), cover (crop) or exactly (stretch) the model's size       (resizeImage)
//   mnist    invert, remove background, stretch, crop to ink, Lanczos to 20 px, centre of mass    (mnistPreprocess)
//   then     InputSpec.normalise: pixel * scale, (x - mean[c]) / std[c], NHWC or NCHW              (toModelInput)
//
// Hand-written rather than canvas drawImage scaling: the browser's scaling is not specified exactly, so it could
// not match the Python side. Pillow's 8-bit resampler (libImaging/Resample.c: double coefficients normalised,
// rounded to 22-bit fixed point, two passes in the order Pillow 13 picks, each clipped to 0..255) is reproduced
// step by step, with its Lanczos filter (support 3) for digits and its bilinear (triangle) filter (support 1) for
// everything else, on every channel alike.

export const SIZE = 28; // MNIST field side
export const BOX = 20; // MNIST: the ink's longest side after scaling, in a 28 x 28 field
export const MAX_PIXELS = 25_000_000; // images.MAX_PIXELS: larger images are refused before preprocessing
const LIGHT_BACKGROUND = 127; // border median above this: dark ink on a light page, invert
const MIN_INK = 32; // brightest pixel after background removal below this: blank, nothing to classify
const INK_THRESHOLD = 64; // after the contrast stretch, pixels at or above this are ink (for the crop)

/** An image the model cannot take (no ink, wrong size): the page shows its message, as Python raises InputError. */
export class PreprocessError extends Error {}

// ---------------------------------------------------------------- step 1: RGBA -> grey or RGB
/** Pillow's Image.alpha_composite of one channel value `c` with alpha `a` over opaque white (AlphaComposite.c:
 * 7 extra bits of precision, divisions by 255 rounded with its shift trick). Exact for every (c, a). */
function overWhite(c, a) {
  if (a === 255) return c;
  const t = 128 * (c * a + 255 * (255 - a)) + (0x80 << 7);
  return (((t >> 8) + t) >> 8) >> 7;
}

/** Pillow's L24: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, the integer 0.299 R + 0.587 G + 0.114 B. */
const luma = (r, g, b) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;

/** Step 1 after decoding (images.load_image): RGBA bytes (ImageData.data) composited on white, then Pillow "L"
 * (channels 1) or "RGB" (channels 3). Returns Uint8Array(width * height * channels), channels last. */
export function toChannels(rgba, width, height, channels) {
  const n = width * height;
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    const r = overWhite(rgba[4 * i], a), g = overWhite(rgba[4 * i + 1], a), b = overWhite(rgba[4 * i + 2], a);
    if (channels === 1) out[i] = luma(r, g, b);
    else { out[3 * i] = r; out[3 * i + 1] = g; out[3 * i + 2] = b; }
  }
  return out;
}

/** toChannels(..., 1): the grey image of the MNIST recipe. */
export const toGray = (rgba, width, height) => toChannels(rgba, width, height, 1);

/** numpy's median: the mean of the two middle values for an even count. */
function median(values) {
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** numpy's rint / Python's round: halves go to the even neighbour. */
export function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------- Pillow's 8-bit resample
const PRECISION_BITS = 32 - 8 - 2;

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

/** Resample.c's filters: the function and its support (in input pixels at scale 1). */
export const LANCZOS = { filter: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0), support: 3 };
export const BILINEAR = { filter: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; }, support: 1 };

/** precompute_coeffs + normalize_coeffs_8bpc: per output pixel [first input index, count, int weights]. */
function coefficients(inSize, outSize, { filter, support: filterSupport }) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterSupport * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter((x + xmin - center + 0.5) * ss);
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

/** One horizontal pass over an interleaved (h, w, c) image -> (h, dw, c). */
function horizontalPass(img, w, h, c, dw, filter) {
  const cs = coefficients(w, dw, filter);
  const out = new Uint8Array(dw * h * c);
  for (let y = 0; y < h; y++) {
    for (let xx = 0; xx < dw; xx++) {
      const [xmin, n, k] = cs[xx];
      for (let ch = 0; ch < c; ch++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < n; x++) ss += img[(y * w + x + xmin) * c + ch] * k[x];
        out[(y * dw + xx) * c + ch] = clip8(ss);
      }
    }
  }
  return out;
}

/** One vertical pass over an interleaved (h, w, c) image -> (dh, w, c). */
function verticalPass(img, w, h, c, dh, filter) {
  const cs = coefficients(h, dh, filter);
  const out = new Uint8Array(w * dh * c);
  const row = w * c;
  for (let yy = 0; yy < dh; yy++) {
    const [ymin, n, k] = cs[yy];
    for (let i = 0; i < row; i++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < n; y++) ss += img[(y + ymin) * row + i] * k[y];
      out[yy * row + i] = clip8(ss);
    }
  }
  return out;
}

/** Image.resize((dw, dh), filter) of a uint8 (sh, sw, c) image, channels interleaved, passes in Pillow's order
 * (ImagingResampleInner: vertical first when the height shrinks by more than twice as many pixels as the width,
 * else horizontal). A pass whose size does not change is skipped, as Pillow skips it. */
export function resample(src, sw, sh, c, dw, dh, filter) {
  const horizontalFirst = !(sh - dh > 0 && sh - dh > (sw - dw) * 2);
  let img = src;
  if (horizontalFirst) {
    if (dw !== sw) img = horizontalPass(img, sw, sh, c, dw, filter);
    if (dh !== sh) img = verticalPass(img, dw, sh, c, dh, filter);
  } else {
    if (dh !== sh) img = verticalPass(img, sw, sh, c, dh, filter);
    if (dw !== sw) img = horizontalPass(img, sw, dh, c, dw, filter);
  }
  return img === src ? Uint8Array.from(src) : img;
}

// ---------------------------------------------------------------- the `resize` recipe
/**
 * images.resize_image: a uint8 (h, w, c) image -> uint8 (height, width, c). `pad`: fit inside keeping the aspect
 * ratio, centred on black; `crop`: cover, then cut the centre; `stretch`: straight to the size. Sides are rounded
 * half-to-even (Python's round), at least 1 px; offsets floor((outer - inner) / 2).
 */
export function resizeImage(img, h, w, c, height, width, mode = 'pad') {
  if (h === height && w === width) return img;
  if (mode === 'stretch') return resample(img, w, h, c, width, height, BILINEAR);
  const scale = (mode === 'pad' ? Math.min : Math.max)(height / h, width / w);
  const nh = Math.max(1, roundHalfEven(h * scale)), nw = Math.max(1, roundHalfEven(w * scale));
  const scaled = resample(img, w, h, c, nw, nh, BILINEAR);
  const out = new Uint8Array(height * width * c);
  if (mode === 'crop') {
    const top = Math.floor((nh - height) / 2), left = Math.floor((nw - width) / 2);
    for (let y = 0; y < height; y++) {
      out.set(scaled.subarray(((top + y) * nw + left) * c, ((top + y) * nw + left + width) * c), y * width * c);
    }
    return out;
  }
  const top = Math.floor((height - nh) / 2), left = Math.floor((width - nw) / 2);
  for (let y = 0; y < nh; y++) out.set(scaled.subarray(y * nw * c, (y + 1) * nw * c), ((top + y) * width + left) * c);
  return out;
}

// ---------------------------------------------------------------- the `mnist` recipe
/**
 * images.mnist_preprocess, steps 2-7: an RGBA drawing or photo -> {image: Uint8Array(size * size), light ink on
 * dark, inverted, box}. Throws PreprocessError when there is no ink (the Python side raises InputError there).
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
  if (peak < MIN_INK) {
    throw new PreprocessError(`no ink found (blank image, or ink contrast ${peak}/255 below ${MIN_INK}); ` +
                              'nothing to classify');
  }
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
  const digit = resample(crop, cw, ch, 1, nw, nh, LANCZOS);
  let mass = 0, my = 0, mx = 0;
  for (let y = 0; y < nh; y++) {
    for (let c = 0; c < nw; c++) { const v = digit[y * nw + c]; mass += v; my += v * y; mx += v * c; }
  }
  if (mass <= 0) throw new PreprocessError(`no ink left after scaling to ${box} px`);
  const cy = my / mass, cx = mx / mass; // step 7
  const top = Math.min(Math.max(roundHalfEven(size / 2 - cy), 0), size - nh);
  const left = Math.min(Math.max(roundHalfEven(size / 2 - cx), 0), size - nw);
  const image = new Uint8Array(size * size);
  for (let y = 0; y < nh; y++) for (let c = 0; c < nw; c++) image[(top + y) * size + left + c] = digit[y * nw + c];
  return { image, inverted, box: [x0, y0, x1 + 1, y1 + 1] };
}

// ---------------------------------------------------------------- one entry point, by the spec
/**
 * images.preprocess_image: decoded RGBA (width x height) -> uint8 (H, W, C) model pixels by the input spec's
 * recipe (`spec` is the server's input_spec: height, width, channels, preprocessing, resize, ...).
 */
export function preprocessImage(rgba, width, height, spec) {
  const { height: H, width: W, channels: C } = spec;
  if (width * height > MAX_PIXELS) {
    throw new PreprocessError(`image is ${width}x${height} = ${(width * height).toLocaleString('en')} pixels, ` +
                              `over the limit of ${MAX_PIXELS.toLocaleString('en')}; downscale it first`);
  }
  if (spec.preprocessing === 'mnist') {
    if (H !== W || H < 8) throw new PreprocessError(`MNIST preprocessing makes square images; the model takes ${W}x${H}`);
    return mnistPreprocess(rgba, width, height, H, roundHalfEven(H * BOX / SIZE)).image;
  }
  const pixels = toChannels(rgba, width, height, C);
  if (spec.preprocessing === 'resize') return resizeImage(pixels, height, width, C, H, W, spec.resize);
  if (width !== W || height !== H) { // `none`: images.as_is
    throw new PreprocessError(`image is ${width}x${height} but the model takes ${W}x${H} and its preprocessing is ` +
                              '"none": resize it first');
  }
  return pixels;
}

/**
 * InputSpec.normalise: uint8 (H, W, C) pixels -> the model's float32 input, in the spec's layout. Each step is
 * rounded to float32 as numpy does it (an op on float32 values computed in double and rounded once is the float32
 * result: double has more than twice float32's precision), so the input has the same bits as Python's.
 */
export function toModelInput(pixels, spec) {
  const { height: H, width: W, channels: C } = spec;
  const n = H * W;
  if (pixels.length !== n * C) throw new PreprocessError(`expected ${H}x${W}x${C} pixels, got ${pixels.length} values`);
  const divide = spec.scale === 1 / 255; // Python divides by 255 in this common case (bit-identical to images / 255)
  const scale = Math.fround(spec.scale);
  const per = (v, c) => Math.fround(v.length === 1 ? v[0] : v[c]);
  const mean = Array.from({ length: C }, (_, c) => per(spec.mean, c));
  const std = Array.from({ length: C }, (_, c) => per(spec.std, c));
  const centre = mean.some((m) => m !== 0) || std.some((s) => s !== 1);
  const nchw = spec.layout === 'NCHW';
  const x = new Float32Array(n * C);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) {
      const p = pixels[i * C + c];
      let v = divide ? Math.fround(p / 255) : Math.fround(p * scale);
      if (centre) v = Math.fround(Math.fround(v - mean[c]) / std[c]);
      x[nchw ? c * n + i : i * C + c] = v;
    }
  }
  return x;
}
