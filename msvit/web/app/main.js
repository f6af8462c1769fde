// The page: inputs (files, drag and drop, camera) -> the pipeline -> cards with boxes, per-frame
// bars and verdicts; window.msvit exposes results (one record per finished input) and busy.
import { Pipeline } from './detect.js';
import { decodeImage, openVideo, videoFrame, kindOf, InputError } from './media.js';
import { frameIndices, aggregate } from './pipeline.js';
import { kitMode } from './kit.js';
import { drawFrame, card, bars, say } from './view.js';

const root = new URL('../', import.meta.url);
const $ = (id) => document.getElementById(id);
const state = window.msvit = { results: [], busy: true, ready: null, error: null, live: null, runtime: null, kit: null };
let pipe = null;
const queue = [];

async function start() {
  const config = await (await fetch(new URL('config.json', root))).json();
  state.config = config;
  $('model').textContent = `${config.model_name} · ${config.operating_point || `threshold ${config.threshold}`}` +
    ` · ${config.precision}`;
  $('frames').value = config.defaults.num_frames;
  pipe = await Pipeline.create(config, root);
  state.runtime = pipe.runtime;
  $('runtime').textContent = `classifier: ${pipe.runtime.classifier} · faces: BlazeFace on ${pipe.runtime.detector}` +
    (self.crossOriginIsolated ? ' · cross-origin isolated' : ' · single thread (not cross-origin isolated)');
  const kit = new URLSearchParams(location.search).get('kit');
  if (kit !== null) {
    $('kitpanel').hidden = false;
    state.kit = { done: false };
    state.kit = { ...(await kitMode(pipe, new URL(kit || config.kit || 'kit/', root), $('kitpanel'))), done: true };
  }
}

async function processImage(file, rec, el) {
  const t0 = performance.now();
  const rgb = await decodeImage(file);
  rec.width = rgb.width; rec.height = rgb.height;
  rec.times_ms.decode = performance.now() - t0;
  const { fr, faces } = await pipe.frame(0, rgb, rec.times_ms);
  rec.frames.push(fr);
  drawFrame(el.canvas, rgb, faces, fr);
}

async function processVideo(file, rec, el, numFrames) {
  const t0 = performance.now();
  const v = await openVideo(file);
  try {
    Object.assign(rec, { n_frames: v.nFrames, width: v.width, height: v.height, fps: v.fps && Math.round(v.fps * 1000) / 1000 });
    if (v.estimated) rec.message = 'frame count estimated from the duration at 30 frames/s (not an MP4/MOV)';
    let decode = performance.now() - t0;
    const idx = frameIndices(v.nFrames, numFrames);
    for (const i of idx) {
      let rgb;
      const t = performance.now();
      try { rgb = await videoFrame(v, i); } catch (e) {
        rec.status = 'truncated';
        rec.message = `video ends early at frame ${i}: sampled ${rec.frames.length} frames before it`;
        break;
      }
      decode += performance.now() - t;
      const { fr, faces } = await pipe.frame(i, rgb, rec.times_ms);
      rec.frames.push(fr);
      drawFrame(el.canvas, rgb, faces, fr);
      bars(el.bars, rec.frames, rec.threshold);
      say(el, `frame ${rec.frames.length}/${idx.length}…`);
    }
    rec.times_ms.decode = decode;
  } finally { v.close(); }
}

async function processFile(file, numFrames, agg) {
  const kind = kindOf(file.name);
  const rec = pipe.record(file.name, kind, kind === 'video' ? agg : null);
  const el = card($('results'), file.name);
  const t0 = performance.now();
  try {
    if (!file.size) throw new InputError('unreadable', `${file.name}: empty file`);
    if (kind === 'video') await processVideo(file, rec, el, numFrames);
    else await processImage(file, rec, el);
    pipe.finish(rec, kind === 'video' ? agg : null);
  } catch (e) {
    rec.status = e instanceof InputError ? e.status : 'error';
    rec.message = e instanceof InputError ? e.message : `${file.name}: ${e.name}: ${e.message}`;
    rec.p_fake = rec.verdict = null;
  }
  rec.times_ms.total = performance.now() - t0;
  for (const k of Object.keys(rec.times_ms)) rec.times_ms[k] = Math.round(rec.times_ms[k] * 1000) / 1000;
  if (kind === 'video') bars(el.bars, rec.frames, rec.threshold);
  say(el, rec);
  state.results.push(rec);
  $('download').disabled = false;
}

async function drain() {
  if (state.busy || !pipe) return;
  state.busy = true;
  try {
    while (queue.length) {
      const file = queue.shift();
      await processFile(file, Math.max(1, +$('frames').value || 20), $('agg').value);
    }
  } finally { state.busy = false; }
}

function add(files) { queue.push(...files); drain(); }

function download() {
  const blob = new Blob([JSON.stringify({ results: state.results }, null, 1)], { type: 'application/json' });
  const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: 'msvit-results.json' });
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ------------------------------------------------------------------ live camera
let camera = null;
async function toggleCamera() {
  if (camera) { camera.stop = true; return; }
  if (state.busy) return;
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false }); } catch (e) {
    $('status').textContent = `camera: ${e.name}: ${e.message}`; return;
  }
  const video = Object.assign(document.createElement('video'), { muted: true, playsInline: true, srcObject: stream });
  await video.play();
  const el = card($('results'), 'camera');
  const agg = $('agg').value, window_ = Math.max(1, +$('frames').value || 20);
  const rec = pipe.record('camera', 'stream', agg);
  const live = state.live = { frames: [], p_fake: null, verdict: null, running: true };
  camera = { stop: false };
  $('camera').textContent = 'Stop camera';
  state.busy = true;
  const cv = document.createElement('canvas');
  let i = 0;
  while (!camera.stop) {
    cv.width = video.videoWidth; cv.height = video.videoHeight;
    if (!cv.width) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const ctx = cv.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const { toRGB } = await import('./media.js');
    const rgb = toRGB(ctx.getImageData(0, 0, cv.width, cv.height));
    const { fr, faces } = await pipe.frame(i++, rgb, rec.times_ms);
    rec.frames.push(fr);
    if (rec.frames.length > 200) rec.frames.shift();
    live.frames.push({ index: fr.index, p_fake: fr.p_fake, status: fr.status });
    const p = rec.frames.slice(-window_).map((f) => f.p_fake).filter((x) => x !== null);
    live.p_fake = p.length ? aggregate(p, agg) : null;
    live.verdict = live.p_fake === null ? null : (live.p_fake >= rec.threshold ? 'fake' : 'real');
    drawFrame(el.canvas, rgb, faces, fr);
    bars(el.bars, rec.frames.slice(-window_), rec.threshold);
    say(el, live.p_fake === null ? `frame ${i}: ${fr.status}` :
      `running verdict over the last ${p.length} frames: ${live.verdict} (P(fake) ${live.p_fake.toFixed(3)})`);
    await new Promise((r) => setTimeout(r, 30));
  }
  stream.getTracks().forEach((t) => t.stop());
  rec.frames = rec.frames.slice(-window_);
  pipe.finish(rec, agg);
  say(el, rec);
  state.results.push(rec);
  live.running = false;
  camera = null;
  state.busy = false;
  $('camera').textContent = 'Use camera';
  drain();
}

// ------------------------------------------------------------------ wiring
$('files').addEventListener('change', (e) => { add([...e.target.files]); e.target.value = ''; });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); add([...e.dataTransfer.files]); });
$('download').addEventListener('click', download);
$('camera').addEventListener('click', () => toggleCamera().catch((e) => { $('status').textContent = `camera: ${e.message}`; }));

state.ready = start().then(() => {
  $('status').textContent = 'Ready: pick images or videos, drop them here, or use the camera. Nothing leaves this page.';
  state.busy = false;
  drain();
}).catch((e) => {
  state.error = String(e && e.message || e);
  $('status').textContent = `could not start: ${state.error}`;
  state.busy = false;
});
