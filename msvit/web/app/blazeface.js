// MediaPipe BlazeFace full-range decoded exactly as msvit.predict.faces.BlazeFace does:
// letterbox to 192 px (INTER_AREA down, INTER_LINEAR up), [-1, 1] pixels, SSD anchors,
// sigmoid scores, weighted NMS (IoU 0.3), and the tiles rule when the whole frame finds nothing.
// float32 arithmetic is kept with Math.fround where numpy computes in float32.
import { resizeArea, resizeLinear, pyRound, cropRGB } from './resize.js';

const f32 = Math.fround;
export const SIZE = 192;
const NMS_IOU = 0.3;
const TILE_SIDE = 0.6, TILE_OVERLAP = 0.25;

/** Anchor centres [x0, y0, x1, y1, ...] of the full-range model (stride 4, one per cell). */
export function anchors(size = SIZE, stride = 4) {
  const fm = Math.floor(size / stride), out = new Float32Array(fm * fm * 2);
  let k = 0;
  for (let y = 0; y < fm; y++) for (let x = 0; x < fm; x++) {
    out[k++] = f32((x + 0.5) / fm); out[k++] = f32((y + 0.5) / fm);
  }
  return out;
}

// numpy's float32 sum of a 1-D array (pairwise: 8 accumulators from 8 elements on)
function npSum(a) {
  const n = a.length;
  if (n < 8) { let r = 0; for (const v of a) r = f32(r + v); return r; }
  const r = a.slice(0, 8).map(f32);
  let i = 8;
  for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[i + j]);
  let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
  for (; i < n; i++) res = f32(res + a[i]);
  return res;
}

/** MediaPipe's weighted NMS (faces.weighted_nms): boxes [[x1,y1,x2,y2]], scores [] -> [{box, score}]. */
export function weightedNms(boxes, scores, iouThres = NMS_IOU) {
  const order = scores.map((s, i) => i).sort((a, b) => (scores[b] - scores[a]) || (a - b));
  let rem = order;
  const out = [];
  while (rem.length) {
    const top = boxes[rem[0]];
    const a0 = f32(f32(top[2] - top[0]) * f32(top[3] - top[1]));
    const group = [], rest = [];
    rem.forEach((idx, k) => {
      const b = boxes[idx];
      const ix = Math.max(f32(Math.min(b[2], top[2]) - Math.max(b[0], top[0])), 0);
      const iy = Math.max(f32(Math.min(b[3], top[3]) - Math.max(b[1], top[1])), 0);
      const inter = f32(ix * iy);
      const area = f32(f32(b[2] - b[0]) * f32(b[3] - b[1]));
      const iou = f32(inter / Math.max(f32(f32(area + a0) - inter), 1e-12));
      (k === 0 || iou > iouThres ? group : rest).push(idx);
    });
    const w = group.map((i) => scores[i]);
    const merged = [0, 0, 0, 0];
    group.forEach((idx, k) => { for (let c = 0; c < 4; c++) merged[c] = f32(merged[c] + f32(boxes[idx][c] * w[k])); });
    const ws = npSum(w);
    out.push({ box: merged.map((v) => f32(v / ws)), score: scores[rem[0]] });
    rem = rest;
  }
  return out;
}

export class BlazeFace {
  /** model: {run(Float32Array NHWC 1x192x192x3) -> Promise<[regressors, scores]>} */
  constructor(model, minScore = 0.5) {
    this.model = model; this.minScore = minScore; this.anchors = anchors(); this.name = 'blazeface';
  }

  /** All faces in an RGB image, boxes in its pixels, clipped ({box, score}). */
  async detect(rgb) {
    const faces = await this.detectTiled(rgb);
    const w = rgb.width, h = rgb.height, clip = (v, hi) => Math.min(Math.max(v, 0), hi);
    return faces.map((f) => ({ box: [clip(f.box[0], w), clip(f.box[1], h), clip(f.box[2], w), clip(f.box[3], h)],
      score: f.score }))
      .filter((f) => Math.max(0, f32(f.box[2] - f.box[0])) * Math.max(0, f32(f.box[3] - f.box[1])) > 0);
  }

  async detectTiled(rgb) {
    const faces = await this.detectOnce(rgb);
    const w = rgb.width, h = rgb.height;
    const side = Math.trunc(Math.min(h, w) * TILE_SIDE);
    if (faces.length || side < 2 * SIZE) return faces;
    const step = Math.max(1, Math.trunc(side * (1 - TILE_OVERLAP)));
    const grid = (n) => {
      const s = new Set();
      for (let v = 0; v <= Math.max(n - side, 0); v += step) s.add(v);
      s.add(Math.max(n - side, 0));
      return [...s].sort((a, b) => a - b);
    };
    const found = [];
    for (const y of grid(h)) for (const x of grid(w)) {
      for (const f of await this.detectOnce(cropRGB(rgb, x, y, x + side, y + side))) {
        const b = f.box;
        found.push({ box: [f32(b[0] + x), f32(b[1] + y), f32(b[2] + x), f32(b[3] + y)], score: f.score });
      }
    }
    if (found.length < 2) return found;
    return weightedNms(found.map((f) => f.box), found.map((f) => f.score));
  }

  async detectOnce(rgb) {
    const s = SIZE, h = rgb.height, w = rgb.width;
    const scale = s / Math.max(h, w);
    const nw = Math.max(1, pyRound(w * scale)), nh = Math.max(1, pyRound(h * scale));
    const img = (nw === w && nh === h) ? rgb : (scale < 1 ? resizeArea : resizeLinear)(rgb, nw, nh);
    const x = new Float32Array(s * s * 3).fill(-1);  // black padding, as MediaPipe letterboxes
    const top = Math.floor((s - nh) / 2), left = Math.floor((s - nw) / 2);
    for (let yy = 0; yy < nh; yy++) for (let xx = 0; xx < nw * 3; xx++) {
      x[((top + yy) * s + left) * 3 + xx] = f32(f32(img.data[yy * nw * 3 + xx] / 127.5) - 1);
    }
    const [reg, raw] = await this.model.run(x);
    const nd = reg.length / raw.length, boxes = [], scores = [];
    for (let i = 0; i < raw.length; i++) {
      const r = Math.min(Math.max(raw[i], -100), 100);
      const sc = f32(1 / (1 + Math.exp(-r)));
      if (sc < this.minScore) continue;
      const o = i * nd;
      const cx = f32(f32(reg[o] / s) + this.anchors[2 * i]), cy = f32(f32(reg[o + 1] / s) + this.anchors[2 * i + 1]);
      const bw = f32(reg[o + 2] / s), bh = f32(reg[o + 3] / s);
      if (!(bw > 0 && bh > 0)) continue;
      boxes.push([f32(cx - f32(bw / 2)), f32(cy - f32(bh / 2)), f32(cx + f32(bw / 2)), f32(cy + f32(bh / 2))]);
      scores.push(sc);
    }
    const sc32 = f32(scale);  // numpy: float32 / Python float computes in float32
    return weightedNms(boxes, scores).map(({ box, score }) => ({
      box: [f32(f32(f32(box[0] * s) - left) / sc32), f32(f32(f32(box[1] * s) - top) / sc32),
        f32(f32(f32(box[2] * s) - left) / sc32), f32(f32(f32(box[3] * s) - top) / sc32)],
      score,
    }));
  }
}
