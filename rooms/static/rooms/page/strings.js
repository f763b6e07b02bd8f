/**
 * The UI strings of the page, in the reader's language: the table the server embedded
 * (rooms/strings/<lang>.json, chosen by ?lang= or Accept-Language) in #page-strings.
 */

const element = document.getElementById("page-strings");
const TABLE = element ? JSON.parse(element.textContent) : {};

/** The page's language (the <html lang>). */
export const LANG = document.documentElement.lang || "en";

/**
 * The string ``key`` with ``{name}`` placeholders filled from ``vars``; the key itself if the table lacks it.
 * @param {string} key
 * @param {Object<string, string|number>} [vars]
 * @returns {string}
 */
export function t(key, vars) {
  const text = key in TABLE ? TABLE[key] : key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}
