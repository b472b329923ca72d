// Line charts drawn as SVG: per-epoch curves with axes, a legend and a hover readout.
//
// A chart redraws itself at its container's width, so it stays readable in a
// narrow window. Series colors come from the CSS classes series-0 ... series-7.

import { formatNumber, h, replace, s } from "./dom.js";

const MARGIN = { top: 12, right: 16, bottom: 40, left: 60 };
const HEIGHT = 260;
// Below this many points per series, each point also gets a marker.
const MARKER_LIMIT = 40;
export const PALETTE_SIZE = 8;

/**
 * Create a chart. `options`:
 *   series: [{key, label, xs, ys, colorIndex}] with ys null where a value is missing
 *   xLabel, yLabel: axis titles; logY: log-scale y axis; emptyText: shown without data
 *   xMax: the x axis reaches at least this far, such as the last planned epoch
 * Returns the chart element. Call `element.update(options)` to redraw it with new values.
 */
export function lineChart(options) {
  const plot = h("div", { class: "chart-plot" });
  const readout = h("p", { class: "chart-readout muted", "aria-hidden": "true" }, "\u00a0");
  const legend = h("ul", { class: "legend" });
  const figure = h("figure", { class: "chart" }, plot, legend, readout);
  let current = { ...options };
  let width = 0;

  const draw = () => {
    replace(legend, legendItems(current.series));
    if (width > 0) replace(plot, drawChart(current, width, readout));
  };
  new ResizeObserver((entries) => {
    const newWidth = Math.floor(entries[0].contentRect.width);
    if (newWidth > 0 && newWidth !== width) {
      width = newWidth;
      draw();
    }
  }).observe(plot);

  figure.update = (changes) => {
    current = { ...current, ...changes };
    draw();
  };
  draw();
  return figure;
}

function legendItems(series) {
  return series.map((item) =>
    h("li", {}, h("span", { class: `swatch series-${item.colorIndex % PALETTE_SIZE}` }), item.label),
  );
}

// Scales -------------------------------------------------------------------------

/** Round tick values between min and max, about `count` of them. */
function niceTicks(min, max, count = 5, integer = false) {
  if (!(max > min)) return [min];
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 5, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= rough);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  return ticks;
}

function logTicks(min, max) {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  if (high - low < 2) return niceTicks(min, max, 4).filter((value) => value > 0);
  const stride = Math.ceil((high - low) / 6);
  const ticks = [];
  for (let power = low; power <= high; power += stride) ticks.push(10 ** power);
  return ticks.filter((value) => value >= min && value <= max);
}

function extent(values) {
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return [min, max];
}

function makeScales(series, width, logY, xMax) {
  const xs = series.flatMap((item) => item.xs);
  const ys = series.flatMap((item) => item.ys.filter((y) => y !== null && Number.isFinite(y) && (!logY || y > 0)));
  if (!xs.length || !ys.length) return null;
  let [x0, x1] = extent(xs);
  if (xMax) [x0, x1] = [Math.min(x0, 1), Math.max(x1, xMax)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  let [y0, y1] = extent(ys);
  if (logY) {
    [y0, y1] = y0 === y1 ? [y0 / 2, y1 * 2] : [y0, y1];
  } else {
    const pad = y0 === y1 ? Math.abs(y0) * 0.1 || 1 : (y1 - y0) * 0.05;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const fy = logY ? Math.log10 : (value) => value;
  return {
    x: (value) => MARGIN.left + ((value - x0) / (x1 - x0)) * plotWidth,
    y: (value) => MARGIN.top + (1 - (fy(value) - fy(y0)) / (fy(y1) - fy(y0))) * plotHeight,
    xTicks: niceTicks(x0, x1, Math.max(2, Math.floor(plotWidth / 80)), true),
    yTicks: logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5),
    xInvert: (px) => x0 + ((px - MARGIN.left) / plotWidth) * (x1 - x0),
    plotWidth,
    plotHeight,
  };
}

// Drawing ------------------------------------------------------------------------

function drawChart(options, width, readout) {
  const { series, xLabel = "epoch", yLabel = "", logY = false, xMax = null, emptyText = "No values yet." } = options;
  const svg = s("svg", {
    width,
    height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`,
    role: "img",
    "aria-label": `${yLabel} by ${xLabel}`,
  });
  const scales = makeScales(series, width, logY, xMax);
  if (!scales) {
    svg.append(s("text", { x: width / 2, y: HEIGHT / 2, class: "chart-empty", "text-anchor": "middle" }, emptyText));
    return svg;
  }
  svg.append(drawAxes(scales, xLabel, yLabel));
  series.forEach((item) => svg.append(drawSeries(item, scales, logY)));
  svg.append(hoverLayer(series, scales, readout, logY));
  return svg;
}

function drawAxes(scales, xLabel, yLabel) {
  const group = s("g", { class: "axes" });
  const bottom = MARGIN.top + scales.plotHeight;
  for (const tick of scales.yTicks) {
    const y = scales.y(tick);
    group.append(
      s("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + scales.plotWidth, y1: y, y2: y }),
      s("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, formatNumber(tick, 3)),
    );
  }
  for (const tick of scales.xTicks) {
    const x = scales.x(tick);
    group.append(
      s("line", { class: "tick", x1: x, x2: x, y1: bottom, y2: bottom + 5 }),
      s("text", { x, y: bottom + 18, "text-anchor": "middle" }, formatNumber(tick, 6)),
    );
  }
  group.append(
    s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left + scales.plotWidth, y1: bottom, y2: bottom }),
    s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: bottom }),
    s("text", { class: "axis-title", x: MARGIN.left + scales.plotWidth / 2, y: HEIGHT - 4, "text-anchor": "middle" }, xLabel),
    s(
      "text",
      { class: "axis-title", x: 0, y: 0, "text-anchor": "middle", transform: `translate(14 ${MARGIN.top + scales.plotHeight / 2}) rotate(-90)` },
      yLabel,
    ),
  );
  return group;
}

/** Draw one series as a path, broken where a value is missing, with markers when points are few. */
function drawSeries(item, scales, logY) {
  const color = `series-${item.colorIndex % PALETTE_SIZE}`;
  const group = s("g", { class: `series ${color}`, dataset: { series: item.key } });
  let d = "";
  let penDown = false;
  let count = 0;
  const markers = [];
  item.xs.forEach((xValue, index) => {
    const yValue = item.ys[index];
    if (yValue === null || !Number.isFinite(yValue) || (logY && yValue <= 0)) {
      penDown = false;
      return;
    }
    const x = scales.x(xValue).toFixed(1);
    const y = scales.y(yValue).toFixed(1);
    d += `${penDown ? "L" : "M"}${x} ${y}`;
    penDown = true;
    count += 1;
    markers.push([x, y]);
  });
  group.append(s("path", { class: "line", d, dataset: { points: count } }));
  if (count <= MARKER_LIMIT) {
    for (const [x, y] of markers) group.append(s("circle", { class: "marker", cx: x, cy: y, r: 2.5 }));
  }
  return group;
}

/** Create a transparent layer that shows the values at the epoch nearest the pointer. */
function hoverLayer(series, scales, readout, logY) {
  const group = s("g", { class: "hover" });
  const guide = s("line", { class: "guide", y1: MARGIN.top, y2: MARGIN.top + scales.plotHeight, visibility: "hidden" });
  const area = s("rect", { x: MARGIN.left, y: MARGIN.top, width: scales.plotWidth, height: scales.plotHeight, class: "hover-area" });
  const xs = [...new Set(series.flatMap((item) => item.xs))].sort((a, b) => a - b);

  area.addEventListener("pointermove", (event) => {
    const box = area.ownerSVGElement.getBoundingClientRect();
    const target = scales.xInvert(event.clientX - box.left);
    const nearest = xs.reduce((best, x) => (Math.abs(x - target) < Math.abs(best - target) ? x : best), xs[0]);
    guide.setAttribute("x1", scales.x(nearest));
    guide.setAttribute("x2", scales.x(nearest));
    guide.setAttribute("visibility", "visible");
    const parts = series.map((item) => {
      const index = item.xs.indexOf(nearest);
      const value = index === -1 ? null : item.ys[index];
      return `${item.label} ${formatNumber(value, 5)}`;
    });
    readout.textContent = `epoch ${nearest}: ${parts.join(" · ")}`;
  });
  area.addEventListener("pointerleave", () => {
    guide.setAttribute("visibility", "hidden");
    readout.textContent = "\u00a0";
  });
  group.append(guide, area);
  return group;
}
