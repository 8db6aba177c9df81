// Time-series charts (uPlot) inside an accessible <figure>: the chart is
// one image to assistive technology (role="img"), its aria-label a summary
// of what it shows; the figures themselves are in the page's tables.

import uPlot from "uplot";
import { h } from "./dom";
import type { Series } from "./figures";

export interface Line {
  label: string;
  color: string;
  /** The axis it is read against; "y" (left) unless given. */
  scale?: string;
  dash?: number[];
  format: (v: number | null) => string;
}

export interface ChartSpec {
  caption: string;
  lines: Line[];
  /** Left axis first, then an optional right one. */
  axes: { scale: string; format: (v: number) => string }[];
}

const HEIGHT = 220;
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const INK = "#3d4451";
const GRID = "#e3e6ea";

export const COLORS = ["#1f5fbf", "#b54d00", "#c4281c", "#6f3cb0", "#00796b", "#5b6472", "#a3186b", "#2e7d32"];

export class Chart {
  readonly figure: HTMLElement;
  private readonly box: HTMLDivElement;
  private readonly plot: uPlot;
  private readonly resize: ResizeObserver;
  private width = 0;

  constructor(spec: ChartSpec) {
    this.box = h("div", { class: "chart", role: "img", "aria-label": `${spec.caption}: no data yet.` });
    this.figure = h("figure", null, h("figcaption", null, spec.caption), this.box);
    const empty: uPlot.AlignedData = [[], ...spec.lines.map(() => [])];
    this.plot = new uPlot(
      {
        width: 600,
        height: HEIGHT,
        series: [
          {},
          ...spec.lines.map((l): uPlot.Series => ({
            label: l.label,
            stroke: l.color,
            width: 2,
            scale: l.scale ?? "y",
            dash: l.dash ?? [],
            value: (_u, v) => l.format(v),
          })),
        ],
        axes: [
          // Hours and minutes only: the window is one hour, so a date row
          // would only repeat today.
          {
            stroke: INK,
            grid: { stroke: GRID },
            values: (_u, splits) => splits.map((s) => clock.format(new Date(s * 1000))),
          },
          ...spec.axes.map(
            (a, i): uPlot.Axis => ({
              scale: a.scale,
              side: i === 0 ? 3 : 1,
              size: 70,
              stroke: INK,
              grid: { show: i === 0, stroke: GRID },
              values: (_u, splits) => splits.map(a.format),
            }),
          ),
        ],
        scales: {
          // Always the hour up to the latest point: with few points uPlot
          // would otherwise stretch a minute or two across the axis.
          x: { time: true, range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [max - 3600, max] },
          // Rates, shares, latencies and depths start at zero, so a flat
          // line near zero is not magnified into a cliff.
          ...Object.fromEntries(
            spec.axes.map((a) => [a.scale, { range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [0, max > 0 ? max * 1.1 : 1] }]),
          ),
        },
        cursor: { drag: { x: false, y: false } },
      },
      empty,
      this.box,
    );
    // The chart follows its container's width (uPlot sizes in pixels).
    this.resize = new ResizeObserver(() => {
      const w = Math.floor(this.box.clientWidth);
      if (w > 0 && w !== this.width) {
        this.width = w;
        this.plot.setSize({ width: w, height: HEIGHT });
      }
    });
    this.resize.observe(this.box);
  }

  update(t: number[], ys: Series[], summary: string): void {
    this.plot.setData([t, ...ys]);
    this.box.setAttribute("aria-label", summary);
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot.destroy();
  }
}

/** The latest and the highest value of a series, for a chart's label. */
export function describe(values: Series, format: (v: number | null) => string): string {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (known.length === 0) return "no data";
  return `latest ${format(known[known.length - 1] ?? null)}, highest ${format(Math.max(...known))}`;
}
