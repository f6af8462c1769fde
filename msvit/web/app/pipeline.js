// msvit.predict's rules after detection, ported line for line: select_face, crop_box, the
// classifier's letterbox + ImageNet normalisation, sigmoid, frame_indices and aggregate.
import { letterbox, cropRGB } from './resize.js';

const f32 = Math.fround;
export const T_FAKE = 0.8, T_REAL = 0.2, VOTE_AT = 0.5;
const MEAN = [0.485, 0.456, 0.406].map(f32), STD = [0.229, 0.224, 0.225].map(f32);

const area = (b) => f32(Math.max(0, f32(b[2] - b[0])) * Math.max(0, f32(b[3] - b[1])));

/** select_face: confidence >= confThres, keep the largest, skip it under minFaceRatio. */
export function selectFace(faces, h, w, confThres = 0.5, minFaceRatio = 0.01) {
  const conf = faces.filter((f) => f.score >= confThres);
  if (!conf.length) return { face: null, status: 'no_face', nFaces: 0, ratio: null };
  let best = conf[0];
  for (const f of conf) if (area(f.box) > area(best.box)) best = f;  // first of equal areas
  const ratio = f32(area(best.box) / f32(h * w));
  if (ratio < minFaceRatio) return { face: null, status: 'face_too_small', nFaces: conf.length, ratio };
  return { face: best, status: 'ok', nFaces: conf.length, ratio };
}

/** crop_box: margin x width/height each side (int pads), clipped; integer [x1, y1, x2, y2]. */
export function cropBox(box, h, w, margin = 0.2) {
  const [x1, y1, x2, y2] = box, m = f32(margin);
  const pw = Math.trunc(f32(f32(x2 - x1) * m)), ph = Math.trunc(f32(f32(y2 - y1) * m));
  return [Math.max(Math.trunc(f32(x1 - pw)), 0), Math.max(Math.trunc(f32(y1 - ph)), 0),
    Math.min(Math.trunc(f32(x2 + pw)), w), Math.min(Math.trunc(f32(y2 + ph)), h)];
}

/** The letterboxed uint8 crop (size x size RGB) of a frame's crop box. */
export function faceCrop(rgb, cb, size) {
  return letterbox(cropRGB(rgb, cb[0], cb[1], cb[2], cb[3]), size);
}

// every uint8 value's normalised float per channel, computed op by op in float32 as numpy does:
// a lookup is bit-identical to the arithmetic and several times faster
const LUT = [0, 1, 2].map((ch) => Float32Array.from({ length: 256 }, (_, v) => f32(f32(f32(v / 255) - MEAN[ch]) / STD[ch])));

/** uint8 HWC RGB letterboxed crops -> float32 NCHW ImageNet-normalised (msvit.preprocess.normalize). */
export function normalize(crops, size) {
  const plane = size * size, x = new Float32Array(crops.length * 3 * plane);
  crops.forEach((c, n) => {
    for (let ch = 0; ch < 3; ch++) {
      const lut = LUT[ch], d = c.data, o = (n * 3 + ch) * plane;
      for (let i = 0; i < plane; i++) x[o + i] = lut[d[i * 3 + ch]];
    }
  });
  return x;
}

/** msvit.metrics.sigmoid (float64, clipped). */
export const sigmoid = (z) => 1 / (1 + Math.exp(-Math.min(Math.max(z, -500), 500)));

/** frame_indices: unique ints of linspace(0, n-1, num) truncated, ascending. */
export function frameIndices(nFrames, numFrames = 20) {
  if (nFrames <= 0 || numFrames <= 0) return [];
  const s = new Set(), stop = nFrames - 1;
  for (let i = 0; i < numFrames; i++) {
    // numpy linspace: start + i*step, the last point exactly stop
    const v = numFrames === 1 ? 0 : (i === numFrames - 1 ? stop : i * (stop / (numFrames - 1)));
    s.add(Math.trunc(v));
  }
  return [...s].sort((a, b) => a - b);
}

/** aggregate: one P(fake) from per-frame P (conf | mean | vote), DeepGuard's rules. */
export function aggregate(p, mode = 'conf') {
  if (!p.length) throw new Error('no frame probabilities to aggregate');
  const n = p.length, mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  if (mode === 'mean') return mean(p);
  if (mode === 'vote') return p.filter((v) => v > VOTE_AT).length / n;
  if (mode === 'conf') {
    const fakes = p.filter((v) => v > T_FAKE);
    if (fakes.length > Math.floor(n / 2.5)) return mean(fakes);
    const reals = p.filter((v) => v < T_REAL);
    if (reals.length > 0.9 * n) return mean(reals);
    return mean(p);
  }
  throw new Error(`unknown aggregation ${mode}; choose one of conf, mean, vote`);
}

/** One frame's detection and crop -> a record with msvit-predict's FrameResult fields. */
export function frameRecord(index, rgb, faces, opts) {
  const sel = selectFace(faces, rgb.height, rgb.width, opts.confThres, opts.minFaceRatio);
  const fr = { index, status: sel.status, n_faces: sel.nFaces, box: null, crop_box: null, score: null,
    face_ratio: sel.ratio, logit: null, p_fake: null, p_fake_flip: null };
  if (sel.face) {
    fr.box = sel.face.box.slice();
    fr.crop_box = cropBox(sel.face.box, rgb.height, rgb.width, opts.margin);
    fr.score = sel.face.score;
    if (fr.crop_box[2] <= fr.crop_box[0] || fr.crop_box[3] <= fr.crop_box[1]) {
      fr.status = 'face_too_small'; fr.crop_box = null;
    }
  }
  return fr;
}
