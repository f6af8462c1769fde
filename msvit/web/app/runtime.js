// The two in-browser runtimes behind one small interface: load(url) -> {run(Float32Array, shape)
// -> Promise<Float32Array[]>, name}. LiteRT.js (XNNPack in WASM, relaxed SIMD) runs .tflite:
// BlazeFace as it ships and the LiteRT classifier artifact; onnxruntime-web (WASM SIMD, MLAS)
// runs .onnx. Both use worker threads where the page is cross-origin isolated (SharedArrayBuffer)
// and load their WASM from this folder only. `?threads=N` in the page's URL overrides the count.
const base = new URL('../runtime/', import.meta.url);

/** Threads the runtimes may use: several only where SharedArrayBuffer is allowed. */
export function threads() {
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer === 'undefined') return 1;
  const asked = Number(new URLSearchParams(self.location?.search ?? '').get('threads'));
  const n = Number.isInteger(asked) && asked > 0 ? asked : (navigator.hardwareConcurrency || 1);
  return Math.max(1, Math.min(4, n));
}

let ortModule = null;
async function ort() {
  if (!ortModule) {
    const o = await import(new URL('ort/ort.wasm.min.mjs', base).href);
    o.env.wasm.wasmPaths = new URL('ort/', base).href;
    o.env.wasm.numThreads = threads();
    o.env.wasm.proxy = false;  // run on the calling thread (its own pool does the work)
    o.env.logLevel = 'error';
    ortModule = o;
  }
  return ortModule;
}

let litertPromise = null;
/** LiteRT.js, its threaded build where threads > 1 and that build is in the folder. */
async function litert() {
  if (!litertPromise) {
    litertPromise = (async () => {
      const lrt = await import(new URL('litert/index.js', base).href);
      const threaded = threads() > 1 && (await fetch(new URL('litert/litert_wasm_threaded_internal.js', base),
        { method: 'HEAD' }).catch(() => ({ ok: false }))).ok;
      await lrt.loadLiteRt(new URL('litert/', base).href, threaded ? { threads: true } : undefined);
      return { lrt, threads: threaded ? threads() : 1 };
    })();
  }
  return litertPromise;
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** An ONNX model on onnxruntime-web. Outputs in the model's order. */
export async function loadOnnx(url) {
  const o = await ort();
  const session = await o.InferenceSession.create(await fetchBytes(url), {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const input = session.inputNames[0];
  return {
    name: `onnxruntime-web ${o.env.versions?.web ?? ''} wasm x${o.env.wasm.numThreads}`.replace('  ', ' '),
    runtime: 'onnxruntime-web', threads: o.env.wasm.numThreads,
    inputNames: session.inputNames, outputNames: session.outputNames,
    async run(x, shape) {
      const res = await session.run({ [input]: new o.Tensor('float32', x, shape) });
      return session.outputNames.map((n) => Float32Array.from(res[n].data));
    },
  };
}

/** A .tflite model on LiteRT.js (wasm accelerator: XNNPack). Outputs sorted largest last dim
 * first when asked (BlazeFace: regressors (1, A, 16) then scores (1, A, 1), whatever their
 * order in the file), else in the model's order. */
export async function loadTflite(url, sortOutputs = false) {
  const { lrt, threads: n } = await litert();
  const model = await lrt.loadAndCompile(await fetchBytes(url),
    { accelerator: 'wasm', cpuOptions: { numThreads: n } });
  const details = model.getOutputDetails();
  let order = details.map((d, i) => i);
  if (sortOutputs) order = order.sort((a, b) => details[b].shape.at(-1) - details[a].shape.at(-1));
  return {
    name: `LiteRT.js wasm x${n}`, runtime: 'litert.js', threads: n,
    async run(x, shape) {
      const t = new lrt.Tensor(x, shape);
      let outs;
      try { outs = await model.run(t); } finally { t.delete(); }
      const arrays = outs.map((o) => Float32Array.from(o.toTypedArray()));
      outs.forEach((o) => o.delete());
      return order.map((i) => arrays[i]);
    },
  };
}

/** Load by suffix: .onnx -> onnxruntime-web, .tflite -> LiteRT.js. */
export function loadModel(url, opts = {}) {
  return String(url).toLowerCase().endsWith('.tflite') ? loadTflite(url, opts.sortOutputs) : loadOnnx(url);
}
