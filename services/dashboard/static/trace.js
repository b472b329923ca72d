// The step-trace panel: the first training step of a job as four stages, from
// GET /v1/jobs/{id}/trace: forward pass, loss, backward pass (the chain rule,
// layer by layer), and the optimizer's update of every parameter.
//
// Arrays arrive as {shape, values} when small and {shape, summary} when large.

import { formatNumber, h } from "./dom.js";

/** Build the panel's content for one trace. */
export function traceView(trace) {
  const parameterNames = new Set(trace.update.parameters.map((parameter) => parameter.name));
  return h(
    "div",
    { class: "trace" },
    chainRuleSummary(trace),
    stage("1. Forward pass", "Each layer maps its input to z = x·W + b and then to a = activation(z).", forwardRows(trace, parameterNames)),
    stage("2. Loss", "How wrong the prediction is, and which way each output should move.", lossRows(trace)),
    stage("3. Backward pass", "The chain rule from the output back to the first layer.", backwardRows(trace)),
    stage("4. Update", updateNote(trace.update), updateRows(trace.update)),
  );
}

function stage(title, note, rows) {
  return h(
    "section",
    { class: "trace-stage" },
    h("h3", {}, title),
    h("p", { class: "muted" }, note),
    h("table", { class: "trace-table" }, h("tbody", {}, rows)),
  );
}

function row(label, formula, value) {
  return h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "formula" }, formula), h("td", { class: "value-cell" }, value));
}

function groupRow(title) {
  return h("tr", { class: "group" }, h("th", { colspan: 3, scope: "rowgroup" }, title));
}

// Arrays -------------------------------------------------------------------------

function shapeText(shape) {
  return shape.length ? shape.join("×") : "scalar";
}

/** Show an encoded array: one number, a vector, a small matrix, or a summary. */
function arrayView(encoded, key = undefined) {
  const attributes = { class: "array", dataset: key ? { trace: key } : undefined };
  if (encoded === null || encoded === undefined) return h("span", { class: "muted" }, "—");
  if (encoded.summary) {
    const { mean, std, min, max, l2_norm: norm } = encoded.summary;
    return h(
      "span",
      { ...attributes, class: "array array-summary" },
      h("span", { class: "shape" }, shapeText(encoded.shape)),
      ` mean ${formatNumber(mean, 4)}, std ${formatNumber(std, 4)}, min ${formatNumber(min, 4)}, max ${formatNumber(max, 4)}, L2 norm ${formatNumber(norm, 4)}`,
    );
  }
  const flat = [encoded.values].flat(Infinity);
  if (flat.length === 1) return h("span", { ...attributes, class: "array scalar" }, formatNumber(flat[0]));
  if (encoded.shape.length === 2) return matrix(encoded, attributes);
  return h("span", attributes, `[${flat.map((value) => formatNumber(value, 4)).join(", ")}]`);
}

function matrix(encoded, attributes) {
  const rows = encoded.values.map((values) => h("tr", {}, values.map((value) => h("td", {}, formatNumber(value, 4)))));
  return h(
    "span",
    attributes,
    h("span", { class: "shape" }, shapeText(encoded.shape)),
    h("span", { class: "matrix-scroll" }, h("table", { class: "matrix" }, h("tbody", {}, rows))),
  );
}

function single(encoded) {
  const flat = encoded && encoded.values !== undefined ? [encoded.values].flat(Infinity) : [];
  return flat.length === 1 ? flat[0] : null;
}

// Stages -------------------------------------------------------------------------

function forwardRows(trace, parameterNames) {
  const rows = [
    row("x", `input batch: ${trace.batch_size} of ${trace.n_train} training rows, after preprocessing`, arrayView(trace.input, "input")),
  ];
  for (const layer of trace.forward) {
    if (layer.type === "dense") {
      const bias = parameterNames.has(`${layer.layer}.bias`) ? " + b" : "";
      const units = layer.units === 1 ? "1 unit" : `${layer.units} units`;
      rows.push(groupRow(`${layer.layer}: dense, ${units}, ${layer.activation}`));
      rows.push(row("z", `x·W${bias}`, arrayView(layer.z, `z:${layer.layer}`)));
      rows.push(row("a", `${layer.activation}(z)`, arrayView(layer.a, `a:${layer.layer}`)));
    } else {
      rows.push(groupRow(`${layer.layer}: dropout, rate ${layer.rate}`));
      rows.push(row("output", `x ⊙ mask / (1 − ${layer.rate})`, arrayView(layer.output, `output:${layer.layer}`)));
    }
  }
  rows.push(row("ŷ", "prediction: the last layer's a", arrayView(trace.output, "prediction")));
  return rows;
}

function lossRows(trace) {
  const { loss } = trace;
  return [
    row("y", "target", arrayView(trace.targets, "targets")),
    row("L", `${loss.type}, reduction ${loss.reduction}`, h("span", { class: "array scalar", dataset: { trace: "loss" } }, formatNumber(loss.value))),
    row("∂L/∂ŷ", "gradient of the loss with respect to the prediction", arrayView(loss.grad_output, "grad-output")),
  ];
}

function backwardRows(trace) {
  const rows = [];
  for (const layer of trace.backward) {
    if (layer.type === "dense") {
      rows.push(groupRow(`${layer.layer}: dense`));
      rows.push(row("∂L/∂a", "from the layer above (or the loss)", arrayView(layer.grad_output, `grad-a:${layer.layer}`)));
      rows.push(row("∂L/∂z", "∂L/∂a ⊙ activation′(z)", arrayView(layer.grad_z, `grad-z:${layer.layer}`)));
      rows.push(row("∂z/∂W", "local gradient: the layer's input x", arrayView(layer.local_gradient.weight, `local-gradient:${layer.layer}`)));
      rows.push(row("∂L/∂W", "xᵀ·∂L/∂z", arrayView(layer.grad_params.weight, `grad:${layer.layer}.weight`)));
      if (layer.grad_params.bias) {
        rows.push(row("∂L/∂b", "∂L/∂z summed over the batch", arrayView(layer.grad_params.bias, `grad:${layer.layer}.bias`)));
      }
    } else {
      rows.push(groupRow(`${layer.layer}: dropout`));
      rows.push(row("∂L/∂output", "from the layer above", arrayView(layer.grad_output, `grad-a:${layer.layer}`)));
    }
    if (layer.grad_input) {
      const formula = layer.type === "dense" ? "∂L/∂z·Wᵀ, passed to the layer below" : "mask ⊙ ∂L/∂output / (1 − rate)";
      rows.push(row("∂L/∂x", formula, arrayView(layer.grad_input, `grad-x:${layer.layer}`)));
    }
  }
  return rows;
}

function updateNote(update) {
  const parts = [`${update.optimizer} with lr ${formatNumber(update.lr)}; gradient norm ${formatNumber(update.grad_norm, 4)}`];
  if (update.clip_grad_norm !== null) {
    parts.push(update.clipped ? `clipped to ${formatNumber(update.clip_grad_norm)}` : `below the clipping norm ${formatNumber(update.clip_grad_norm)}`);
  }
  return `${parts.join("; ")}.`;
}

function updateRows(update) {
  const rows = [];
  for (const parameter of update.parameters) {
    rows.push(groupRow(`${parameter.name} (${shapeText(parameter.shape)})`));
    rows.push(row("before", "initial value", arrayView(parameter.before, `before:${parameter.name}`)));
    rows.push(row("∂L/∂θ", "gradient the optimizer received", arrayView(parameter.grad, `update-grad:${parameter.name}`)));
    rows.push(row("update", "after − before", arrayView(parameter.update, `update:${parameter.name}`)));
    rows.push(row("after", "value after the first step", arrayView(parameter.after, `after:${parameter.name}`)));
  }
  return rows;
}

/** For a network of one weight, the whole step in one line of arithmetic. */
function chainRuleSummary(trace) {
  const [parameter, ...others] = trace.update.parameters;
  const [layer] = trace.backward;
  const linear = trace.forward.length === 1 && trace.forward[0].activation === "linear";
  if (others.length || !linear || trace.batch_size !== 1) return null;
  const x = single(layer.local_gradient.weight);
  const w = single(parameter.before);
  const gradOutput = single(trace.loss.grad_output);
  const grad = single(parameter.grad);
  if ([x, w, gradOutput, grad].some((value) => value === null)) return null;
  const after = single(parameter.after);
  const f = (value) => formatNumber(value);
  const lr = trace.update.lr;
  // Plain SGD's first step is w - lr·g; show the arithmetic when that is what happened.
  const plainStep = Math.abs(w - lr * grad - after) <= 1e-9 * Math.max(1, Math.abs(after));
  const lines = [
    ["forward", `ŷ = w·x = ${f(w)} × ${f(x)} = ${f(single(trace.output))}`],
    ["loss", `L = ${f(trace.loss.value)}, and ∂L/∂ŷ = ${f(gradOutput)}`],
    ["backward", `∂L/∂w = ∂L/∂ŷ · ∂ŷ/∂w = ${f(gradOutput)} × ${f(x)} = ${f(grad)}`],
    ["update", plainStep ? `w ← w − lr·∂L/∂w = ${f(w)} − ${f(lr)} × (${f(grad)}) = ${f(after)}` : `w: ${f(w)} → ${f(after)}`],
  ];
  return h(
    "dl",
    { class: "chain-rule", "aria-label": "the whole step for this one-weight network" },
    lines.map(([stageName, text]) => h("div", {}, h("dt", {}, stageName), h("dd", {}, text))),
  );
}
