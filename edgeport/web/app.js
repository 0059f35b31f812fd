// The page behind `edgeport serve`: take an input (a drawn digit for models whose input spec says "mnist", an image
// file or a camera snapshot for every other model), preprocess it exactly as Python does (preprocess.js), run the
// chosen exported file in the browser (onnxruntime-web for .onnx, LiteRT.js for .tflite, both WASM, both served by
// the local server), and show the top classes by name, the latency and what the model saw. `?parity=N` instead
// runs N test images through every runnable artifact and publishes the results as window.parityResults for
// tests/web to compare with the Python runtime.
import { MAX_PIXELS, PreprocessError, preprocessImage, toModelInput } from './preprocess.js';

const $ = (id) => document.getElementById(id);
const TOP_K = 5; // classes shown (fewer when the model has fewer)
const state = {
  artifacts: [], runners: new Map(), failures: new Map(), current: null, latencies: [], predicted: 0,
  source: null, // the image input: {rgba, width, height, name, kind: "file" | "camera"}
};

// ---------------------------------------------------------------- runtimes (loaded on first use)
let ortPromise = null;
function ortRuntime() {
  ortPromise ??= import('/vendor/ort/ort.wasm.min.mjs').then((ort) => {
    ort.env.wasm.wasmPaths = '/vendor/ort/'; // the local dist/ folder, never a CDN
    ort.env.wasm.numThreads = 1; // one thread: comparable with the Python runtime's batch-1 figures
    ort.env.wasm.proxy = false;
    return ort;
  });
  return ortPromise;
}

let litertPromise = null;
function litertRuntime() {
  litertPromise ??= import('/vendor/litert/dist/index.js').then(async (litert) => {
    await litert.loadLiteRt('/vendor/litert/wasm/');
    return litert;
  });
  return litertPromise;
}

const staticDims = (a) => a.input_shape.map((d) => (d < 1 ? 1 : d)); // batch 1 where the file leaves it open

/** A runner has run(Float32Array) -> Promise<Float32Array> of the file's raw output. */
async function openRunner(a) {
  if (a.runtime === 'onnxruntime-web') {
    const ort = await ortRuntime();
    const session = await ort.InferenceSession.create(a.url, { executionProviders: ['wasm'] });
    const dims = staticDims(a);
    return {
      run: async (x) => {
        const out = await session.run({ [a.input_name]: new ort.Tensor('float32', x, dims) });
        return Float32Array.from(out[a.output_name].data);
      },
    };
  }
  if (a.runtime === 'litert.js') {
    const litert = await litertRuntime();
    const model = await litert.loadAndCompile(a.url, { accelerator: 'wasm' });
    const dims = staticDims(a);
    return {
      run: async (x) => {
        const input = new litert.Tensor(x, dims);
        try {
          const outs = await model.run(input);
          const y = Float32Array.from(outs[0].toTypedArray());
          outs.forEach((t) => t.delete());
          return y;
        } finally {
          input.delete();
        }
      },
    };
  }
  throw new Error(`no browser runtime for ${a.name}`);
}

/** The artifact's runner, opened once, with one untimed warm-up call so shown latencies are steady-state. */
async function runner(a) {
  if (!state.runners.has(a.name)) {
    state.runners.set(a.name, openRunner(a).then(async (r) => {
      await r.run(new Float32Array(staticDims(a).reduce((n, d) => n * d, 1)));
      return r;
    }));
  }
  try {
    return await state.runners.get(a.name);
  } catch (err) {
    state.runners.delete(a.name);
    state.failures.set(a.name, String(err?.message ?? err));
    renderArtifacts();
    throw err;
  }
}

/** Raw output -> probabilities: files that end in softmax already give them; a logits head gets one.
 * 0.02: an int8 softmax dequantised to float (web_tflite_int8) is in steps of 1/256, so its sum is off by
 * up to about 10 half-steps; a second softmax over it would flatten it to ~0.1 per class. */
function toProbs(y) {
  let min = Infinity, max = -Infinity, sum = 0;
  for (const v of y) { min = Math.min(min, v); max = Math.max(max, v); sum += v; }
  if (min >= -1e-6 && max <= 1 + 1e-6 && Math.abs(sum - 1) <= 0.02) return y;
  const e = y.map((v) => Math.exp(v - max));
  const z = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / z);
}

const median = (xs) => percentile(xs, 50);
function percentile(xs, p) { // numpy's default (linear) percentile, so figures compare with the Python side
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const k = (s.length - 1) * (p / 100), lo = Math.floor(k), hi = Math.ceil(k);
  return s[lo] + (s[hi] - s[lo]) * (k - lo);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const isDigitModel = (a) => a?.input_spec?.preprocessing === 'mnist';
const labelOf = (a, i) => a.input_spec?.labels?.[i] ?? String(i);
const showMessage = (html) => { $('bars').innerHTML = html; };

// ---------------------------------------------------------------- artifacts table and picker
function renderArtifacts() {
  const rows = state.artifacts.map((a) => {
    const failed = state.failures.get(a.name);
    const ok = a.runnable && !failed;
    const status = ok ? 'runs in this page' : `unavailable: ${failed ?? a.reason}`;
    return `<tr data-artifact="${escapeHtml(a.name)}"><td>${escapeHtml(a.name)}</td><td>${a.format}</td>` +
      `<td>${a.precision}</td><td class="num">${(a.bytes / 1024).toFixed(1)} KB</td><td>${a.runtime ?? '-'}</td>` +
      `<td class="${ok ? 'status-ok' : 'status-bad'}">${escapeHtml(status)}</td></tr>`;
  });
  $('artifact-rows').innerHTML = rows.join('');
  const picker = $('picker');
  const selected = state.current?.name;
  picker.innerHTML = state.artifacts.map((a) => {
    const ok = a.runnable && !state.failures.has(a.name);
    return `<option value="${escapeHtml(a.name)}" ${ok ? '' : 'disabled'} ` +
      `title="${escapeHtml(ok ? '' : (state.failures.get(a.name) ?? a.reason))}">` +
      `${escapeHtml(a.name)}${ok ? '' : ' (unavailable)'}</option>`;
  }).join('');
  if (selected) picker.value = selected;
}

/** Show the input that fits the current model: the pad for digit models, image file + camera for the rest. */
function showInputFor(a) {
  const digits = isDigitModel(a);
  $('pad-ui').hidden = !digits;
  $('image-ui').hidden = digits || !a;
  if (digits) stopCamera();
  else if (a) checkCamera();
  const spec = a?.input_spec;
  if (!spec) { $('input-help').textContent = ''; return; }
  const how = digits ? 'MNIST-style: crop to the ink, 20 px box, centred by centre of mass'
    : spec.preprocessing === 'resize' ? `resized with Pillow's bilinear filter (${spec.resize})`
      : 'used as it is (it must already be the model\'s size)';
  const kind = spec.channels === 3 ? 'RGB' : 'grayscale';
  $('input-help').textContent = `${a.name} takes ${spec.width}x${spec.height} ${kind} images, ${how}. ` +
    'Preprocessing and inference run in this page; nothing is sent to the server.';
  $('preview-caption').textContent = `what the model sees (${spec.width}x${spec.height} ${kind})`;
}

// ---------------------------------------------------------------- drawing pad (digit models)
const pad = $('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });
function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  showMessage('<p class="muted">Draw a digit.</p>');
  const p = $('preview');
  p.getContext('2d').clearRect(0, 0, p.width, p.height);
  window.lastPrediction = null;
}

function setupPad() {
  clearPad();
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = 18; // about MNIST's stroke once the digit is scaled to 20 px
  ctx.strokeStyle = '#000';
  let drawing = false;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
  };
  pad.addEventListener('pointerdown', (e) => { // pointer events: mouse, touch and pen alike
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
  });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const end = () => { if (drawing) { drawing = false; predict(); } };
  pad.addEventListener('pointerup', end);
  pad.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', clearPad);
}

// ---------------------------------------------------------------- image files (every other model)
/**
 * The browser decodes the file (PNG, JPEG, WebP, GIF, BMP, ...) with the EXIF orientation applied and no colour
 * management (colorSpaceConversion 'none': the stored values, as Pillow reads them). Returns straight (not
 * premultiplied) RGBA: a 2D canvas keeps premultiplied pixels, but compositing them on white (preprocess.js)
 * gives Pillow's result exactly (tests/web checks semi-transparent PNGs too).
 */
async function decodeImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image', premultiplyAlpha: 'none',
                                             colorSpaceConversion: 'none' });
  } catch (err) {
    throw new PreprocessError(`this browser cannot decode it as an image (${err?.name ?? err})`);
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) { // before a canvas of that size is made (Python refuses it from the header)
    bitmap.close();
    throw new PreprocessError(`image is ${width}x${height} = ${(width * height).toLocaleString('en')} pixels, over ` +
                              `the limit of ${MAX_PIXELS.toLocaleString('en')}; downscale it first`);
  }
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const c = canvas.getContext('2d', { willReadFrequently: true });
  c.drawImage(bitmap, 0, 0);
  const rgba = c.getImageData(0, 0, width, height).data;
  return { rgba, width, height, bitmap };
}

/** Draw the input image, scaled to fit, where it was dropped, so the user sees what was taken. */
function showSource(drawable, width, height) {
  const canvas = $('source');
  const k = Math.min(260 / width, 200 / height, 4); // small images scaled up (at most 4x), large ones down
  canvas.width = Math.max(1, Math.round(width * k));
  canvas.height = Math.max(1, Math.round(height * k));
  canvas.getContext('2d').drawImage(drawable, 0, 0, canvas.width, canvas.height);
  canvas.hidden = false;
}

async function useFile(file) {
  if (!file) return;
  try {
    const { rgba, width, height, bitmap } = await decodeImage(file);
    showSource(bitmap, width, height);
    bitmap.close();
    state.source = { rgba, width, height, name: file.name || 'pasted image', kind: 'file' };
  } catch (err) {
    state.source = null;
    showMessage(`<p class="error">${escapeHtml(file.name || 'image')}: ${escapeHtml(err?.message ?? err)}</p>`);
    return;
  }
  await predict();
}

function setupImageInput() {
  $('file').addEventListener('change', (e) => { useFile(e.target.files[0]); e.target.value = ''; });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    useFile(e.dataTransfer?.files?.[0]);
  });
  document.addEventListener('paste', (e) => {
    const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (file && !$('image-ui').hidden) useFile(file);
  });
  $('camera').addEventListener('click', startCamera);
  $('snapshot').addEventListener('click', snapshot);
  $('camera-stop').addEventListener('click', stopCamera);
}

// ---------------------------------------------------------------- camera
let stream = null;

/** Why the camera cannot be offered here, or null when it can (a camera exists and the page may ask for it). */
async function cameraUnavailable() {
  if (!navigator.mediaDevices?.getUserMedia) {
    return window.isSecureContext ? 'This browser gives pages no camera access; choose a file instead.'
      : 'The camera needs a secure page (https, or http://localhost / 127.0.0.1 on this machine); this page ' +
        'was opened over plain http from another address. Choose a file instead.';
  }
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    if (!devices.some((d) => d.kind === 'videoinput')) return 'No camera found on this device; choose a file instead.';
  } catch { /* enumerateDevices refused: let getUserMedia say what is wrong */ }
  return null;
}

/** Disable the camera button, saying why, where the page cannot have a camera. */
async function checkCamera() {
  const reason = await cameraUnavailable();
  $('camera').disabled = Boolean(reason);
  if (reason) cameraMessage(reason);
}

function cameraMessage(text, error = false) {
  const m = $('camera-message');
  m.textContent = text;
  m.className = error ? 'error' : 'muted';
}

async function startCamera() {
  const reason = await cameraUnavailable();
  if (reason) { cameraMessage(reason, true); return; }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: 'environment' } }, audio: false });
  } catch (err) {
    stream = null;
    const name = err?.name ?? '';
    cameraMessage(
      name === 'NotAllowedError' || name === 'SecurityError'
        ? 'Camera permission was refused. Allow the camera for this page in the browser\'s site settings, or ' +
          'choose a file.'
        : name === 'NotFoundError' || name === 'OverconstrainedError' ? 'No camera found; choose a file instead.'
          : name === 'NotReadableError' ? 'The camera is busy (another application is using it).'
            : `The camera could not be started (${name || 'error'}: ${err?.message ?? err}).`, true);
    return;
  }
  const video = $('video');
  video.srcObject = stream;
  video.hidden = false;
  $('source').hidden = true;
  $('camera').hidden = true;
  $('snapshot').hidden = false;
  $('camera-stop').hidden = false;
  cameraMessage('Point the camera at the object, then take a snapshot.');
  try { await video.play(); } catch { /* autoplay of a muted stream is allowed; a failure shows as no frames */ }
}

async function snapshot() {
  const video = $('video');
  if (!video.videoWidth) { cameraMessage('The camera has not delivered a frame yet; try again.', true); return; }
  const width = video.videoWidth, height = video.videoHeight;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const c = canvas.getContext('2d', { willReadFrequently: true });
  c.drawImage(video, 0, 0, width, height);
  state.source = { rgba: c.getImageData(0, 0, width, height).data, width, height, name: 'camera snapshot',
                   kind: 'camera' };
  cameraMessage(`Snapshot ${width}x${height} taken.`);
  await predict();
}

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  const video = $('video');
  video.srcObject = null;
  video.hidden = true;
  $('source').hidden = !state.source || state.source.kind === 'camera';
  $('camera').hidden = false;
  $('snapshot').hidden = true;
  $('camera-stop').hidden = true;
}

// ---------------------------------------------------------------- predict
function drawPreview(pixels, spec) {
  const { height: h, width: w, channels: c } = spec;
  const canvas = $('preview');
  canvas.width = w;
  canvas.height = h;
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const [r, g, b] = c === 3 ? [pixels[3 * i], pixels[3 * i + 1], pixels[3 * i + 2]] : [pixels[i], pixels[i], pixels[i]];
    img.data.set([r, g, b, 255], 4 * i);
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
  const k = Math.max(1, Math.floor(160 / Math.max(w, h)));
  canvas.style.width = `${w * k}px`;
  canvas.style.height = `${h * k}px`;
}

function renderBars(top) {
  showMessage(top.map((t) => `<div class="bar"><span class="label" title="${escapeHtml(t.label)}">` +
    `${escapeHtml(t.label)}</span><span class="track"><span class="fill" ` +
    `style="width:${(100 * t.probability).toFixed(1)}%;display:block"></span></span>` +
    `<span class="pct">${(100 * t.probability).toFixed(1)}%</span></div>`).join(''));
}

let busy = Promise.resolve();
function predict() { // one at a time, in order
  busy = busy.then(predictOnce, predictOnce);
  return busy;
}

/** The current input (the pad, or the image source) through the current model; sets window.lastPrediction. */
async function predictOnce() {
  const a = state.current;
  if (!a) return;
  const spec = a.input_spec;
  let input, pixels;
  if (isDigitModel(a)) {
    const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
    input = { rgba: data, width, height, name: 'drawing', kind: 'pad' };
  } else {
    input = state.source;
    if (!input) { showMessage('<p class="muted">Drop or choose an image, or take a camera snapshot.</p>'); return; }
  }
  try {
    pixels = preprocessImage(input.rgba, input.width, input.height, spec);
  } catch (err) {
    if (!(err instanceof PreprocessError)) throw err;
    const hint = input.kind === 'pad' ? ': draw a digit' : '';
    showMessage(`<p class="${input.kind === 'pad' ? 'muted' : 'error'}">${escapeHtml(input.name)}: ` +
                `${escapeHtml(err.message)}${hint}</p>`);
    return;
  }
  drawPreview(pixels, spec);
  try {
    const run = await runner(a);
    const x = toModelInput(pixels, spec);
    const t0 = performance.now();
    const y = await run.run(x);
    const ms = performance.now() - t0;
    const probs = toProbs(y);
    state.latencies.push(ms);
    const top = [...probs.keys()].sort((i, j) => probs[j] - probs[i]).slice(0, Math.min(TOP_K, probs.length))
      .map((i) => ({ index: i, label: labelOf(a, i), probability: probs[i] }));
    renderBars(top);
    $('latency').textContent = `${a.name} (${a.runtime}): ${ms.toFixed(2)} ms this inference, median ` +
      `${median(state.latencies).toFixed(2)} ms over ${state.latencies.length}`;
    window.lastPrediction = { artifact: a.name, source: input.kind, name: input.name, top, latency_ms: ms,
                              input: Array.from(pixels), shape: [spec.height, spec.width, spec.channels] };
    state.predicted += 1;
  } catch (err) {
    showMessage(`<p class="error">${escapeHtml(a.name)} failed in this browser: ${escapeHtml(err?.message ?? err)}</p>`);
  }
}

// ---------------------------------------------------------------- parity mode: ?parity=N
async function runParity(n) {
  $('parity').hidden = false;
  const status = $('parity-status');
  status.textContent = `fetching ${n} test images...`;
  const res = await fetch(`/api/testset?n=${n}`);
  if (!res.ok) throw new Error(`/api/testset: ${res.status} ${await res.text()}`);
  const ts = await res.json();
  const bytes = Uint8Array.from(atob(ts.images_b64), (c) => c.charCodeAt(0));
  const [count, h, w, c = 1] = ts.shape; // (N, H, W, C), channels last
  const per = h * w * c;
  const images = Array.from({ length: count }, (_, i) => bytes.subarray(i * per, (i + 1) * per));
  const results = {};
  const errors = {};
  for (const a of state.artifacts.filter((x) => x.runnable)) {
    status.textContent = `running ${a.name} on ${count} images...`;
    try {
      const spec = a.input_spec;
      if (spec.height !== h || spec.width !== w || spec.channels !== c) {
        throw new Error(`the test images are ${h}x${w}x${c} but ${a.name} takes ${spec.height}x${spec.width}x` +
                        `${spec.channels}`);
      }
      const run = await runner(a);
      const inputs = images.map((img) => toModelInput(img, spec));
      for (let i = 0; i < 5; i++) await run.run(inputs[0]); // warm-up, untimed
      const probs = [], times = [];
      for (const x of inputs) {
        const t0 = performance.now();
        const y = await run.run(x);
        times.push(performance.now() - t0);
        probs.push(Array.from(toProbs(y)));
      }
      const top1 = probs.map((p) => p.indexOf(Math.max(...p)));
      const accuracy = top1.filter((k, i) => k === ts.labels[i]).length / count;
      results[a.name] = { runtime: a.runtime, probs, top1, accuracy, latency_ms: times,
                          median_ms: median(times), p90_ms: percentile(times, 90) };
    } catch (err) {
      errors[a.name] = String(err?.message ?? err);
    }
  }
  $('parity-rows').innerHTML = Object.entries(results).map(([name, r]) => `<tr><td>${escapeHtml(name)}</td>` +
    `<td class="num">${count}</td><td class="num">${(100 * r.accuracy).toFixed(2)}%</td>` +
    `<td class="num">${r.median_ms.toFixed(3)}</td><td class="num">${r.p90_ms.toFixed(3)}</td></tr>`).join('') +
    Object.entries(errors).map(([name, e]) => `<tr><td>${escapeHtml(name)}</td><td colspan="4" class="error">` +
      `${escapeHtml(e)}</td></tr>`).join('');
  status.textContent = `${count} test images (${h}x${w}x${c}) from ${ts.source}, offset ${ts.offset}; batch 1, ` +
    'one WASM thread.';
  window.parityResults = { n: count, offset: ts.offset, shape: ts.shape, labels: ts.labels, results, errors,
                           crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
}

// ---------------------------------------------------------------- for tests and the curious
/** The page's own decode + preprocessing of image bytes (base64) under any input spec: what a dropped file gets. */
async function preprocessBytes(b64, type, spec) {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const { rgba, width, height, bitmap } = await decodeImage(new Blob([bytes], { type }));
  bitmap.close();
  return { width, height, image: Array.from(preprocessImage(rgba, width, height, spec)) };
}
window.edgeport = { state, preprocessBytes };

// ---------------------------------------------------------------- start
async function main() {
  const info = await (await fetch('/api/artifacts')).json();
  state.artifacts = info.artifacts;
  $('run').textContent = `run: ${info.run}`;
  $('runtimes').textContent = 'browser runtimes: ' + Object.entries(info.runtimes)
    .map(([k, v]) => `${k} ${v ?? 'not installed'}`).join(', ');
  const wanted = new URLSearchParams(location.search).get('artifact');
  state.current = state.artifacts.find((a) => a.runnable && a.name === wanted) ??
    state.artifacts.find((a) => a.runnable && a.format === 'onnx') ?? state.artifacts.find((a) => a.runnable) ?? null;
  renderArtifacts();
  $('picker').addEventListener('change', (e) => {
    state.current = state.artifacts.find((a) => a.name === e.target.value);
    state.latencies = [];
    showInputFor(state.current);
    predict();
  });
  setupPad();
  setupImageInput();
  showInputFor(state.current);
  if (!state.current) {
    showMessage('<p class="error">No artifact of this run can run in the browser; see the table below.</p>');
  } else if (!isDigitModel(state.current)) {
    showMessage('<p class="muted">Drop or choose an image, or take a camera snapshot.</p>');
  }
  const parity = Number(new URLSearchParams(location.search).get('parity') || 0);
  document.body.dataset.ready = 'true';
  if (parity > 0) {
    try {
      await runParity(parity);
    } catch (err) {
      window.parityResults = { error: String(err?.message ?? err) };
      $('parity-status').textContent = `parity run failed: ${err?.message ?? err}`;
    }
  }
}

main().catch((err) => {
  document.body.insertAdjacentHTML('afterbegin', `<p class="error">edgeport page failed to start: ${escapeHtml(err?.message ?? err)}</p>`);
  document.body.dataset.ready = 'error';
});
