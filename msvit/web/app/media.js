// Files -> RGB pixels with the browser's own decoders: images through createImageBitmap (EXIF
// orientation applied, no colour management: the file's pixels, as PIL reads them), videos
// through a <video> element that seeks to msvit's sampled frames. MP4/MOV frame counts and
// timestamps come from the file's sample tables, so frame i is the i-th in presentation order.
import { frameIndices } from './pipeline.js';

export const VIDEO_SUFFIXES = ['.mp4', '.m4v', '.mov', '.webm', '.mkv', '.avi', '.ogv'];
export const kindOf = (name) => (VIDEO_SUFFIXES.some((s) => name.toLowerCase().endsWith(s)) ? 'video' : 'image');

export class InputError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function canvas(w, h) {
  return typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(w, h)
    : Object.assign(document.createElement('canvas'), { width: w, height: h });
}

/** RGBA ImageData -> RGB {data, width, height}; transparency composited on black as msvit does. */
export function toRGB(img) {
  const n = img.width * img.height, s = img.data, d = new Uint8ClampedArray(n * 3);
  for (let i = 0; i < n; i++) {
    const a = s[4 * i + 3];
    for (let c = 0; c < 3; c++) d[3 * i + c] = a === 255 ? s[4 * i + c] : Math.floor((s[4 * i + c] * a + 127) / 255);
  }
  return { data: d, width: img.width, height: img.height };
}

function grab(source, w, h) {
  const cv = canvas(w, h), ctx = cv.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, w, h);
  return toRGB(ctx.getImageData(0, 0, w, h));
}

/** A still image file -> RGB. */
export async function decodeImage(file) {
  let bmp;
  try {
    bmp = await createImageBitmap(file, { imageOrientation: 'from-image', colorSpaceConversion: 'none',
      premultiplyAlpha: 'none' });
  } catch (e) {
    throw new InputError('unreadable', `cannot read image ${file.name}: the browser cannot decode it`);
  }
  if (!bmp.width || !bmp.height) throw new InputError('unreadable', `${file.name}: empty image`);
  const rgb = grab(bmp, bmp.width, bmp.height);
  bmp.close();
  return rgb;
}

// ------------------------------------------------------------------ MP4 sample tables
async function readBytes(file, start, len) {
  return new DataView(await file.slice(start, start + len).arrayBuffer());
}

function* boxes(dv, start, end) {
  let p = start;
  while (p + 8 <= end) {
    let size = dv.getUint32(p), hdr = 8;
    const type = String.fromCharCode(dv.getUint8(p + 4), dv.getUint8(p + 5), dv.getUint8(p + 6), dv.getUint8(p + 7));
    if (size === 1) { size = Number(dv.getBigUint64(p + 8)); hdr = 16; } else if (size === 0) size = end - p;
    if (size < hdr || p + size > end) return;
    yield { type, start: p + hdr, end: p + size };
    p += size;
  }
}
const child = (dv, b, type) => { for (const c of boxes(dv, b.start, b.end)) if (c.type === type) return c; return null; };

/** Presentation timestamps (seconds, ascending) of an MP4/MOV's video frames, or null. */
export async function mp4FrameTimes(file) {
  let p = 0, moov = null;
  while (p + 16 <= file.size) {  // top-level boxes: read headers only until moov
    const h = await readBytes(file, p, 16);
    let size = h.getUint32(0);
    const type = String.fromCharCode(h.getUint8(4), h.getUint8(5), h.getUint8(6), h.getUint8(7));
    if (size === 1) size = Number(h.getBigUint64(8)); else if (size === 0) size = file.size - p;
    if (size < 8) return null;
    if (type === 'moov') { if (p + size > file.size) return null; moov = await readBytes(file, p, size); break; }
    p += size;
  }
  if (!moov) return null;
  for (const trak of boxes(moov, 8, moov.byteLength)) {
    if (trak.type !== 'trak') continue;
    const mdia = child(moov, trak, 'mdia'); if (!mdia) continue;
    const hdlr = child(moov, mdia, 'hdlr');
    if (!hdlr || String.fromCharCode(...[0, 1, 2, 3].map((i) => moov.getUint8(hdlr.start + 8 + i))) !== 'vide') continue;
    const mdhd = child(moov, mdia, 'mdhd');
    const v1 = moov.getUint8(mdhd.start) === 1;
    const timescale = moov.getUint32(mdhd.start + (v1 ? 20 : 12));
    const minf = child(moov, mdia, 'minf'), stbl = minf && child(moov, minf, 'stbl');
    if (!stbl) return null;
    const stts = child(moov, stbl, 'stts'); if (!stts) return null;
    const dts = [];
    let t = 0;
    for (let i = 0, n = moov.getUint32(stts.start + 4); i < n; i++) {
      const cnt = moov.getUint32(stts.start + 8 + 8 * i), delta = moov.getUint32(stts.start + 12 + 8 * i);
      for (let k = 0; k < cnt; k++) { dts.push(t); t += delta; }
    }
    const ctts = child(moov, stbl, 'ctts');
    const pts = dts.slice();
    if (ctts) {
      const v = moov.getUint8(ctts.start);
      let s = 0;
      for (let i = 0, n = moov.getUint32(ctts.start + 4); i < n; i++) {
        const cnt = moov.getUint32(ctts.start + 8 + 8 * i);
        const off = v ? moov.getInt32(ctts.start + 12 + 8 * i) : moov.getUint32(ctts.start + 12 + 8 * i);
        for (let k = 0; k < cnt && s < pts.length; k++) pts[s++] += off;
      }
    }
    let shift = 0;  // an edit list's media_time: where presentation starts
    const edts = child(moov, trak, 'edts'), elst = edts && child(moov, edts, 'elst');
    if (elst && moov.getUint32(elst.start + 4) > 0) {
      const v = moov.getUint8(elst.start);
      const mt = v ? Number(moov.getBigInt64(elst.start + 16)) : moov.getInt32(elst.start + 12);
      if (mt > 0) shift = mt;
    }
    pts.sort((a, b) => a - b);
    return { times: pts.map((x) => (x - shift) / timescale), timescale };
  }
  return null;
}

// ------------------------------------------------------------------ video
function once(el, ok, bad, ms, what) {
  return new Promise((resolve, reject) => {
    const done = (f, v) => { clearTimeout(timer); el.removeEventListener(ok, onOk); el.removeEventListener(bad, onBad); f(v); };
    const onOk = () => done(resolve), onBad = () => done(reject, new InputError('unreadable', what));
    const timer = setTimeout(() => done(reject, new InputError('unreadable', `${what} (timed out)`)), ms);
    el.addEventListener(ok, onOk); el.addEventListener(bad, onBad);
  });
}

/** Open a video file: {video, width, height, times (per frame, s) , nFrames, fps, estimated, close()}. */
export async function openVideo(file) {
  const url = URL.createObjectURL(file);
  const video = document.createElement('video');
  video.muted = true; video.preload = 'auto'; video.playsInline = true;
  const close = () => { video.removeAttribute('src'); video.load(); URL.revokeObjectURL(url); };
  try {
    const loaded = once(video, 'loadeddata', 'error', 15000, `cannot read video ${file.name}: the browser cannot decode it`);
    video.src = url;
    await loaded;
    if (!video.videoWidth || !video.videoHeight) throw new InputError('unreadable', `${file.name}: no video track`);
    let mp4 = null;
    try { mp4 = await mp4FrameTimes(file); } catch (e) { mp4 = null; }
    let times, estimated = false;
    if (mp4 && mp4.times.length) times = mp4.times;
    else {  // not an MP4 (or no sample table): 30 frames/s over the duration
      estimated = true;
      const n = Math.max(1, Math.floor((video.duration || 0) * 30));
      times = Array.from({ length: n }, (_, i) => i / 30);
    }
    const fps = times.length > 1 ? (times.length - 1) / (times.at(-1) - times[0]) : null;
    return { video, width: video.videoWidth, height: video.videoHeight, times, nFrames: times.length, fps, estimated, close };
  } catch (e) {
    close();
    throw e instanceof InputError ? e : new InputError('unreadable', `cannot read video ${file.name}: ${e.message}`);
  }
}

/** Seek to frame i (the middle of its display interval) and return its RGB pixels. */
export async function videoFrame(v, i) {
  const t0 = v.times[i], t1 = i + 1 < v.times.length ? v.times[i + 1] : t0 + (v.fps ? 1 / v.fps : 1 / 30);
  const t = Math.max(0, (t0 + t1) / 2);
  const seeked = once(v.video, 'seeked', 'error', 10000, `frame ${i}: the browser could not seek to it`);
  // 'seeked' can fire before the new frame is presented: also wait for the frame callback
  const shown = new Promise((res) => (v.video.requestVideoFrameCallback
    ? v.video.requestVideoFrameCallback((now, meta) => res(meta)) : res(null)));
  v.video.currentTime = t;
  await seeked;
  await Promise.race([shown, new Promise((res) => setTimeout(res, 1000))]);
  return (await yuvFrame(v.video)) ?? grab(v.video, v.width, v.height);
}

// BT.601 limited range, as PyAV's to_ndarray('rgb24') (swscale's default matrix) converts: the
// browser's own conversion follows the stream's tag (BT.709 for HD) and moves pixels by several
// grey levels, so the decoder's planes are converted here (99.5% of values equal msvit's)
const SUB = { I420: [2, 2], I422: [2, 1], I444: [1, 1] };

/** The displayed frame's Y/U/V planes -> RGB, or null when the browser hands out no planes. */
export async function yuvFrame(source) {
  if (typeof VideoFrame === 'undefined') return null;
  let vf;
  try { vf = new VideoFrame(source); } catch (e) { return null; }
  try {
    const sub = SUB[vf.format];
    if (!sub || vf.colorSpace?.fullRange) return null;
    const w = vf.visibleRect.width, h = vf.visibleRect.height;
    const buf = new Uint8Array(vf.allocationSize());
    const layout = await vf.copyTo(buf);
    const [sx, sy] = sub, out = new Uint8ClampedArray(w * h * 3);
    const [pY, pU, pV] = layout;
    for (let y = 0; y < h; y++) {
      const cy = Math.floor(y / sy);
      for (let x = 0; x < w; x++) {
        const cx = Math.floor(x / sx);
        const Y = buf[pY.offset + y * pY.stride + x] - 16;
        const U = buf[pU.offset + cy * pU.stride + cx] - 128, V = buf[pV.offset + cy * pV.stride + cx] - 128;
        const o = 3 * (y * w + x);
        out[o] = Math.round(1.164383 * Y + 1.596027 * V);
        out[o + 1] = Math.round(1.164383 * Y - 0.391762 * U - 0.812968 * V);
        out[o + 2] = Math.round(1.164383 * Y + 2.017232 * U);
      }
    }
    return { data: out, width: w, height: h };
  } finally { vf.close(); }
}

export { frameIndices };
