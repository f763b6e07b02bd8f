/** Small DOM helpers shared by the page modules. */
import {t} from "./strings.js";

/** Shorthand for document.getElementById. */
export const $ = (id) => document.getElementById(id);

/** Show a status word (an SDK status, or NONE) in a badge: data-status is the word, the text its translation. */
export function setStatus(element, status) {
  if (!element) return;
  element.textContent = t(`status_${status}`);
  element.dataset.status = status;
}

/**
 * Create an element: ``el("button", {className: "btn", type: "button"}, "text", child)``.
 * Properties go through assignment, except ``data-*`` and ``aria-*`` which are attributes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name.startsWith("data-") || name.startsWith("aria-") || name === "role") node.setAttribute(name, String(value));
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Tell screen readers something (the polite live region #announcer). */
export function announce(text) {
  const region = $("announcer");
  if (!region) return;
  region.append(el("p", {}, text));
  while (region.childElementCount > 5) region.firstElementChild.remove();
}

/** The value of ?name= in the page's URL (null when absent). */
export function pageParam(name) {
  return new URLSearchParams(location.search).get(name);
}
