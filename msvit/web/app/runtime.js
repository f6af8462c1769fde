// The two in-browser runtimes behind one small interface: load(url) -> {run(Float32Array, shape)
// -> Promise<Float32Array[]>, name}. onnxruntime-web (WASM, SIMD; threads when the page is
// cross-origin isolated) runs .onnx; LiteRT.js (XNNPack in WASM) runs .tflite: BlazeFace as it
// ships, and a LiteRT classifier artifact. Both load their WASM from this folder only.
const base = new URL('../runtime/', import.meta.url);

/** Threads the runtimes may use: several only where SharedArrayBuffer is allowed. */
export function threads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

let ortModule = null;
async function ort() {
  if (!ortModule) {
    ortModule = await import(new URL('ort/ort.wasm.min.mjs', base).href);
    ortModule.env.wasm.wasmPaths = new URL('ort/', base).href;
    ortModule.env.wasm.numThreads = threads();
    ortModule.env.logLevel = 'error';
  }
  return ortModule;
}

let litertPromise = null;
async function litert() {
  if (!litertPromise) {
    litertPromise = (async () => {
      const lrt = await import(new URL('litert/index.js', base).href);
      await lrt.loadLiteRt(new URL('litert/', base).href);
      return lrt;
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
    name: `onnxruntime-web ${o.env.versions?.web ?? ''} wasm x${o.env.wasm.numThreads}`.trim(),
    inputNames: session.inputNames, outputNames: session.outputNames,
    async run(x, shape) {
      const res = await session.run({ [input]: new o.Tensor('float32', x, shape) });
      return session.outputNames.map((n) => Float32Array.from(res[n].data));
    },
  };
}

/** A .tflite model on LiteRT.js (wasm accelerator). Outputs sorted largest last dim first
 * (BlazeFace: regressors (1, A, 16) then scores (1, A, 1), whatever their order in the file). */
export async function loadTflite(url, sortOutputs = false) {
  const lrt = await litert();
  const model = await lrt.loadAndCompile(await fetchBytes(url), { accelerator: 'wasm' });
  const details = model.getOutputDetails();
  let order = details.map((d, i) => i);
  if (sortOutputs) order = order.sort((a, b) => details[b].shape.at(-1) - details[a].shape.at(-1));
  return {
    name: 'LiteRT.js wasm',
    async run(x, shape) {
      const t = new lrt.Tensor(x, shape);
      const outs = await model.run(t);
      t.delete();
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
