// The credit-assignment heatmap: each layer's gradient norm in each epoch, on a log color scale.
//
// The history has one column "grad_norm.<layer>" per dense layer: the L2 norm of
// dL/d(that layer's parameters), averaged over the epoch's batches. Rows are layers
// (input side at the top), columns are the epochs the history returned.

import { formatNumber, h, replace, s } from "./dom.js";

const ROW_HEIGHT = 26;
const LABEL_WIDTH = 86;
const AXIS_HEIGHT = 30;
const LEGEND_HEIGHT = 50;
const RIGHT = 12;
// The color ramp, from small to large norms; the legend uses the same stops.
const RAMP = ["#1d2b64", "#225e8f", "#1f8f8a", "#6ab56a", "#e8d44d"];

/** Return the "grad_norm.<layer>" column names in history order, with their layer names. */
function gradientColumns(columns) {
  return Object.keys(columns)
    .filter((name) => name.startsWith("grad_norm."))
    .map((name) => ({ name, layer: name.slice("grad_norm.".length) }));
}

/**
 * Create the heatmap for history `columns`. `element.update(columns, plannedEpochs)`
 * redraws it; with `plannedEpochs`, cells are sized for that many columns, so the map
 * of a running job fills up from the left.
 */
export function gradientHeatmap(columns) {
  const plot = h("div", { class: "heatmap-plot" });
  const figure = h("figure", { class: "heatmap" }, plot);
  let current = columns;
  let planned = 0;
  let width = 0;
  const draw = () => {
    if (width > 0) replace(plot, drawHeatmap(current, width, planned));
  };
  new ResizeObserver((entries) => {
    const newWidth = Math.floor(entries[0].contentRect.width);
    if (newWidth > 0 && newWidth !== width) {
      width = newWidth;
      draw();
    }
  }).observe(plot);
  figure.update = (newColumns, plannedEpochs = 0) => {
    current = newColumns;
    planned = plannedEpochs;
    draw();
  };
  return figure;
}

function drawHeatmap(columns, width, plannedEpochs) {
  const layers = gradientColumns(columns);
  const epochs = columns.epoch || [];
  if (!layers.length || !epochs.length) {
    return h("p", { class: "muted" }, "No gradient norms recorded yet.");
  }
  const values = layers.flatMap(({ name }) => columns[name].filter((value) => value !== null && value > 0));
  const [low, high] = values.length ? [Math.min(...values), Math.max(...values)] : [1, 1];
  const color = (value) => (value === null || !(value > 0) ? null : rampColor(logPosition(value, low, high)));

  const gridWidth = Math.max(width - LABEL_WIDTH - RIGHT, 40);
  const cellWidth = gridWidth / Math.max(epochs.length, plannedEpochs);
  const gridHeight = layers.length * ROW_HEIGHT;
  const height = gridHeight + AXIS_HEIGHT + LEGEND_HEIGHT;
  const svg = s("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `gradient norm per layer for ${epochs.length} epochs, log color scale`,
  });
  svg.append(s("defs", {}, hatchPattern()));

  layers.forEach(({ name, layer }, row) => {
    const y = row * ROW_HEIGHT;
    const group = s("g", { class: "heatmap-row", dataset: { layer } });
    group.append(s("text", { x: LABEL_WIDTH - 8, y: y + ROW_HEIGHT / 2 + 4, "text-anchor": "end" }, layer));
    columns[name].forEach((value, column) => {
      const fill = color(value) || "url(#heatmap-missing)";
      const cell = s("rect", {
        class: "cell",
        x: (LABEL_WIDTH + column * cellWidth).toFixed(2),
        y,
        width: (cellWidth + 0.5).toFixed(2), // a slight overlap hides seams between cells
        height: ROW_HEIGHT - 2,
        fill,
        dataset: { epoch: epochs[column] },
      });
      cell.append(s("title", {}, `${layer}, epoch ${epochs[column]}: ${formatNumber(value, 4)}`));
      group.append(cell);
    });
    svg.append(group);
  });
  svg.append(epochAxis(epochs, cellWidth, gridHeight));
  svg.append(legend(low, high, gridHeight + AXIS_HEIGHT, Math.max(Math.min(gridWidth - 90, 320), 60)));
  return svg;
}

function epochAxis(epochs, cellWidth, top) {
  const group = s("g", { class: "axes" });
  // About one label per 70 pixels.
  const step = Math.max(1, Math.ceil(70 / cellWidth));
  const labelled = [];
  for (let column = 0; column < epochs.length; column += step) labelled.push(column);
  // The last epoch gets a label too, unless the label before it is too close.
  const last = epochs.length - 1;
  if (labelled[labelled.length - 1] !== last) {
    if (last - labelled[labelled.length - 1] < step / 2) labelled.pop();
    labelled.push(last);
  }
  for (const column of labelled) {
    const x = LABEL_WIDTH + (column + 0.5) * cellWidth;
    group.append(s("text", { x, y: top + 14, "text-anchor": "middle" }, String(epochs[column])));
  }
  group.append(s("text", { class: "axis-title", x: LABEL_WIDTH - 8, y: top + 14, "text-anchor": "end" }, "epoch"));
  return group;
}

function legend(low, high, top, width) {
  const group = s("g", { class: "legend-scale", transform: `translate(${LABEL_WIDTH} ${top})` });
  const gradient = s("linearGradient", { id: "heatmap-ramp", x1: 0, x2: 1, y1: 0, y2: 0 });
  RAMP.forEach((stop, index) => gradient.append(s("stop", { offset: index / (RAMP.length - 1), "stop-color": stop })));
  group.append(
    s("defs", {}, gradient),
    s("rect", { x: 0, y: 0, width, height: 10, fill: "url(#heatmap-ramp)" }),
    s("text", { x: 0, y: 24, "text-anchor": "start" }, formatNumber(low, 3)),
    s("text", { x: width, y: 24, "text-anchor": "end" }, formatNumber(high, 3)),
    s("text", { class: "axis-title", x: 0, y: 40, "text-anchor": "start" }, "gradient L2 norm, mean over the epoch's batches (log scale)"),
    s("rect", { x: width + 12, y: 0, width: 10, height: 10, fill: "url(#heatmap-missing)" }),
    s("text", { x: width + 26, y: 9 }, "no value"),
  );
  return group;
}

function hatchPattern() {
  return s(
    "pattern",
    { id: "heatmap-missing", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
    s("rect", { width: 6, height: 6, class: "missing-bg" }),
    s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "missing-line" }),
  );
}

/** Position of `value` between `low` and `high` on a log scale, from 0 to 1. */
function logPosition(value, low, high) {
  if (high <= low) return 0.5;
  return (Math.log(value) - Math.log(low)) / (Math.log(high) - Math.log(low));
}

function rampColor(position) {
  const scaled = Math.min(Math.max(position, 0), 1) * (RAMP.length - 1);
  const index = Math.min(Math.floor(scaled), RAMP.length - 2);
  const [a, b] = [RAMP[index], RAMP[index + 1]].map(hexToRgb);
  const t = scaled - index;
  const mixed = a.map((channel, i) => Math.round(channel + (b[i] - channel) * t));
  return `rgb(${mixed.join(",")})`;
}

function hexToRgb(hex) {
  return [1, 3, 5].map((offset) => parseInt(hex.slice(offset, offset + 2), 16));
}
