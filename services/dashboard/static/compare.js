// The compare view (#/compare?ids=a,b&metric=val_loss): the curves of several jobs
// on one chart, with a table of their latest and best values.
//
// Histories are read downsampled to MAX_POINTS; active jobs are polled for the
// epochs after the last one the view has (after_epoch), every POLL_MS.

import { getJSON } from "./api.js";
import { PALETTE_SIZE, lineChart } from "./chart.js";
import { ACTIVE_STATUSES, formatNumber, h, jobTitle, notice, replace, statusBadge } from "./dom.js";

const MAX_POINTS = 500;
const POLL_MS = 3000;
// History columns that are not per-epoch results worth comparing.
const HIDDEN_COLUMNS = ["epoch", "lr", "epoch_seconds"];

/** Render the comparison of the jobs in `query`'s ids; return a cleanup function. */
export function compareView(main, query, navigate) {
  const ids = [...new Set((query.get("ids") || "").split(",").map((id) => id.trim()).filter(Boolean))];
  document.title = "Compare · steep";
  if (!ids.length) {
    replace(
      main,
      h("h1", {}, "Compare"),
      notice("empty", "Nothing to compare yet", "Tick two or more jobs on the jobs page, then choose Compare.", h("a", { href: "#/jobs" }, "Go to the jobs")),
    );
    return () => {};
  }
  const view = new CompareView(main, ids, query, navigate);
  view.start();
  return () => view.stop();
}

class CompareView {
  constructor(main, ids, query, navigate) {
    this.main = main;
    this.ids = ids;
    this.metric = query.get("metric");
    this.logY = query.get("scale") === "log";
    this.navigate = navigate;
    this.entries = [];
    this.timer = null;
    this.stopped = false;
  }

  async start() {
    replace(this.main, h("h1", {}, "Compare"), h("p", { class: "muted" }, "Loading the jobs…"));
    const results = await Promise.allSettled(this.ids.map((id) => this.load(id)));
    if (this.stopped) return;
    const failures = results.filter((result) => result.status === "rejected").map((result) => result.reason);
    this.entries = results.filter((result) => result.status === "fulfilled").map((result) => result.value);
    if (!this.entries.length && failures.some((error) => error.serviceDown)) {
      const retry = h("button", { type: "button", onclick: () => this.start() }, "Try again");
      replace(this.main, h("h1", {}, "Compare"), notice("error", "The service is not reachable", failures[0].message, retry));
      return;
    }
    this.build(failures);
    this.poll();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async load(id) {
    const path = `v1/jobs/${encodeURIComponent(id)}`;
    try {
      const [job, columns] = await Promise.all([getJSON(path), getJSON(`${path}/history`, { max_points: MAX_POINTS })]);
      return { id, path, job, columns: columns.epoch ? columns : { epoch: [] } };
    } catch (error) {
      error.jobId = id;
      throw error;
    }
  }

  metricNames() {
    const names = new Set();
    for (const { columns } of this.entries) {
      for (const name of Object.keys(columns)) {
        if (!HIDDEN_COLUMNS.includes(name) && !name.startsWith("grad_norm.")) names.add(name);
      }
    }
    return [...names].sort();
  }

  defaultMetric(names) {
    const everyone = (name) => this.entries.every(({ columns }) => name in columns);
    return ["val_loss", "train_loss"].find(everyone) || names[0] || "train_loss";
  }

  // Layout -----------------------------------------------------------------------

  build(failures) {
    const names = this.metricNames();
    if (!this.metric || !names.includes(this.metric)) this.metric = this.defaultMetric(names);
    const select = h(
      "select",
      { id: "compare-metric" },
      names.map((name) => h("option", { value: name, selected: name === this.metric }, name)),
    );
    select.addEventListener("change", () => this.go({ metric: select.value }));
    const logToggle = h("button", { type: "button", class: "toggle", "aria-pressed": String(this.logY) }, "Log scale");
    logToggle.addEventListener("click", () => this.go({ scale: this.logY ? "" : "log" }));

    this.chart = lineChart({ series: [], yLabel: this.metric, logY: this.logY, emptyText: `No job has ${this.metric} values yet.` });
    this.table = h("div", { class: "table-area" });
    const missing = failures.map((error) =>
      h("li", {}, error.status === 404 ? `Job ${error.jobId} was not found; it may have been deleted.` : `Job ${error.jobId}: ${error.message}`),
    );
    replace(
      this.main,
      h("h1", {}, "Compare"),
      missing.length ? h("div", { class: "notice notice-error", role: "alert" }, h("ul", {}, missing)) : null,
      h(
        "section",
        { class: "panel" },
        h("div", { class: "panel-head" }, h("label", { for: "compare-metric" }, "Metric ", select), logToggle),
        this.chart,
      ),
      h("section", { class: "panel" }, h("h2", {}, "Jobs"), this.table),
    );
    this.draw();
  }

  go(changes) {
    const scale = "scale" in changes ? changes.scale : this.logY ? "log" : "";
    this.navigate("compare", { ids: this.ids.join(","), metric: changes.metric || this.metric, scale });
  }

  draw() {
    const series = this.entries.map(({ id, job, columns }, index) => ({
      key: id,
      label: jobTitle(job),
      xs: columns.epoch,
      ys: columns[this.metric] || [],
      colorIndex: index % PALETTE_SIZE,
    }));
    this.chart.update({ series, logY: this.logY });
    replace(this.table, this.jobTable());
  }

  jobTable() {
    const higherIsBetter = /accuracy|r2$/.test(this.metric);
    const header = h("tr", {}, ["", "Job", "Status", "Experiment", "Epochs", `Latest ${this.metric}`, `Best ${this.metric}`, ""].map((name) => h("th", { scope: "col" }, name)));
    const rows = this.entries.map(({ id, job, columns }, index) => {
      const values = (columns[this.metric] || []).filter((value) => value !== null);
      const best = values.length ? (higherIsBetter ? Math.max(...values) : Math.min(...values)) : null;
      const latest = values.length ? values[values.length - 1] : null;
      const remove = h("button", { type: "button", "aria-label": `Remove ${jobTitle(job)} from the comparison` }, "Remove");
      remove.addEventListener("click", () => {
        this.ids = this.ids.filter((other) => other !== id);
        this.go({});
      });
      return h(
        "tr",
        { dataset: { jobId: id } },
        h("td", {}, h("span", { class: `swatch series-${index % PALETTE_SIZE}` })),
        h("td", { dataset: { label: "Job" } }, h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, jobTitle(job))),
        h("td", { dataset: { label: "Status" } }, statusBadge(job.status)),
        h("td", { dataset: { label: "Experiment" } }, job.experiment),
        h("td", { dataset: { label: "Epochs" } }, String(job.progress.epoch)),
        h("td", { dataset: { label: "Latest" } }, formatNumber(latest, 5)),
        h("td", { dataset: { label: "Best" } }, formatNumber(best, 5)),
        h("td", {}, remove),
      );
    });
    return h("table", { class: "compare-table" }, h("thead", {}, header), h("tbody", {}, rows));
  }

  // Live updates -----------------------------------------------------------------

  poll() {
    const active = this.entries.filter(({ job }) => ACTIVE_STATUSES.includes(job.status));
    if (!active.length || this.stopped) return;
    this.timer = setTimeout(async () => {
      await Promise.allSettled(active.map((entry) => this.update(entry)));
      if (this.stopped) return;
      this.draw();
      this.poll();
    }, POLL_MS);
  }

  async update(entry) {
    const epochs = entry.columns.epoch;
    const after = epochs.length ? epochs[epochs.length - 1] : 0;
    const [job, newer] = await Promise.all([getJSON(entry.path), getJSON(`${entry.path}/history`, { after_epoch: after })]);
    entry.job = job;
    const length = epochs.length;
    for (const name of Object.keys(newer)) {
      if (!(name in entry.columns)) entry.columns[name] = new Array(length).fill(null);
    }
    const added = (newer.epoch || []).length;
    for (const name of Object.keys(entry.columns)) {
      entry.columns[name].push(...(newer[name] || new Array(added).fill(null)));
    }
  }
}
