// Drawing: a frame with its faces boxed and P(fake), per-frame bars, status lines.
const fmt = (p) => (p === null || p === undefined ? '–' : p.toFixed(3));

/** A result card: {root, canvas, bars, line}. */
export function card(parent, title) {
  const root = document.createElement('article');
  root.className = 'card';
  root.innerHTML = '<header><span class="name"></span><span class="verdict"></span></header>' +
    '<canvas></canvas><div class="bars"></div><p class="line">working…</p>';
  root.querySelector('.name').textContent = title;
  parent.prepend(root);
  return { root, canvas: root.querySelector('canvas'), bars: root.querySelector('.bars'), line: root.querySelector('.line'),
    verdict: root.querySelector('.verdict') };
}

/** The frame (scaled to fit 640 px), every face in grey, the chosen one coloured with its P(fake). */
export function drawFrame(canvas, rgb, faces, fr) {
  const s = Math.min(1, 640 / rgb.width);
  canvas.width = Math.round(rgb.width * s); canvas.height = Math.round(rgb.height * s);
  const full = new ImageData(rgb.width, rgb.height);
  for (let i = 0, n = rgb.width * rgb.height; i < n; i++) {
    full.data[4 * i] = rgb.data[3 * i]; full.data[4 * i + 1] = rgb.data[3 * i + 1];
    full.data[4 * i + 2] = rgb.data[3 * i + 2]; full.data[4 * i + 3] = 255;
  }
  const tmp = new OffscreenCanvas(rgb.width, rgb.height);
  tmp.getContext('2d').putImageData(full, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 2;
  const px = Math.max(14, Math.round(canvas.width / 24));  // readable once the card shrinks the canvas
  ctx.font = `${px}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(2, px / 6);
  for (const f of faces) {
    const chosen = fr.box && f.box.every((v, k) => v === fr.box[k]);
    const [x1, y1, x2, y2] = f.box.map((v) => v * s);
    ctx.strokeStyle = !chosen ? '#999' : fr.p_fake >= 0.5 ? '#d33' : '#2a2';
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (chosen && fr.p_fake !== null) {
      const label = `P(fake) ${fmt(fr.p_fake)}`;
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillRect(x1, Math.max(0, y1 - px - 6), ctx.measureText(label).width + 8, px + 6);
      ctx.fillStyle = '#fff';
      ctx.fillText(label, x1 + 4, Math.max(px, y1 - 5));
    }
  }
}

/** One bar per sampled frame: height P(fake), red at or above the threshold, grey without a face. */
export function bars(el, frames, threshold) {
  el.replaceChildren(...frames.map((f) => {
    const b = document.createElement('span');
    b.className = f.p_fake === null ? 'bar none' : f.p_fake >= threshold ? 'bar fake' : 'bar real';
    b.style.height = `${Math.max(2, Math.round(60 * (f.p_fake ?? 0.03)))}px`;
    b.title = `frame ${f.index}: ${f.p_fake === null ? f.status : `P(fake) ${fmt(f.p_fake)}`}`;
    return b;
  }));
}

/** A progress text, or a finished record's status line and verdict. */
export function say(el, what) {
  if (typeof what === 'string') { el.line.textContent = what; return; }
  const r = what;
  el.root.dataset.status = r.status;
  el.verdict.textContent = r.verdict ? `${r.verdict.toUpperCase()} · P(fake) ${fmt(r.p_fake)}` : r.status;
  el.verdict.className = `verdict ${r.verdict ?? 'none'}`;
  const used = r.kind === 'image' ? '' : ` · ${r.frames_used}/${r.frames_sampled} frames with a face (${r.agg})`;
  el.line.textContent = r.verdict ? `${r.status}${used}${r.message ? ' · ' + r.message : ''}` : `${r.status}: ${r.message}`;
}
