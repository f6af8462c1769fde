// The whole pipeline on RGB frames: BlazeFace -> largest face -> margin crop -> letterbox ->
// normalise -> classifier -> P(fake); records carry msvit-predict --json's fields.
import { BlazeFace, SIZE as DET_SIZE } from './blazeface.js';
import { loadModel } from './runtime.js';
import { frameRecord, faceCrop, normalize, sigmoid, aggregate } from './pipeline.js';

export class Pipeline {
  static async create(config, root) {
    const p = new Pipeline();
    p.config = config;
    const url = (f) => new URL(f, root).href;
    const [det, cls] = await Promise.all([
      loadModel(url(config.detector), { sortOutputs: true }), loadModel(url(config.model))]);
    p.detector = new BlazeFace({ run: (x) => det.run(x, [1, DET_SIZE, DET_SIZE, 3]) },
      Math.min(config.defaults.conf_thres, 0.5));
    p.classifier = cls;
    p.size = config.input_size;
    p.runtime = { detector: det.name, classifier: cls.name };
    return p;
  }

  get opts() {
    const d = this.config.defaults;
    return { confThres: d.conf_thres, minFaceRatio: d.min_face_ratio, margin: d.margin };
  }

  /** One frame: faces found, chosen face, crop and P(fake). Returns {fr, faces, crop}. */
  async frame(index, rgb, times) {
    let t = performance.now();
    const faces = await this.detector.detect(rgb);
    const fr = frameRecord(index, rgb, faces, this.opts);
    times.detect = (times.detect || 0) + performance.now() - t;
    let crop = null;
    if (fr.crop_box) {
      t = performance.now();
      crop = faceCrop(rgb, fr.crop_box, this.size);
      const x = normalize([crop], this.size);
      times.crop = (times.crop || 0) + performance.now() - t;
      t = performance.now();
      const [logit] = await this.classifier.run(x, [1, 3, this.size, this.size]);
      times.classify = (times.classify || 0) + performance.now() - t;
      fr.logit = logit[0];
      fr.p_fake = sigmoid(logit[0] / (this.config.temperature ?? 1));  // msvit-calibrate's temperature
    }
    return { fr, faces, crop };
  }

  /** A new record with msvit-predict's fields (status 'error' until finished). */
  record(source, kind, agg = null) {
    return { source, kind, status: 'error', message: '', verdict: null, threshold: this.config.threshold,
      agg, n_frames: null, width: null, height: null, fps: null, face_detector: 'blazeface',
      model: this.config.model_name, p_fake: null, frames_sampled: 0, frames_used: 0, faces: 0,
      times_ms: {}, frames: [] };
  }

  /** Fill verdict, P and counts from rec.frames (as Detector._run and _no_verdict do). */
  finish(rec, agg) {
    const p = rec.frames.filter((f) => f.p_fake !== null).map((f) => f.p_fake);
    rec.frames_sampled = rec.frames.length;
    rec.frames_used = p.length;
    rec.faces = rec.frames.reduce((s, f) => s + f.n_faces, 0);
    if (p.length) {
      rec.p_fake = agg ? aggregate(p, agg) : p[0];
      rec.verdict = rec.p_fake >= rec.threshold ? 'fake' : 'real';
      if (rec.status !== 'truncated') rec.status = 'ok';
    } else {
      const ratios = rec.frames.map((f) => f.face_ratio).filter((r) => r !== null);
      const d = this.config.defaults;
      if (rec.frames.some((f) => f.status === 'face_too_small') && ratios.length) {
        const r = Math.max(...ratios);
        rec.status = 'face_too_small';
        rec.message = `faces found but the largest covers ${(100 * r).toFixed(2)}% of the frame, under ` +
          `--min-face-ratio ${d.min_face_ratio}`;
      } else {
        rec.status = rec.status === 'truncated' ? 'truncated' : 'no_face';
        const what = rec.kind === 'image' ? 'image' : `${rec.frames.length} sampled frames`;
        rec.message = `no face with confidence >= --conf-thres ${d.conf_thres} in the ${what} (detector blazeface); ` +
          'no score given';
      }
      rec.p_fake = null; rec.verdict = null;
    }
    return rec;
  }
}
