// The API key the page sends, and the form that requests it after a 401.
//
// The key lives in sessionStorage (this tab, until it closes), or in localStorage
// when the user ticks "Remember on this device". It only ever leaves the page in
// the Authorization header: never in a URL, the title, or the console. The form
// sits in a <dialog> with method="dialog", so submitting it sends nothing anywhere.

import { h, replace } from "./dom.js";

const STORAGE_NAME = "steep-api-key";

let pendingKey = null; // the promise of the open form, shared by every request that waits for it

/** Return the stored key, or "" when there is none (keyless local mode). */
export function storedKey() {
  return sessionStorage.getItem(STORAGE_NAME) || localStorage.getItem(STORAGE_NAME) || "";
}

function saveKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(STORAGE_NAME, key);
  showForgetControl();
}

/** Remove the key from both storages. */
export function forgetKey() {
  sessionStorage.removeItem(STORAGE_NAME);
  localStorage.removeItem(STORAGE_NAME);
  showForgetControl();
}

/** Forget `key` if it is still the stored one, because the service rejected it. */
export function rejectKey(key) {
  if (key && storedKey() === key) forgetKey();
}

/**
 * Show the key form and resolve with the key once the user submits it.
 *
 * `problem` is the 401's problem details; its detail is shown above the field, so a
 * wrong key is explained by the service's own message. Requests that get a 401
 * while the form is open wait for the same key.
 */
export function requestKey(problem, rejected) {
  if (!pendingKey) {
    pendingKey = showKeyForm(problem, rejected).finally(() => {
      pendingKey = null;
    });
  }
  return pendingKey;
}

function showKeyForm(problem, rejected) {
  return new Promise((resolve) => {
    const input = h("input", {
      type: "password",
      name: "api-key",
      id: "api-key",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
    });
    const remember = h("input", { type: "checkbox", name: "remember", id: "remember-key" });
    const title = rejected ? "The API key was not accepted" : "This service needs an API key";
    const detail = problem && problem.detail ? problem.detail : "";
    // The service's 401 messages already name the command, so the hint would repeat it.
    const hint = detail.includes("steep keys create")
      ? null
      : h("p", { class: "muted" }, "An operator creates keys with ", h("code", {}, "steep keys create --tenant NAME"), ".");
    const form = h(
      "form",
      { method: "dialog", class: "key-form" },
      h("h2", { id: "key-dialog-title" }, title),
      detail ? h("p", { class: "key-message", role: "alert" }, detail) : null,
      hint,
      h("label", { for: "api-key" }, "API key"),
      input,
      h("label", { class: "checkbox" }, remember, " Remember on this device"),
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Use this key")),
    );
    const dialog = h("dialog", { class: "key-dialog", "aria-labelledby": "key-dialog-title" }, form);

    // Escape would close the dialog with no key, leaving the waiting requests hanging.
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    form.addEventListener("submit", () => {
      const key = input.value.trim();
      input.value = "";
      saveKey(key, remember.checked);
      dialog.remove();
      resolve(key);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

/** Show the "Forget key" button in the header only while a key is stored. */
function showForgetControl() {
  const button = document.getElementById("forget-key");
  if (button) button.hidden = !storedKey();
}

/** Wire the header's "Forget key" button: it removes the key and reloads the page. */
export function setUpForgetControl() {
  const button = document.getElementById("forget-key");
  if (!button) return;
  replace(button, "Forget key");
  button.addEventListener("click", () => {
    forgetKey();
    location.reload();
  });
  showForgetControl();
}
