// chart.js - a small line chart on a canvas: a fixed window of samples per
// series, drawn crisp on high-DPI screens, colours from the CSS theme.

export class LineChart {
  constructor(canvas, { window = 120 } = {}) {
    this.canvas = canvas;
    this.window = window; // samples kept per series
    this.series = new Map(); // name -> { color, points: [{t, v}] }
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(name, color, t, v) {
    let s = this.series.get(name);
    if (!s) {
      s = { color, points: [] };
      this.series.set(name, s);
    }
    s.points.push({ t, v: Math.max(0, v) });
    if (s.points.length > this.window) s.points.shift();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const line = css.getPropertyValue('--line').trim();
    const muted = css.getPropertyValue('--muted').trim();
    const font = '11px ' + css.getPropertyValue('--sans');

    let tmax = 0, tfirst = Infinity, vmax = 1;
    for (const s of this.series.values())
      for (const p of s.points) {
        tmax = Math.max(tmax, p.t);
        tfirst = Math.min(tfirst, p.t);
        vmax = Math.max(vmax, p.v);
      }
    // The axis grows with the history up to the window, so a fresh page
    // shows its first samples across the chart rather than in a corner.
    const span = Math.min(this.window * 1000, Math.max(30000, tmax - tfirst)); // ms shown
    const tmin = tmax - span;
    const top = niceCeil(vmax * 1.1);
    const padL = 48, padR = 10, padT = 8, padB = 20;
    const x = (t) => padL + ((t - tmin) / span) * (w - padL - padR);
    const y = (v) => padT + (1 - v / top) * (h - padT - padB);

    g.font = font;
    g.lineWidth = 1;
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      g.strokeStyle = line;
      g.beginPath();
      g.moveTo(padL, yy);
      g.lineTo(w - padR, yy);
      g.stroke();
      g.fillStyle = muted;
      g.textAlign = 'right';
      g.fillText(short(v), padL - 8, yy);
    }
    g.textAlign = 'center';
    g.textBaseline = 'alphabetic';
    const step = span > 60000 ? 30 : 10;
    for (let s = 0; s <= span / 1000; s += step) {
      if (!tmax) break;
      const xx = x(tmax - s * 1000);
      g.fillText(s === 0 ? 'now' : `-${s}s`, Math.min(Math.max(xx, padL + 12), w - padR - 12), h - 4);
    }

    for (const s of this.series.values()) {
      const pts = s.points.filter((p) => p.t >= tmin);
      if (pts.length < 2) continue;
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.lineJoin = 'round';
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
      g.stroke();
      // a soft fill under the line
      g.lineTo(x(pts[pts.length - 1].t), y(0));
      g.lineTo(x(pts[0].t), y(0));
      g.closePath();
      g.globalAlpha = 0.08;
      g.fillStyle = s.color;
      g.fill();
      g.globalAlpha = 1;
    }
  }
}

function niceCeil(v) {
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

export function short(v) {
  if (v >= 1e9) return (v / 1e9).toFixed(v >= 1e10 ? 0 : 1) + 'G';
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
  return v >= 10 || v === 0 ? Math.round(v).toString() : v.toFixed(1);
}
