// DOM building and formatting helpers shared by every view.
//
// Text always goes in as text nodes, never as HTML, so values from the API
// (names, tags, error messages) cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
}

/** Create an HTML element: h("a", {href: "#/jobs"}, "Jobs"). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

/** Create an SVG element: s("path", {d: "M0 0L1 1"}). */
export function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

/** Replace every child of `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// Numbers ------------------------------------------------------------------------

/** Format a number with up to `digits` significant digits; null (not finite) as a dash. */
export function formatNumber(value, digits = 6) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  return String(Number(value.toPrecision(digits)));
}

// Times --------------------------------------------------------------------------

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const SHORT_DATE_TIME = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** The browser's time zone name, such as "Europe/Berlin". */
export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

/**
 * A <time> element showing `iso` in local time; `short` leaves out the year and seconds.
 * Its title gives the full local time and the UTC time.
 */
export function timeElement(iso, short = false) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  const text = short ? SHORT_DATE_TIME.format(date) : DATE_TIME.format(date);
  return h("time", { datetime: iso, title: `${DATE_TIME.format(date)}; UTC ${date.toISOString()}` }, text);
}

/** Format a number of seconds as "850 ms", "12.3 s", "4 min 05 s" or "2 h 03 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${Number(seconds.toPrecision(3))} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** Seconds from the job's start to its end, or to now while it runs; null before it starts. */
export function jobDuration(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

// Job pieces ---------------------------------------------------------------------

export const ACTIVE_STATUSES = ["queued", "running"];
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** The job's name, or the start of its id for an unnamed job. */
export function jobTitle(job) {
  return job.name || `job ${job.id.slice(0, 8)}`;
}

/** What the badge adds to the status: "cancelling", or a stop reason other than the obvious one. */
export function statusDetail(job) {
  if (job.cancel_requested && job.status === "running") return "cancelling";
  if (!job.stop_reason || job.stop_reason === "completed" || job.stop_reason === job.status) return "";
  return job.stop_reason;
}

export function statusBadge(status, extra = "") {
  return h("span", { class: `badge status-${status}` }, status, extra ? ` · ${extra}` : "");
}

/** A progress bar with "epoch of epochs" beside it. */
export function progressBar(progress) {
  const percent = Math.round(progress.fraction * 1000) / 10;
  const bar = h("progress", {
    max: 100,
    value: percent,
    "aria-label": `epoch ${progress.epoch} of ${progress.epochs}`,
  });
  return h("span", { class: "progress" }, bar, h("span", { class: "progress-text" }, `${progress.epoch}/${progress.epochs}`));
}

/** Tags as small "key: value" chips. */
export function tagList(tags) {
  const entries = Object.entries(tags || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return h("span", { class: "tags" }, entries.map(([key, value]) => h("span", { class: "tag" }, `${key}: ${value}`)));
}

/** A message box for empty and error states, with optional actions (links or buttons). */
export function notice(kind, title, text, ...actions) {
  return h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("h2", {}, title),
    text ? h("p", {}, text) : null,
    actions.length ? h("p", { class: "actions" }, actions) : null,
  );
}
