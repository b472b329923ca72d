// Requests to the steep API: JSON reads, the cancel call, downloads, and the event stream.
//
// Paths are relative ("v1/jobs"), so the page works wherever the API serves it.
// Every request goes through send(), which adds the stored API key as a Bearer
// header and, on a 401, shows the key form and repeats the request with the new key.

import { rejectKey, requestKey, storedKey } from "./key.js";

/** An error from the API (a problem-details body) or from the network (status 0). */
export class ApiError extends Error {
  constructor(message, status = 0, problem = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }

  /** True when the service itself cannot respond: no connection, or a 502/503/504. */
  get serviceDown() {
    return this.status === 0 || [502, 503, 504].includes(this.status);
  }
}

async function errorFromResponse(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    // A body that is not JSON (a proxy's error page, say) still gets the status text.
  }
  const detail = problem && problem.detail ? problem.detail : `${response.status} ${response.statusText}`;
  return new ApiError(detail, response.status, problem);
}

async function send(path, options = {}) {
  for (;;) {
    const key = storedKey();
    const headers = new Headers(options.headers);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    let response;
    try {
      response = await fetch(path, { cache: "no-store", ...options, headers });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("The steep service cannot be reached. Check that it is running.");
    }
    if (response.status !== 401) {
      if (!response.ok) throw await errorFromResponse(response);
      return response;
    }
    const error = await errorFromResponse(response);
    if (options.signal && options.signal.aborted) throw error;
    // Another request's form may have stored a new key since this one was sent.
    if (storedKey() !== key) continue;
    rejectKey(key);
    await requestKey(error.problem, Boolean(key));
  }
}

/** GET a JSON resource; `query` values that are arrays become repeated parameters. */
export async function getJSON(path, query = {}, signal = undefined) {
  const response = await send(withQuery(path, query), { headers: { Accept: "application/json" }, signal });
  return response.json();
}

/** POST without a body and return the JSON response. */
export async function postJSON(path) {
  const response = await send(path, { method: "POST", headers: { Accept: "application/json" } });
  return response.json();
}

/** Fetch a file and hand it to the browser as a download named `filename`. */
export async function download(path, filename) {
  const response = await send(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(name, String(item));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// Server-Sent Events -----------------------------------------------------------------
//
// EventSource cannot send Last-Event-ID on its first connection, and this page
// needs that to start after the epochs it already has. So the stream is read
// with fetch, and parsed as the SSE format says: "field: value" lines, events
// separated by a blank line, and lines starting with ":" ignored.

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15_000;

/**
 * Follow an SSE stream from `lastEventId` on, reconnecting after network errors.
 *
 * `onEvent({event, data, id})` receives each event; `onError(error, retrying)`
 * each failure. A 4xx response ends following, because retrying cannot fix it.
 * Returns a function that stops following.
 */
export function followEvents(path, { lastEventId = "", onEvent, onError = () => {} }) {
  const controller = new AbortController();
  let lastId = lastEventId;
  let stopped = false;

  async function run() {
    let delay = RETRY_MIN_MS;
    while (!stopped) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await send(path, { headers, signal: controller.signal });
        delay = RETRY_MIN_MS;
        await readEvents(response.body, (event) => {
          if (event.id) lastId = event.id;
          onEvent(event);
        });
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        const retrying = !(error instanceof ApiError) || error.status === 0 || error.status >= 500;
        onError(error, retrying);
        if (!retrying) return;
      }
      // The server ends a stream after the job's final status; the caller stops then.
      // Any other end is a dropped connection, so wait a little and resume.
      await sleep(delay, controller.signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: "" };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A trailing "\r" may be the first half of "\r\n", so it waits for the next chunk.
    const end = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(end); // an incomplete last line waits for more input
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) dispatch({ event: event.event, data: event.data.join("\n"), id: event.id });
        event = { event: "message", data: [], id: "" };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      const text = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(text);
      else if (field === "event") event.event = text;
      else if (field === "id") event.id = text;
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
