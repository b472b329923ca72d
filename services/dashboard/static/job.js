// The job view (#/jobs/<id>): status, progress, loss and metric curves, the
// per-layer gradient heatmap, the step trace, status changes and the spec.
//
// The history is read once, downsampled by the server to MAX_POINTS epochs. While
// the job is queued or running, the view follows GET /v1/jobs/{id}/events from
// the last epoch it has (Last-Event-ID "<epoch>:0"), so only newer epochs arrive,
// each as a progress event that carries the epoch's whole record.

import { download, followEvents, getJSON, postJSON } from "./api.js";
import { lineChart } from "./chart.js";
import {
  ACTIVE_STATUSES,
  formatDuration,
  formatNumber,
  h,
  jobDuration,
  jobTitle,
  notice,
  progressBar,
  replace,
  statusBadge,
  statusDetail,
  tagList,
  timeElement,
} from "./dom.js";
import { gradientHeatmap } from "./heatmap.js";
import { traceView } from "./trace.js";

// Epochs the charts get from the server at most. Longer runs come downsampled,
// keeping the first and last epoch and the extremes of the losses.
const MAX_POINTS = 500;
// Live epochs are appended; past this many points the history is fetched again, downsampled.
const RESAMPLE_AT = 2 * MAX_POINTS;
// Metrics besides the loss, in order of preference for the second chart.
const METRIC_PAIRS = [
  ["accuracy", "Accuracy"],
  ["r2", "R²"],
  ["mae", "Mean absolute error"],
];

/** Render the job `id` into `main`; return a cleanup function that stops live updates. */
export function jobView(main, id) {
  const view = new JobView(main, id);
  view.start();
  return () => view.stop();
}

class JobView {
  constructor(main, id) {
    this.main = main;
    this.id = id;
    this.path = `v1/jobs/${encodeURIComponent(id)}`;
    this.job = null;
    this.columns = null;
    this.lastEpoch = 0;
    this.stopStream = null;
    this.stopped = false;
    this.drawPending = false;
    this.refreshing = false;
    this.refreshAgain = false;
    this.resampling = false;
    this.pendingRecords = []; // epochs that arrive while a resample is in flight
    this.logY = false;
  }

  async start() {
    replace(this.main, h("p", { class: "muted" }, "Loading the job…"));
    try {
      const [job, columns] = await Promise.all([
        getJSON(this.path),
        getJSON(`${this.path}/history`, { max_points: MAX_POINTS }),
      ]);
      if (this.stopped) return;
      this.job = job;
      this.setColumns(columns);
      // The two reads run concurrently. Epochs in the history mean the job is running, even if the row was read earlier.
      if (job.status === "queued" && this.lastEpoch > 0) job.status = "running";
      this.build();
      if (ACTIVE_STATUSES.includes(job.status)) this.follow();
    } catch (error) {
      if (!this.stopped) replace(this.main, this.loadError(error));
    }
  }

  stop() {
    this.stopped = true;
    if (this.stopStream) this.stopStream();
  }

  loadError(error) {
    if (error.status === 404) {
      document.title = "Job not found · steep";
      return notice("error", "Job not found", `No job has the id ${this.id}. It may have been deleted.`, h("a", { href: "#/jobs" }, "Back to the jobs"));
    }
    const retry = h("button", { type: "button", onclick: () => this.start() }, "Try again");
    const title = error.serviceDown ? "The service is not reachable" : "The job could not be loaded";
    return notice("error", title, error.message, retry);
  }

  // Layout -----------------------------------------------------------------------

  build() {
    this.header = h("div", { class: "job-header" });
    this.message = h("div", { class: "action-message", role: "status", "aria-live": "polite" });
    this.summary = h("dl", { class: "job-summary" });
    this.liveNote = h("p", { class: "live-note muted", "aria-live": "polite" });
    this.chartNote = h("p", { class: "chart-note muted" });
    this.lossChart = lineChart({ series: [], yLabel: "loss", emptyText: "No epochs recorded yet." });
    this.metricChart = lineChart({ series: [], yLabel: "", emptyText: "No metric recorded yet." });
    this.metricSection = h("section", { class: "panel" }, h("h2", {}, "Metrics"), this.metricChart);
    this.heatmap = gradientHeatmap(this.columns);
    this.transitions = h("div", { class: "table-area" });
    const logToggle = h("button", { type: "button", class: "toggle", "aria-pressed": "false" }, "Log scale");
    logToggle.addEventListener("click", () => {
      this.logY = !this.logY;
      logToggle.setAttribute("aria-pressed", String(this.logY));
      this.draw();
    });

    replace(
      this.main,
      h("p", { class: "breadcrumb" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", h("span", { class: "job-id" }, this.id)),
      this.header,
      this.message,
      this.summary,
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Loss"), logToggle), this.liveNote, this.lossChart, this.chartNote),
      this.metricSection,
      h(
        "section",
        { class: "panel" },
        h("h2", {}, "Credit assignment"),
        h("p", { class: "muted" }, "How much gradient reaches each layer, epoch by epoch: one row per layer, one column per epoch."),
        this.heatmap,
      ),
      this.tracePanel(),
      h("section", { class: "panel" }, h("h2", {}, "Status changes"), this.transitions),
      h("section", { class: "panel" }, h("h2", {}, "Spec"), h("pre", { class: "spec" }, h("code", {}, JSON.stringify(this.job.spec, null, 2)))),
    );
    this.renderJob();
    this.draw();
  }

  /** Render everything the job row decides; keeps keyboard focus on the same action button. */
  renderJob() {
    const job = this.job;
    document.title = `${jobTitle(job)} · steep`;
    const focused = this.header.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    this.state = h("div", { class: "job-state" });
    replace(this.header, h("h1", {}, jobTitle(job)), this.state, this.actions(job));
    if (focused) this.header.querySelector(`[data-action="${focused}"]`)?.focus();
    this.renderProgress();
    replace(this.transitions, transitionTable(job.transitions));
  }

  /** Render the parts that change every epoch: the status line and the summary. */
  renderProgress() {
    const job = this.job;
    replace(this.state, statusBadge(job.status, statusDetail(job)), progressBar(job.progress));
    replace(this.summary, summaryItems(job));
  }

  actions(job) {
    const active = ACTIVE_STATUSES.includes(job.status);
    const cancel = active
      ? h(
          "button",
          { type: "button", class: "danger", disabled: job.cancel_requested, dataset: { action: "cancel" } },
          job.cancel_requested ? "Cancel requested" : "Cancel job",
        )
      : null;
    cancel?.addEventListener("click", () => this.cancel(cancel));
    const checkpoint = job.status === "running";
    const label = checkpoint ? "Latest checkpoint" : "Weights";
    const downloads = ["npz", "json"].map((format) => {
      const button = h(
        "button",
        { type: "button", disabled: job.status === "queued", dataset: { action: `download-${format}` } },
        `${label} (${format.toUpperCase()})`,
      );
      button.addEventListener("click", () => this.download(format, checkpoint));
      return button;
    });
    return h("div", { class: "actions" }, cancel, downloads);
  }

  // Actions ----------------------------------------------------------------------

  async cancel(button) {
    button.disabled = true;
    try {
      this.job = await postJSON(`${this.path}/cancel`);
      replace(this.message, "Cancel requested: the job stops at its next batch boundary.");
      this.renderJob();
    } catch (error) {
      replace(this.message, h("span", { class: "error-text" }, `Cancel failed: ${error.message}`));
      button.disabled = false;
    }
  }

  async download(format, checkpoint) {
    const query = checkpoint ? `&checkpoint=latest` : "";
    try {
      await download(`${this.path}/weights?format=${format}${query}`, `${this.id}.${format}`);
      replace(this.message);
    } catch (error) {
      replace(this.message, h("span", { class: "error-text" }, `Download failed: ${error.message}`));
    }
  }

  tracePanel() {
    const body = h("div", { class: "trace-body" }, h("p", { class: "muted" }, "Loading the trace…"));
    const details = h(
      "details",
      { class: "panel trace-panel" },
      h("summary", {}, h("h2", {}, "Step trace: the first training step")),
      h("p", { class: "muted" }, "The first batch of this job's run, computed from its spec and dataset: forward pass, loss, backward pass and update."),
      body,
    );
    let loaded = false;
    details.addEventListener("toggle", async () => {
      if (!details.open || loaded) return;
      loaded = true;
      try {
        replace(body, traceView(await getJSON(`${this.path}/trace`)));
      } catch (error) {
        loaded = false;
        replace(body, notice("error", "The trace could not be computed", error.message));
      }
    });
    return details;
  }

  // History and live updates ----------------------------------------------------

  setColumns(columns) {
    this.columns = columns.epoch ? columns : { epoch: [] };
    const epochs = this.columns.epoch;
    this.lastEpoch = epochs.length ? epochs[epochs.length - 1] : 0;
  }

  follow() {
    this.stopStream = followEvents(`${this.path}/events`, {
      lastEventId: `${this.lastEpoch}:0`,
      onEvent: (event) => this.onEvent(event),
      onError: (error, retrying) => {
        if (retrying) {
          replace(this.liveNote, "Connection lost; reconnecting…");
        } else {
          replace(this.liveNote, `Live updates stopped: ${error.message}`);
        }
      },
    });
  }

  onEvent(event) {
    const data = JSON.parse(event.data);
    if (event.event === "progress") {
      replace(this.liveNote, "Live: new epochs appear as they finish.");
      this.addRecord(data);
      this.job.progress = { ...this.job.progress, epoch: data.epoch, fraction: Math.min(data.epoch / this.job.progress.epochs, 1) };
      this.job.metrics = data;
      // A finished epoch means the job is running, even if the row read at the last status change is older.
      if (this.job.status === "queued") this.job.status = "running";
      this.renderProgress();
      this.scheduleDraw();
    } else if (event.event === "status") {
      // Show the new status now. The row read below fills in the other fields.
      this.job = { ...this.job, status: data.status, stop_reason: data.stop_reason ?? this.job.stop_reason };
      this.renderProgress();
      if (!ACTIVE_STATUSES.includes(data.status)) {
        this.stopStream();
        replace(this.liveNote);
      }
      this.refresh().then(() => this.scheduleDraw());
    }
  }

  addRecord(record) {
    if (this.resampling) {
      this.pendingRecords.push(record);
      return;
    }
    if (record.epoch <= this.lastEpoch) return;
    const columns = this.columns;
    const length = columns.epoch.length;
    for (const name of Object.keys(record)) {
      if (!(name in columns)) columns[name] = new Array(length).fill(null);
    }
    for (const name of Object.keys(columns)) {
      const value = record[name];
      columns[name].push(typeof value === "number" && Number.isFinite(value) ? value : null);
    }
    this.lastEpoch = record.epoch;
    if (columns.epoch.length > RESAMPLE_AT) this.resample();
  }

  /** Fetch the history again, downsampled, so a long live run keeps a bounded number of points. */
  async resample() {
    this.resampling = true;
    try {
      this.setColumns(await getJSON(`${this.path}/history`, { max_points: MAX_POINTS }));
    } catch {
      // Keep the points there are; the next resample tries again.
    }
    this.resampling = false;
    const pending = this.pendingRecords;
    this.pendingRecords = [];
    pending.forEach((record) => this.addRecord(record));
    this.scheduleDraw();
  }

  /** Read the job row again after a status change; calls during a read coalesce into one more. */
  async refresh() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      this.job = await getJSON(this.path);
      if (!this.stopped) this.renderJob();
    } catch (error) {
      replace(this.message, h("span", { class: "error-text" }, `Could not refresh the job: ${error.message}`));
    }
    this.refreshing = false;
    if (this.refreshAgain) {
      this.refreshAgain = false;
      this.refresh();
    }
  }

  scheduleDraw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      if (!this.stopped) this.draw();
    });
  }

  draw() {
    const columns = this.columns;
    const xs = columns.epoch;
    const series = [];
    if (columns.train_loss) series.push({ key: "train_loss", label: "train_loss", xs, ys: columns.train_loss, colorIndex: 0 });
    if (columns.val_loss) series.push({ key: "val_loss", label: "val_loss", xs, ys: columns.val_loss, colorIndex: 1 });
    // While the job runs, the x axis spans every planned epoch, so the curves grow to the right.
    const xMax = ACTIVE_STATUSES.includes(this.job.status) ? this.job.progress.epochs : null;
    this.lossChart.update({ series, logY: this.logY, xMax });

    const metric = METRIC_PAIRS.find(([name]) => columns[`train_${name}`] || columns[`val_${name}`]);
    this.metricSection.hidden = !metric && xs.length > 0;
    if (metric) {
      const [name, label] = metric;
      const metricSeries = ["train", "val"]
        .filter((part) => columns[`${part}_${name}`])
        .map((part, index) => ({ key: `${part}_${name}`, label: `${part}_${name}`, xs, ys: columns[`${part}_${name}`], colorIndex: index }));
      this.metricChart.update({ series: metricSeries, yLabel: label, xMax });
    }
    this.heatmap.update(columns, xMax || 0);
    const downsampled = xs.length && xs.length < this.lastEpoch;
    replace(this.chartNote, downsampled ? `Showing ${xs.length} of ${this.lastEpoch} epochs, downsampled by the server: it keeps the first and last epoch and the extremes of the losses.` : "");
  }
}

// Pieces -------------------------------------------------------------------------

function summaryItems(job) {
  const item = (term, ...description) => h("div", {}, h("dt", {}, term), h("dd", {}, description));
  const metrics = Object.entries(job.metrics || {}).filter(([name]) => !name.startsWith("grad_norm.") && name !== "epoch");
  const best = job.best ? `${job.best.monitor} ${formatNumber(job.best.value, 5)} at epoch ${job.best.epoch}` : "—";
  const items = [
    item("Id", h("span", { class: "job-id" }, job.id)),
    item("Experiment", job.experiment),
    item("Dataset", job.dataset),
    item("Tags", tagList(job.tags)),
    item("Parameters", formatNumber(job.n_parameters)),
    item("Attempt", String(job.attempt)),
    item("Created", timeElement(job.created_at)),
    item("Started", timeElement(job.started_at)),
    item("Finished", timeElement(job.finished_at)),
    item("Duration", formatDuration(jobDuration(job))),
    item("Best", best),
    item(
      "Latest epoch",
      metrics.length
        ? h("ul", { class: "metric-list" }, metrics.map(([name, value]) => h("li", {}, h("span", { class: "metric-name" }, name), " ", formatNumber(value, 5))))
        : "—",
    ),
  ];
  if (job.status === "running" && job.progress.eta_seconds !== null) items.push(item("Time left", `about ${formatDuration(job.progress.eta_seconds)}`));
  if (job.stop_message) items.push(item("Stop reason", `${job.stop_reason}: ${job.stop_message}`));
  if (job.error) items.push(item("Error", h("span", { class: "error-text" }, `${job.error.type}: ${job.error.message}`)));
  return items;
}

function transitionTable(transitions) {
  if (!transitions || !transitions.length) return h("p", { class: "muted" }, "No status changes yet.");
  const rows = transitions.map((transition) =>
    h(
      "tr",
      {},
      h("td", { dataset: { label: "Status" } }, statusBadge(transition.status)),
      h("td", { dataset: { label: "Attempt" } }, String(transition.attempt)),
      h("td", { dataset: { label: "Worker" } }, transition.worker_id || "—"),
      h("td", { dataset: { label: "Reason" } }, transition.reason || "—"),
      h("td", { dataset: { label: "Time" } }, timeElement(transition.at)),
    ),
  );
  const header = h("tr", {}, ["Status", "Attempt", "Worker", "Reason", "Time"].map((name) => h("th", { scope: "col" }, name)));
  return h("table", { class: "transitions" }, h("thead", {}, header), h("tbody", {}, rows));
}
