// OpenCV's cv2.resize for uint8 RGB, ported so the browser's pixels equal msvit's:
// INTER_LINEAR (msvit.preprocess.letterbox; BlazeFace upscaling) and INTER_AREA (BlazeFace
// downscaling). Images are {data: Uint8Array|Uint8ClampedArray (RGB, row-major), width, height}.

const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;
const f32 = Math.fround;

// cvRound: round half to even, as saturate_cast<uchar>(float) does
function roundEven(v) {
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}
const sat8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

// Source offsets and fixed-point weights of one axis (resize.cpp, the !area_mode branch).
function linearTab(ssize, dsize) {
  const scale = 1 / (dsize / ssize);
  const ofs = new Int32Array(dsize), a = new Int16Array(dsize * 2);
  for (let d = 0; d < dsize; d++) {
    let f = f32((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = f32(f - s);
    if (s < 0) { f = 0; s = 0; }
    if (s >= ssize - 1) { f = 0; s = ssize - 1; }
    ofs[d] = s;
    a[2 * d] = Math.round(f32(f32(1 - f) * COEF_SCALE));
    a[2 * d + 1] = Math.round(f32(f * COEF_SCALE));
  }
  return { ofs, a };
}

/** cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR) for uint8 RGB. */
export function resizeLinear(src, w, h) {
  const sw = src.width, sh = src.height, S = src.data, cn = 3;
  const xt = linearTab(sw, w), yt = linearTab(sh, h);
  const rowW = w * cn;
  const hrow = (sy) => {  // horizontal pass of one source row: int sums scaled by 2^11
    const out = new Int32Array(rowW), base = sy * sw * cn;
    for (let dx = 0; dx < w; dx++) {
      const sx = xt.ofs[dx], a0 = xt.a[2 * dx], a1 = xt.a[2 * dx + 1];
      const p = base + sx * cn, q = sx + 1 < sw ? p + cn : p;
      for (let c = 0; c < cn; c++) out[dx * cn + c] = S[p + c] * a0 + S[q + c] * a1;
    }
    return out;
  };
  const cache = new Map();
  const row = (sy) => { if (!cache.has(sy)) cache.set(sy, hrow(sy)); return cache.get(sy); };
  const D = new Uint8ClampedArray(rowW * h);
  for (let dy = 0; dy < h; dy++) {
    const sy = yt.ofs[dy], b0 = yt.a[2 * dy], b1 = yt.a[2 * dy + 1];
    const r0 = row(sy), r1 = row(Math.min(sy + 1, sh - 1));
    for (const k of cache.keys()) if (k < sy) cache.delete(k);
    const o = dy * rowW;
    // OpenCV's SIMD vertical pass (VResizeLinearVec_32s8u): ((b0*(s0>>4))>>16 + (b1*(s1>>4))>>16 + 2)>>2
    const vec = rowW - (rowW % 16);  // SIMD over 16-byte blocks, the tail in scalar code
    for (let x = 0; x < rowW; x++) {
      const v = x < vec ? (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2
        : (r0[x] * b0 + r1[x] * b1 + (1 << 21)) >> 22;
      D[o + x] = sat8(v);
    }
  }
  return { data: D, width: w, height: h };
}

// computeResizeAreaTab (resize.cpp)
function areaTab(ssize, dsize, scale) {
  const tab = [];
  for (let d = 0; d < dsize; d++) {
    const fs1 = d * scale, fs2 = fs1 + scale;
    const cell = Math.min(scale, ssize - fs1);
    let s1 = Math.ceil(fs1), s2 = Math.floor(fs2);
    s2 = Math.min(s2, ssize - 1);
    s1 = Math.min(s1, s2);
    if (s1 - fs1 > 1e-3) tab.push([d, s1 - 1, f32((s1 - fs1) / cell)]);
    for (let s = s1; s < s2; s++) tab.push([d, s, f32(1 / cell)]);
    if (fs2 - s2 > 1e-3) tab.push([d, s2, f32(Math.min(Math.min(fs2 - s2, 1), cell) / cell)]);
  }
  return tab;
}

/** cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA) for a uint8 RGB downscale. */
export function resizeArea(src, w, h) {
  const sw = src.width, sh = src.height, S = src.data, cn = 3;
  const sx = sw / w, sy = sh / h;
  const isx = Math.round(sx), isy = Math.round(sy);
  if (Math.abs(sx - isx) < 2.220446049250313e-16 && Math.abs(sy - isy) < 2.220446049250313e-16) {
    return areaFast(src, w, h, isx, isy);
  }
  const xtab = areaTab(sw, w, 1 / (w / sw)), ytab = areaTab(sh, h, 1 / (h / sh));
  const rowW = w * cn, D = new Uint8ClampedArray(rowW * h);
  const buf = new Float32Array(rowW), sum = new Float32Array(rowW);
  let prev = ytab[0][0];
  for (const [dy, srow, beta] of ytab) {
    buf.fill(0);
    const base = srow * sw * cn;
    for (const [dx, sxi, alpha] of xtab) {
      const di = dx * cn, si = base + sxi * cn;
      for (let c = 0; c < cn; c++) buf[di + c] = f32(buf[di + c] + f32(S[si + c] * alpha));
    }
    if (dy !== prev) {
      const o = prev * rowW;
      for (let x = 0; x < rowW; x++) { D[o + x] = sat8(roundEven(sum[x])); sum[x] = f32(beta * buf[x]); }
      prev = dy;
    } else {
      for (let x = 0; x < rowW; x++) sum[x] = f32(sum[x] + f32(beta * buf[x]));
    }
  }
  const o = prev * rowW;
  for (let x = 0; x < rowW; x++) D[o + x] = sat8(roundEven(sum[x]));
  return { data: D, width: w, height: h };
}

// resizeAreaFast: integer factors, the mean of each block
function areaFast(src, w, h, fx, fy) {
  const sw = src.width, S = src.data, cn = 3, D = new Uint8ClampedArray(w * h * cn);
  const scale = f32(1 / (fx * fy));
  for (let dy = 0; dy < h; dy++) for (let dx = 0; dx < w; dx++) for (let c = 0; c < cn; c++) {
    let s = 0;
    for (let j = 0; j < fy; j++) for (let i = 0; i < fx; i++) s += S[((dy * fy + j) * sw + dx * fx + i) * cn + c];
    D[(dy * w + dx) * cn + c] = fx === 2 && fy === 2 ? (s + 2) >> 2 : sat8(roundEven(f32(s * scale)));
  }
  return { data: D, width: w, height: h };
}

/** msvit.preprocess.letterbox_geometry: [top, left, height, width] of the resized image. */
export function letterboxGeometry(h, w, size) {
  if (Math.max(h, w) !== size) {
    const scale = size / Math.max(h, w);
    h = Math.max(1, pyRound(h * scale)); w = Math.max(1, pyRound(w * scale));
  }
  return [Math.floor((size - h) / 2), Math.floor((size - w) / 2), h, w];
}

/** Python's round(): half to even. */
export function pyRound(v) { return roundEven(v); }

/** msvit.preprocess.letterbox: longest side -> size (INTER_LINEAR), centre zero-pad. */
export function letterbox(rgb, size) {
  const [top, left, nh, nw] = letterboxGeometry(rgb.height, rgb.width, size);
  const r = (nh !== rgb.height || nw !== rgb.width) ? resizeLinear(rgb, nw, nh) : rgb;
  const out = new Uint8ClampedArray(size * size * 3);
  for (let y = 0; y < nh; y++) {
    out.set(r.data.subarray(y * nw * 3, (y + 1) * nw * 3), ((top + y) * size + left) * 3);
  }
  return { data: out, width: size, height: size };
}

/** rgb[y1:y2, x1:x2] as a new image. */
export function cropRGB(rgb, x1, y1, x2, y2) {
  const w = x2 - x1, h = y2 - y1, out = new Uint8ClampedArray(w * h * 3);
  for (let y = 0; y < h; y++) {
    const s = ((y1 + y) * rgb.width + x1) * 3;
    out.set(rgb.data.subarray(s, s + w * 3), y * w * 3);
  }
  return { data: out, width: w, height: h };
}
