// The page behind `edgeport serve`: draw a digit, preprocess it (preprocess.js), run the chosen exported file
// in the browser (onnxruntime-web for .onnx, LiteRT.js for .tflite, both WASM, both served by the local server),
// show the top 3 and the latency. `?parity=N` instead runs N test images through every runnable artifact and
// publishes the results as window.parityResults for tests/web to compare with the Python runtime.
import { mnistPreprocess, SIZE, toModelInput } from './preprocess.js';

const $ = (id) => document.getElementById(id);
const state = { artifacts: [], runners: new Map(), failures: new Map(), current: null, latencies: [], predicted: 0 };
window.edgeport = { state }; // for tests and the curious

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

// ---------------------------------------------------------------- artifacts table and picker
function renderArtifacts() {
  const rows = state.artifacts.map((a) => {
    const failed = state.failures.get(a.name);
    const ok = a.runnable && !failed;
    const status = ok ? 'runs in this page' : `unavailable: ${failed ?? a.reason}`;
    return `<tr data-artifact="${a.name}"><td>${a.name}</td><td>${a.format}</td><td>${a.precision}</td>` +
      `<td class="num">${(a.bytes / 1024).toFixed(1)} KB</td><td>${a.runtime ?? '-'}</td>` +
      `<td class="${ok ? 'status-ok' : 'status-bad'}">${escapeHtml(status)}</td></tr>`;
  });
  $('artifact-rows').innerHTML = rows.join('');
  const picker = $('picker');
  const selected = state.current?.name;
  picker.innerHTML = state.artifacts.map((a) => {
    const ok = a.runnable && !state.failures.has(a.name);
    return `<option value="${a.name}" ${ok ? '' : 'disabled'} title="${escapeHtml(ok ? '' : (state.failures.get(a.name) ?? a.reason))}">` +
      `${a.name}${ok ? '' : ' (unavailable)'}</option>`;
  }).join('');
  if (selected) picker.value = selected;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// ---------------------------------------------------------------- drawing pad
const pad = $('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });
function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  $('bars').innerHTML = '<p class="muted">Draw a digit.</p>';
  $('preview').getContext('2d').clearRect(0, 0, 112, 112);
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
  const end = () => { if (drawing) { drawing = false; predictPad(); } };
  pad.addEventListener('pointerup', end);
  pad.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', clearPad);
}

function drawPreview(pixels) {
  const p = $('preview').getContext('2d');
  const img = p.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const v = Math.round(pixels[i]);
    img.data.set([v, v, v, 255], 4 * i);
  }
  const tmp = new OffscreenCanvas(SIZE, SIZE);
  tmp.getContext('2d').putImageData(img, 0, 0);
  p.imageSmoothingEnabled = false;
  p.drawImage(tmp, 0, 0, 112, 112);
}

let busy = Promise.resolve();
function predictPad() {
  busy = busy.then(predictOnce, predictOnce);
  return busy;
}

async function predictOnce() {
  const a = state.current;
  if (!a) return;
  const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
  const pre = mnistPreprocess(data, width, height);
  if (!pre) { $('bars').innerHTML = '<p class="muted">No ink: draw a digit.</p>'; return; }
  drawPreview(pre.image);
  try {
    const run = await runner(a);
    const x = toModelInput(pre.image, a.norm_mean, a.norm_std);
    const t0 = performance.now();
    const y = await run.run(x);
    const ms = performance.now() - t0;
    const probs = toProbs(y);
    state.latencies.push(ms);
    const top = [...probs.keys()].sort((i, j) => probs[j] - probs[i]).slice(0, 3)
      .map((i) => ({ index: i, label: a.labels[i] ?? String(i), probability: probs[i] }));
    $('bars').innerHTML = top.map((t) => `<div class="bar"><span class="label">${escapeHtml(t.label)}</span>` +
      `<span class="track"><span class="fill" style="width:${(100 * t.probability).toFixed(1)}%;display:block"></span></span>` +
      `<span class="pct">${(100 * t.probability).toFixed(1)}%</span></div>`).join('');
    $('latency').textContent = `${a.name} (${a.runtime}): ${ms.toFixed(2)} ms this inference, median ` +
      `${median(state.latencies).toFixed(2)} ms over ${state.latencies.length}`;
    window.lastPrediction = { artifact: a.name, top, latency_ms: ms, input: Array.from(pre.image), inverted: pre.inverted };
    state.predicted += 1;
  } catch (err) {
    $('bars').innerHTML = `<p class="error">${escapeHtml(a.name)} failed in this browser: ${escapeHtml(err?.message ?? err)}</p>`;
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
  const [count, h, w] = ts.shape;
  const images = Array.from({ length: count }, (_, i) => bytes.subarray(i * h * w, (i + 1) * h * w));
  const results = {};
  const errors = {};
  for (const a of state.artifacts.filter((x) => x.runnable)) {
    status.textContent = `running ${a.name} on ${count} images...`;
    try {
      const run = await runner(a);
      const inputs = images.map((img) => toModelInput(img, a.norm_mean, a.norm_std));
      for (let i = 0; i < 5; i++) await run.run(inputs[0]); // warm-up, untimed
      const probs = [], times = [];
      for (const x of inputs) {
        const t0 = performance.now();
        const y = await run.run(x);
        times.push(performance.now() - t0);
        probs.push(Array.from(toProbs(y)));
      }
      const top1 = probs.map((p) => p.indexOf(Math.max(...p)));
      const accuracy = top1.filter((c, i) => c === ts.labels[i]).length / count;
      results[a.name] = { runtime: a.runtime, probs, top1, accuracy, latency_ms: times,
                          median_ms: median(times), p90_ms: percentile(times, 90) };
    } catch (err) {
      errors[a.name] = String(err?.message ?? err);
    }
  }
  $('parity-rows').innerHTML = Object.entries(results).map(([name, r]) => `<tr><td>${name}</td>` +
    `<td class="num">${count}</td><td class="num">${(100 * r.accuracy).toFixed(2)}%</td>` +
    `<td class="num">${r.median_ms.toFixed(3)}</td><td class="num">${r.p90_ms.toFixed(3)}</td></tr>`).join('') +
    Object.entries(errors).map(([name, e]) => `<tr><td>${name}</td><td colspan="4" class="error">${escapeHtml(e)}</td></tr>`).join('');
  status.textContent = `${count} test images from ${ts.source}, offset ${ts.offset}; batch 1, one WASM thread.`;
  window.parityResults = { n: count, offset: ts.offset, labels: ts.labels, results, errors,
                           crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
}

// ---------------------------------------------------------------- start
async function main() {
  const info = await (await fetch('/api/artifacts')).json();
  state.artifacts = info.artifacts;
  $('run').textContent = `run: ${info.run}`;
  $('runtimes').textContent = 'browser runtimes (web/package-lock.json): ' + Object.entries(info.runtimes)
    .map(([k, v]) => `${k} ${v ?? 'not installed'}`).join(', ');
  const wanted = new URLSearchParams(location.search).get('artifact');
  state.current = state.artifacts.find((a) => a.runnable && a.name === wanted) ??
    state.artifacts.find((a) => a.runnable && a.format === 'onnx') ?? state.artifacts.find((a) => a.runnable) ?? null;
  renderArtifacts();
  $('picker').addEventListener('change', (e) => {
    state.current = state.artifacts.find((a) => a.name === e.target.value);
    state.latencies = [];
    predictPad();
  });
  setupPad();
  if (!state.current) {
    $('bars').innerHTML = '<p class="error">No artifact of this run can run in the browser; see the table below.</p>';
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
