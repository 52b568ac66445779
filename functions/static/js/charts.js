// Small live line charts in inline SVG: one series of percentages over the last minutes.
// The y axis is fixed at 0-100 % so that charts side by side compare at a glance; a null value
// (the server was offline, stopped or booting) breaks the line instead of drawing a false 0.

import { svg } from "./dom.js";

const WIDTH = 120;
const HEIGHT = 30;
const PAD = 2;

export class Sparkline {
  /** label: "CPU"; kind: a CSS modifier ("cpu", "memory") that picks the colour. */
  constructor(label, kind) {
    this.label = label;
    this.title = svg("title");
    this.area = svg("path", { class: "spark-area" });
    this.line = svg("path", { class: "spark-line" });
    this.dot = svg("circle", { class: "spark-dot", r: 2, cx: -10, cy: -10 });
    this.element = svg(
      "svg",
      {
        class: `spark spark-${kind}`,
        viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
        preserveAspectRatio: "none",
        role: "img",
        focusable: "false",
      },
      this.title,
      svg("line", { class: "spark-guide", x1: 0, x2: WIDTH, y1: y(75), y2: y(75) }),
      this.area,
      this.line,
      this.dot,
    );
  }

  /** points: [{t (ms), value (0-100 or null)}], oldest first; shows [end - span, end]. */
  update(points, end, spanMs, spanLabel) {
    const x = (t) => WIDTH * (1 - (end - t) / spanMs);
    let line = "";
    let area = "";
    let run = [];
    const flush = () => {
      if (run.length === 0) return;
      const coords = run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`);
      line += `M${coords.join("L")}`;
      area += `M${run[0][0].toFixed(1)},${HEIGHT}L${coords.join("L")}L${run.at(-1)[0].toFixed(1)},${HEIGHT}Z`;
      run = [];
    };
    let peak = null;
    let last = null;
    for (const point of points) {
      if (point.t < end - spanMs) continue;
      if (point.value === null || point.value === undefined) {
        flush();
        last = null;
        continue;
      }
      run.push([x(point.t), y(point.value)]);
      peak = peak === null ? point.value : Math.max(peak, point.value);
      last = point.value;
    }
    const tip = run.at(-1);
    flush();
    this.line.setAttribute("d", line || "M0,0");
    this.area.setAttribute("d", area || "M0,0");
    this.dot.setAttribute("cx", tip ? tip[0].toFixed(1) : -10);
    this.dot.setAttribute("cy", tip ? tip[1].toFixed(1) : -10);
    const summary =
      last === null
        ? `${this.label}, ${spanLabel}: no reading now`
        : `${this.label}, ${spanLabel}: now ${last.toFixed(0)} %, peak ${peak.toFixed(0)} %`;
    this.title.textContent = summary;
    this.element.setAttribute("aria-label", summary);
  }
}

function y(value) {
  const clamped = Math.min(100, Math.max(0, value));
  return PAD + (1 - clamped / 100) * (HEIGHT - 2 * PAD);
}
