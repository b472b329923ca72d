// The dashboard's entry point: hash routing between the jobs, job and compare views.
//
// Routes: #/jobs?status=&experiment=&tag=&sort=   the jobs table
//         #/jobs/<id>                              one job
//         #/compare?ids=<id>,<id>&metric=          curves of several jobs
// An empty hash shows the jobs table.

import { compareView } from "./compare.js";
import { TIME_ZONE, h, notice, replace } from "./dom.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { setUpForgetControl } from "./key.js";

const main = document.getElementById("main");
let cleanup = () => {};
let firstRender = true;

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const mark = hash.indexOf("?");
  const path = mark === -1 ? hash : hash.slice(0, mark);
  const query = new URLSearchParams(mark === -1 ? "" : hash.slice(mark + 1));
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query };
}

/** Go to `view` ("jobs", "compare", ...) with the non-empty `params` as its query. */
export function navigate(view, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const text = query.toString();
  location.hash = `#/${view}${text ? `?${text}` : ""}`;
}

function render() {
  cleanup();
  const { parts, query } = parseHash();
  for (const link of document.querySelectorAll(".site-nav a[data-view]")) {
    if (link.dataset.view === parts[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (parts[0] === "jobs" && parts.length === 1) {
    cleanup = jobsView(main, query, navigate);
  } else if (parts[0] === "jobs" && parts.length === 2) {
    cleanup = jobView(main, parts[1], navigate);
  } else if (parts[0] === "compare" && parts.length === 1) {
    cleanup = compareView(main, query, navigate);
  } else {
    document.title = "Page not found · steep";
    replace(main, notice("error", "Page not found", `The dashboard has no page at ${location.hash}.`, h("a", { href: "#/jobs" }, "Go to the jobs")));
    cleanup = () => {};
  }
  // After a navigation, move focus to the new content so keyboard and screen-reader
  // users start there; the first load leaves focus where the browser puts it.
  if (!firstRender) {
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

document.getElementById("time-zone").textContent = TIME_ZONE;
setUpForgetControl();
window.addEventListener("hashchange", render);
render();
