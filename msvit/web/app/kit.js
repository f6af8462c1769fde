// Kit mode (index.html?kit or ?kit=URL): runs a conformance kit (docs/kit.md, schema 1) through
// this page's own pipeline and shows pass/fail per stage, naming the first stage that departs.
// Each stage is fed the kit's own input (its frame PNG, its crop box, its crop PNG), as an app's
// test would, so one stage's difference cannot fail the next; the run document it builds is the
// same JSON `python -m msvit.kit check KIT RUN.json` reads (window.msvit.kit.run).
import { decodeImage } from './media.js';
import { frameIndices, aggregate, selectFace, cropBox, faceCrop, normalize, sigmoid } from './pipeline.js';

export const STAGES = ['decode', 'sample', 'detect', 'select', 'crop_box', 'letterbox', 'normalize', 'classify',
  'aggregate', 'end_to_end'];
const DETECTOR_INPUT = { blazeface: 192, 'blazeface-short': 128 };
const MATCH_IOU = 0.5;

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (bytes) => hex(await crypto.subtle.digest('SHA-256', bytes));
const maxAbsDiff = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
const fmtBox = (b) => `[${b.map((v) => v.toFixed(1)).join(', ')}]`;

function iou(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy, union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** Per-channel mean and population std (float64 sums) of a float32 NCHW (1, 3, S, S) tensor. */
function channelStats(x) {
  const plane = x.length / 3, mean = [], std = [];
  for (let c = 0; c < 3; c++) {
    let s = 0, ss = 0;
    for (let i = c * plane; i < (c + 1) * plane; i++) s += x[i];
    const m = s / plane;
    for (let i = c * plane; i < (c + 1) * plane; i++) ss += (x[i] - m) ** 2;
    mean.push(m); std.push(Math.sqrt(ss / plane));
  }
  return { mean, std };
}

async function png(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return decodeImage(new File([await r.blob()], url.pathname.split('/').pop()));
}

/** Run every case of the kit in folder `kitUrl` through `pipe`: {run (the run document), crops
 * (Map "caseId/index" -> {run, kit}: the page's letterboxed crop and the kit's, RGB bytes)}. */
export async function runKit(pipe, kit, kitUrl, progress = () => {}) {
  const s = kit.settings, size = pipe.size, opts = { confThres: s.conf_thres, minFaceRatio: s.min_face_ratio };
  const cases = [], crops = new Map();
  for (const [ci, kc] of kit.cases.entries()) {
    progress(`case ${ci + 1}/${kit.cases.length}: ${kc.id}`);
    const idx = kc.kind === 'video' ? frameIndices(kc.n_frames, s.num_frames) : [0];
    const byIndex = new Map(kc.frames.map((f) => [f.index, f]));
    const frames = [], e2e = [];
    for (const i of idx) {
      const kf = byIndex.get(i);
      if (!kf || !kf.file) { frames.push({ index: i }); continue; }  // a frame the kit did not sample
      const rgb = await png(new URL(kf.file, kitUrl));
      const f = { index: i, rgb_sha256: await sha256(rgb.data) };
      const faces = (await pipe.detector.detect(rgb)).slice().sort((a, b) => b.score - a.score);
      f.detections = faces.map((d) => ({ box: Array.from(d.box), score: d.score }));
      const sel = selectFace(faces, rgb.height, rgb.width, opts.confThres, opts.minFaceRatio);
      f.status = sel.status;
      if (sel.face) {
        f.face = { box: Array.from(sel.face.box), score: sel.face.score, ratio: sel.ratio };
        f.crop_box = cropBox(sel.face.box, rgb.height, rgb.width, s.margin);
        const [own] = await pipe.classifier.run(normalize([faceCrop(rgb, f.crop_box, size)], size), [1, 3, size, size]);
        e2e.push(sigmoid(own[0]));
      }
      if (kf.crop_box && kf.crop) {  // isolated stages: the kit's crop box, the kit's crop
        const mine = faceCrop(rgb, kf.crop_box, size), theirs = await png(new URL(kf.crop.file, kitUrl));
        f.crop = { rgb_sha256: await sha256(mine.data) };
        crops.set(`${kc.id}/${i}`, { run: mine.data, kit: theirs.data });
        const x = normalize([theirs], size);
        f.tensor = { sha256: await sha256(x.buffer), ...channelStats(x) };
        const [logit] = await pipe.classifier.run(x, [1, 3, size, size]);
        f.logit = logit[0];
        f.p_fake = sigmoid(logit[0]);
      }
      frames.push(f);
    }
    const ps = frames.filter((f) => f.p_fake != null).map((f) => f.p_fake);
    const p = !ps.length ? null : kc.kind === 'video' ? aggregate(ps, s.agg) : ps[0];
    const pe = !e2e.length ? null : kc.kind === 'video' ? aggregate(e2e, s.agg) : e2e[0];
    cases.push({ id: kc.id, kind: kc.kind, source: kc.source, frames,
      status: ps.length ? 'ok' : (frames.some((f) => f.status === 'face_too_small') ? 'face_too_small' : 'no_face'),
      p_fake: p, verdict: p === null ? null : (p >= s.threshold ? 'fake' : 'real'), n_frames: kc.n_frames,
      width: kc.width, height: kc.height, p_fake_e2e: pe });
  }
  const run = { schema: 1, kind: 'run', created_by: `msvit web app (${pipe.runtime.classifier}; faces: ${pipe.runtime.detector})`,
    artifact: { file: pipe.config.model.split('/').pop(), format: pipe.config.model.split('.').pop(),
      precision: pipe.config.precision, runtime: pipe.runtime.classifier },
    settings: { ...s }, tolerances: {}, cases };
  return { run, crops };
}

/** msvit.kit.check in the page: per-stage pass/fail/skip counts, every failure, the first stage.
 * `crops` (from runKit) measures a letterboxed crop that is not byte-identical to the kit's. */
export function checkKit(kit, run, crops = new Map()) {
  const stages = Object.fromEntries(STAGES.map((st) => [st, { passed: 0, failed: 0, skipped: 0 }]));
  const failures = [], notes = [], tol = Object.fromEntries(Object.entries(kit.tolerances).map(([k, v]) => [k, v.value]));
  const ok = (st) => { stages[st].passed++; };
  const skip = (st) => { stages[st].skipped++; };
  const fail = (st, kc, kf, what, k = null, r = null, t = null) => {
    stages[st].failed++;
    failures.push({ case: kc.id, frame: kf ? kf.index : null, stage: st, what, kit: k, run: r, tolerance: t });
  };
  const detIn = DETECTOR_INPUT[kit.settings.face_detector] ?? 192, ct = kit.settings.conf_thres ?? 0.5;
  const thr = kit.settings.threshold ?? 0.5;
  for (const kc of kit.cases) {
    const rc = run.cases.find((c) => c.id === kc.id);
    if (!rc) { fail('sample', kc, null, 'case missing from the run'); continue; }
    if (kc.kind === 'video') {
      const ki = kc.frames.map((f) => f.index), ri = rc.frames.map((f) => f.index);
      if (JSON.stringify(ki) === JSON.stringify(ri)) ok('sample');
      else fail('sample', kc, null, `sampled frames ${ri.slice(0, 8)}, kit ${ki.slice(0, 8)}`, ki, ri);
    } else skip('sample');
    const side = Math.max(kc.width || 0, kc.height || 0), px = tol.box_px * side / detIn;
    for (const kf of kc.frames) {
      const r = rc.frames.find((f) => f.index === kf.index);
      if (!r) continue;
      // decode (the page decodes the kit's lossless PNG: equal bytes expected)
      if (!r.rgb_sha256 || !kf.rgb_sha256) skip('decode');
      else if (r.rgb_sha256 === kf.rgb_sha256) ok('decode');
      else fail('decode', kc, kf, 'decoded frame differs (rgb_sha256)', kf.rgb_sha256, r.rgb_sha256);
      // detect
      if (!r.detections || !kf.detections) skip('detect');
      else {
        const kd = kf.detections.filter((d) => d.score >= ct), rd = r.detections.filter((d) => d.score >= ct);
        const used = new Set();
        let bad = false;
        for (const d of kd) {
          let best = [0, -1];
          rd.forEach((x, j) => { if (!used.has(j)) { const v = iou(d.box, x.box); if (v > best[0]) best = [v, j]; } });
          if (best[0] < MATCH_IOU) { fail('detect', kc, kf, `kit face ${fmtBox(d.box)} (score ${d.score.toFixed(3)}) not found`, d.box, rd.map((x) => x.box)); bad = true; break; }
          const x = rd[best[1]];
          used.add(best[1]);
          const off = maxAbsDiff(d.box, x.box);
          if (off > px) { fail('detect', kc, kf, `face box off by ${off.toFixed(2)} px (tolerance ${px.toFixed(2)} px): kit ${fmtBox(d.box)}, run ${fmtBox(x.box)}`, d.box, x.box, px); bad = true; break; }
          if (Math.abs(d.score - x.score) > tol.score) { fail('detect', kc, kf, `face score ${x.score.toFixed(4)}, kit ${d.score.toFixed(4)} (tolerance ${tol.score})`, d.score, x.score, tol.score); bad = true; break; }
        }
        if (!bad) {
          const extra = rd.filter((x, j) => !used.has(j));
          if (extra.length) fail('detect', kc, kf, `${extra.length} face(s) the kit does not have, e.g. ${fmtBox(extra[0].box)}`, null, extra[0].box);
          else ok('detect');
        }
      }
      // select
      if (r.status == null) skip('select');
      else if (r.status !== kf.status) fail('select', kc, kf, `status ${r.status}, kit ${kf.status}`, kf.status, r.status);
      else if (kf.face && r.face && maxAbsDiff(kf.face.box, r.face.box) > px) {
        fail('select', kc, kf, `chose the face at ${fmtBox(r.face.box)}, kit ${fmtBox(kf.face.box)}`, kf.face.box, r.face.box, px);
      } else ok('select');
      // crop_box
      if (kf.crop_box && r.crop_box) {
        const t = tol.crop_box_px * side / detIn + 1, d = maxAbsDiff(kf.crop_box, r.crop_box);
        if (d <= t) ok('crop_box'); else fail('crop_box', kc, kf, `crop box off by ${d} px (tolerance ${t.toFixed(1)})`, kf.crop_box, r.crop_box, t);
      } else skip('crop_box');
      // letterbox: the page's crop of the kit's box must be the kit's crop, byte for byte
      if (!kf.crop || !r.crop) skip('letterbox');
      else if (r.crop.rgb_sha256 === kf.crop.rgb_sha256) ok('letterbox');
      else {
        const px2 = crops.get(`${kc.id}/${kf.index}`);
        if (!px2 || px2.run.length !== px2.kit.length) {
          fail('letterbox', kc, kf, 'letterboxed crop differs (rgb_sha256) and its pixels are not at hand', kf.crop.rgb_sha256, r.crop.rgb_sha256);
        } else {
          let mx = 0, sum = 0;
          for (let i = 0; i < px2.run.length; i++) { const d = Math.abs(px2.run[i] - px2.kit[i]); sum += d; if (d > mx) mx = d; }
          const mn = sum / px2.run.length;
          if (mx > tol.crop_max_abs || mn > tol.crop_mean_abs) {
            fail('letterbox', kc, kf, `crop max |Δ| ${mx}, mean |Δ| ${mn.toFixed(3)} grey levels (tolerance ${tol.crop_max_abs}, ${tol.crop_mean_abs})`, null, [mx, mn], [tol.crop_max_abs, tol.crop_mean_abs]);
          } else ok('letterbox');
        }
      }
      // normalize
      if (!kf.tensor || !r.tensor) skip('normalize');
      else if (r.tensor.sha256 === kf.tensor.sha256) ok('normalize');
      else {
        const dm = maxAbsDiff(kf.tensor.mean, r.tensor.mean), ds = maxAbsDiff(kf.tensor.std, r.tensor.std);
        if (Math.max(dm, ds) > tol.tensor_stat) fail('normalize', kc, kf, `model input channel mean off by ${dm.toFixed(4)}, std by ${ds.toFixed(4)} (tolerance ${tol.tensor_stat})`, kf.tensor.mean, r.tensor.mean, tol.tensor_stat);
        else ok('normalize');
      }
      // classify
      if (kf.p_fake == null || r.p_fake == null) skip('classify');
      else {
        const d = Math.abs(kf.p_fake - r.p_fake);
        if (d <= tol.p_fake) ok('classify');
        else fail('classify', kc, kf, `|ΔP| ${d.toFixed(4)} on the kit's crop (tolerance ${tol.p_fake})`, kf.p_fake, r.p_fake, tol.p_fake);
      }
    }
    // aggregate
    if (kc.p_fake == null || rc.p_fake == null) {
      if (kc.p_fake == null && rc.p_fake == null) ok('aggregate');
      else fail('aggregate', kc, null, `P(fake) ${rc.p_fake}, kit ${kc.p_fake} (one of them has no face)`, kc.p_fake, rc.p_fake);
    } else {
      const d = Math.abs(kc.p_fake - rc.p_fake);
      if (d > tol.p_fake) fail('aggregate', kc, null, `|ΔP| ${d.toFixed(4)} (tolerance ${tol.p_fake})`, kc.p_fake, rc.p_fake, tol.p_fake);
      else if (rc.verdict !== kc.verdict && Math.abs(kc.p_fake - thr) > tol.p_fake) fail('aggregate', kc, null, `verdict ${rc.verdict}, kit ${kc.verdict}`, kc.verdict, rc.verdict);
      else {
        if (rc.verdict !== kc.verdict) notes.push(`${kc.id}: verdict ${rc.verdict} vs kit ${kc.verdict} allowed (borderline)`);
        ok('aggregate');
      }
    }
    // end_to_end
    if (rc.p_fake_e2e == null || kc.p_fake == null) skip('end_to_end');
    else {
      const d = Math.abs(kc.p_fake - rc.p_fake_e2e);
      if (d <= tol.p_fake) ok('end_to_end');
      else fail('end_to_end', kc, null, `|ΔP| ${d.toFixed(4)} of the page's whole pipeline (tolerance ${tol.p_fake})`, kc.p_fake, rc.p_fake_e2e, tol.p_fake);
    }
  }
  const first = failures.length ? failures.reduce((a, b) => (STAGES.indexOf(b.stage) < STAGES.indexOf(a.stage) ? b : a)) : null;
  for (const v of Object.values(stages)) v.verdict = v.failed ? 'fail' : v.passed ? 'pass' : 'skipped';
  return { passed: !failures.length, first_stage: first && first.stage, first_failure: first, cases: kit.cases.length,
    stages, failures, notes };
}

function render(panel, kit, report) {
  panel.replaceChildren();
  const h = document.createElement('h2');
  h.textContent = report.passed ? `Kit: PASS (${report.cases} cases conform)`
    : `Kit: FAIL at stage ${report.first_stage}`;
  h.className = report.passed ? 'pass' : 'fail';
  const table = document.createElement('table');
  table.innerHTML = '<tr><th>stage</th><th>verdict</th><th>pass</th><th>fail</th><th>skip</th></tr>';
  for (const st of STAGES) {
    const v = report.stages[st], tr = table.insertRow();
    tr.className = v.verdict;
    for (const c of [st, v.verdict, v.passed, v.failed, v.skipped]) tr.insertCell().textContent = c;
  }
  const list = document.createElement('ul');
  if (report.first_failure) {
    const f = report.first_failure, li = document.createElement('li');
    li.textContent = `first departure: ${f.stage}: ${f.case}${f.frame === null ? '' : ` frame ${f.frame}`}: ${f.what}`;
    list.append(li);
  }
  for (const f of report.failures.filter((x) => x !== report.first_failure).slice(0, 10)) {
    const li = document.createElement('li');
    li.textContent = `${f.stage}: ${f.case}${f.frame === null ? '' : ` frame ${f.frame}`}: ${f.what}`;
    list.append(li);
  }
  for (const n of report.notes) { const li = document.createElement('li'); li.textContent = `note: ${n}`; list.append(li); }
  const art = document.createElement('p');
  art.textContent = `kit for ${kit.artifact.file ?? '?'} (${kit.artifact.precision ?? '?'}, ${kit.artifact.runtime ?? '?'}), ` +
    `${kit.cases.length} cases; tolerances from the kit`;
  panel.append(h, art, table, list);
}

/** Kit mode: load the kit, run it, check it, show it. Returns {kit, run, report} or {error}. */
export async function kitMode(pipe, kitUrl, panel) {
  const base = kitUrl.href.endsWith('.json') ? new URL('./', kitUrl) : new URL(kitUrl.href.replace(/\/?$/, '/'));
  const jsonUrl = kitUrl.href.endsWith('.json') ? kitUrl : new URL('kit.json', base);
  panel.textContent = `kit mode: loading ${jsonUrl.pathname}…`;
  try {
    const r = await fetch(jsonUrl);
    if (!r.ok) throw new Error(`${jsonUrl.pathname}: HTTP ${r.status} (no kit there: export with --kit DATA)`);
    const kit = await r.json();
    if (kit.schema !== 1 || kit.kind !== 'kit') throw new Error(`${jsonUrl.pathname}: not a schema-1 kit (schema ${kit.schema}, kind ${kit.kind})`);
    const { run, crops } = await runKit(pipe, kit, base, (msg) => { panel.textContent = `kit mode: ${msg}…`; });
    const report = checkKit(kit, run, crops);
    render(panel, kit, report);
    // the page's crops as base64 RGB, for a script that checks the run with msvit.kit.check
    const cropB64 = (id, index) => {
      const d = crops.get(`${id}/${index}`)?.run;
      if (!d) return null;
      let str = '';
      for (let i = 0; i < d.length; i += 8192) str += String.fromCharCode(...d.subarray(i, i + 8192));
      return btoa(str);
    };
    return { kit: kit.artifact, run, report, error: null, cropB64 };
  } catch (e) {
    panel.textContent = `kit mode: ${e.message}`;
    return { run: null, report: null, error: String(e.message) };
  }
}
