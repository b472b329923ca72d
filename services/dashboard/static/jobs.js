// The jobs view (#/jobs): a filtered, sorted, paged table of jobs from GET /v1/jobs.
//
// Filters and the sort order live in the URL (#/jobs?status=running&sort=val_loss),
// so a view can be bookmarked and the back button works. Sorting and filtering
// happen on the server; pages follow its cursor. The view reads only job rows,
// never histories, and refreshes itself while a job on the page is active.

import { getJSON } from "./api.js";
import {
  ACTIVE_STATUSES,
  STATUSES,
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

const PAGE_SIZE = 25;
const MAX_LIMIT = 500; // the API's maximum page size
const DEFAULT_SORT = "-created_at";
const REFRESH_MS = 3000;

// Sortable columns and the direction a first click sorts in.
const SORTABLE = {
  train_loss: "ascending",
  val_loss: "ascending",
  val_accuracy: "descending",
  created_at: "descending",
  finished_at: "descending",
};

// The sort orders the "Sort by" menu offers; column headers toggle any sortable column.
const SORT_CHOICES = [
  ["-created_at", "newest first"],
  ["created_at", "oldest first"],
  ["-finished_at", "recently finished"],
  ["train_loss", "lowest train loss"],
  ["val_loss", "lowest val loss"],
  ["-val_accuracy", "highest val accuracy"],
];

// Kept across re-renders: the jobs picked for comparison, and the page position.
const selected = new Set();
let paging = { key: "", cursors: [null], index: 0 };

/** Render the jobs view into `main` for the URL query `query`; return a cleanup function. */
export function jobsView(main, query, navigate) {
  const filters = {
    status: query.get("status") || "",
    experiment: query.get("experiment") || "",
    tag: query.get("tag") || "",
    sort: query.get("sort") || DEFAULT_SORT,
    limit: Math.min(Math.max(Number.parseInt(query.get("limit"), 10) || PAGE_SIZE, 1), MAX_LIMIT),
  };
  const filterKey = JSON.stringify(filters);
  if (paging.key !== filterKey) paging = { key: filterKey, cursors: [null], index: 0 };

  const status = h("div", { class: "view-status" });
  const table = h("div", { class: "table-area" });
  const pager = h("nav", { class: "pager", "aria-label": "pages" });
  const compareBar = h("div", { class: "compare-bar" });
  replace(main, h("h1", {}, "Jobs"), filterForm(filters, navigate), status, compareBar, table, pager);
  document.title = "Jobs · steep";

  let timer = null;
  let stopped = false;

  async function load() {
    clearTimeout(timer);
    try {
      const page = await getJSON("v1/jobs", {
        status: filters.status,
        experiment: filters.experiment,
        tag: filters.tag,
        sort: filters.sort,
        limit: filters.limit,
        cursor: paging.cursors[paging.index],
      });
      if (stopped) return;
      replace(status);
      renderTable(table, page.items, filters, navigate);
      const empty = !page.items.length && paging.index === 0;
      if (empty) replace(pager);
      else renderPager(pager, page.next_cursor, load);
      if (empty) replace(compareBar);
      else renderCompareBar(compareBar, navigate);
      if (page.items.some((job) => ACTIVE_STATUSES.includes(job.status))) {
        timer = setTimeout(load, REFRESH_MS);
      }
    } catch (error) {
      if (stopped) return;
      replace(status, errorNotice(error, load));
      if (error.serviceDown) timer = setTimeout(load, REFRESH_MS * 2);
    }
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function errorNotice(error, retry) {
  const retryButton = h("button", { type: "button", onclick: retry }, "Try again");
  if (error.serviceDown) return notice("error", "The service is not reachable", `${error.message} This page retries by itself.`, retryButton);
  return notice("error", "The jobs could not be listed", error.message, h("a", { href: "#/jobs" }, "Clear the filters"));
}

// Filters ------------------------------------------------------------------------

/** Go to the jobs view with `filters`, leaving the defaults out of the URL. */
function showJobs(navigate, filters) {
  navigate("jobs", {
    ...filters,
    sort: filters.sort === DEFAULT_SORT ? "" : filters.sort,
    limit: filters.limit === PAGE_SIZE ? "" : filters.limit,
  });
}

/** Describe a sort order the menu does not list, such as "-train_loss". */
function sortLabel(sort) {
  const name = sort.replace(/^-/, "");
  const descending = sort.startsWith("-");
  if (name === "created_at") return descending ? "newest first" : "oldest first";
  if (name === "finished_at") return descending ? "recently finished" : "earliest finished";
  return `${name}, ${descending ? "highest" : "lowest"} first`;
}

function filterForm(filters, navigate) {
  const statusSelect = h(
    "select",
    { name: "status", id: "filter-status" },
    h("option", { value: "" }, "any"),
    STATUSES.map((name) => h("option", { value: name, selected: filters.status === name }, name)),
  );
  const choices = SORT_CHOICES.some(([value]) => value === filters.sort) ? SORT_CHOICES : [...SORT_CHOICES, [filters.sort, sortLabel(filters.sort)]];
  const sortSelect = h(
    "select",
    { name: "sort", id: "filter-sort" },
    choices.map(([value, label]) => h("option", { value, selected: filters.sort === value }, label)),
  );
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "filter jobs" },
    h("label", { for: "filter-status" }, "Status", statusSelect),
    h("label", { for: "filter-experiment" }, "Experiment", h("input", { id: "filter-experiment", name: "experiment", value: filters.experiment, list: "experiment-names", autocomplete: "off" })),
    h("label", { for: "filter-tag" }, "Tag", h("input", { id: "filter-tag", name: "tag", value: filters.tag, placeholder: "key:value", autocomplete: "off" })),
    h("label", { for: "filter-sort" }, "Sort by", sortSelect),
    h("datalist", { id: "experiment-names" }),
    h("div", { class: "filter-actions" }, h("button", { type: "submit" }, "Apply"), h("a", { href: "#/jobs", class: "button-link" }, "Clear")),
  );
  const apply = (event) => {
    event.preventDefault();
    const data = new FormData(form);
    showJobs(navigate, {
      ...filters,
      status: data.get("status"),
      experiment: data.get("experiment").trim(),
      tag: data.get("tag").trim(),
      sort: data.get("sort"),
    });
  };
  form.addEventListener("submit", apply);
  statusSelect.addEventListener("change", apply);
  sortSelect.addEventListener("change", apply);
  return form;
}

// The table ----------------------------------------------------------------------

function renderTable(container, jobs, filters, navigate) {
  const focused = document.activeElement && container.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  const datalist = document.getElementById("experiment-names");
  if (datalist) replace(datalist, [...new Set(jobs.map((job) => job.experiment))].map((name) => h("option", { value: name })));

  if (!jobs.length) {
    const filtered = filters.status || filters.experiment || filters.tag;
    replace(
      container,
      filtered
        ? notice("empty", "No jobs match these filters", "Try another status, experiment or tag.", h("a", { href: "#/jobs" }, "Clear the filters"))
        : notice("empty", "No jobs yet", [
            "Submit one with ",
            h("code", {}, "steep submit examples/iris.json"),
            " or POST a job spec to ",
            h("code", {}, "/v1/jobs"),
            ". It appears here at once.",
          ]),
    );
    return;
  }
  const header = h(
    "tr",
    {},
    h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Compare")),
    h("th", { scope: "col" }, "Job"),
    h("th", { scope: "col" }, "Status"),
    h("th", { scope: "col" }, "Progress"),
    h("th", { scope: "col" }, "Experiment"),
    h("th", { scope: "col" }, "Tags"),
    sortHeader("train_loss", "Train loss", filters, navigate),
    sortHeader("val_loss", "Val loss", filters, navigate),
    sortHeader("val_accuracy", "Val accuracy", filters, navigate),
    h("th", { scope: "col" }, "Best"),
    h("th", { scope: "col" }, "Duration"),
    sortHeader("created_at", "Created", filters, navigate),
    sortHeader("finished_at", "Finished", filters, navigate),
  );
  const rows = jobs.map((job) => jobRow(job));
  replace(container, h("table", { class: "jobs-table" }, h("thead", {}, header), h("tbody", {}, rows)));
  if (focused) container.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
}

function sortHeader(key, label, filters, navigate) {
  const current = filters.sort.replace(/^-/, "");
  let direction = null;
  if (current === key) direction = filters.sort.startsWith("-") ? "descending" : "ascending";
  let next = SORTABLE[key];
  if (direction) next = direction === "ascending" ? "descending" : "ascending";
  let arrow = "";
  if (direction) arrow = direction === "ascending" ? " ▲" : " ▼";
  const button = h(
    "button",
    {
      type: "button",
      class: "sort",
      dataset: { sort: key },
      title: `Sort by ${label.toLowerCase()}, ${next}`,
      onclick: () => showJobs(navigate, { ...filters, sort: next === "descending" ? `-${key}` : key }),
    },
    label,
    h("span", { "aria-hidden": "true" }, arrow),
  );
  return h("th", { scope: "col", "aria-sort": direction || "none" }, button);
}

function jobRow(job) {
  const checkbox = h("input", {
    type: "checkbox",
    checked: selected.has(job.id),
    "aria-label": `Compare ${jobTitle(job)}`,
    dataset: { focus: `select:${job.id}` },
    onchange: (event) => {
      if (event.target.checked) selected.add(job.id);
      else selected.delete(job.id);
      renderCompareBar(document.querySelector(".compare-bar"));
    },
  });
  const extra = statusDetail(job);
  const best =
    job.best && job.best.value !== null
      ? [h("span", { class: "num" }, formatNumber(job.best.value, 4)), h("span", { class: "best-of" }, `${job.best.monitor}, epoch ${job.best.epoch}`)]
      : "—";
  const cell = (label, ...content) => h("td", { dataset: { label } }, content);
  return h(
    "tr",
    { dataset: { jobId: job.id, status: job.status } },
    cell("Compare", checkbox),
    cell(
      "Job",
      h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, dataset: { focus: `link:${job.id}` } }, jobTitle(job)),
      h("span", { class: "job-id" }, job.id.slice(0, 12)),
    ),
    cell("Status", statusBadge(job.status, extra)),
    cell("Progress", progressBar(job.progress)),
    cell("Experiment", job.experiment),
    cell("Tags", tagList(job.tags)),
    cell("Train loss", h("span", { class: "num" }, formatNumber(job.metrics.train_loss, 4))),
    cell("Val loss", h("span", { class: "num" }, formatNumber(job.metrics.val_loss, 4))),
    cell("Val accuracy", h("span", { class: "num" }, formatNumber(job.metrics.val_accuracy, 4))),
    cell("Best", best),
    cell("Duration", formatDuration(jobDuration(job))),
    cell("Created", timeElement(job.created_at, true)),
    cell("Finished", timeElement(job.finished_at, true)),
  );
}

// Paging and comparing -----------------------------------------------------------

function renderPager(pager, nextCursor, load) {
  const previous = h("button", { type: "button", disabled: paging.index === 0 }, "← Previous");
  const next = h("button", { type: "button", disabled: !nextCursor }, "Next →");
  previous.addEventListener("click", () => {
    paging.index -= 1;
    load();
  });
  next.addEventListener("click", () => {
    paging.cursors[paging.index + 1] = nextCursor;
    paging.index += 1;
    load();
  });
  replace(pager, previous, h("span", { class: "muted" }, `page ${paging.index + 1}`), next);
}

function renderCompareBar(bar, navigate) {
  if (!bar) return;
  const ids = [...selected];
  const compare = h("a", { class: "button-link primary", href: `#/compare?ids=${ids.map(encodeURIComponent).join(",")}` }, `Compare ${ids.length} selected`);
  const clear = h("button", {
    type: "button",
    onclick: () => {
      selected.clear();
      bar.closest("main")?.querySelectorAll(".jobs-table input[type=checkbox]").forEach((box) => {
        box.checked = false;
      });
      renderCompareBar(bar, navigate);
    },
  }, "Clear selection");
  replace(bar, ids.length ? [compare, clear] : h("span", { class: "muted" }, "Tick jobs to compare their loss curves."));
}
