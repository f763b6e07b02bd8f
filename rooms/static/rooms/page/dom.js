/** Small DOM helpers shared by the page modules. */

/** Shorthand for document.getElementById. */
export const $ = (id) => document.getElementById(id);

/** Show a status word in a badge element (its class follows the status). */
export function setStatus(element, status) {
  if (!element) return;
  element.textContent = status;
  element.dataset.status = status;
}
