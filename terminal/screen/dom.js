/* global HTMLElement, HTMLInputElement, HTMLTextAreaElement, HTMLSelectElement, Node */
/** Small DOM helpers: element building, lookup by test id, and regions redrawn only on change. */

export const $ = (selector, root = document) => root.querySelector(selector);
export const byTestId = (id, root = document) => $(`[data-testid="${id}"]`, root);

/** Builds an element: h('td', { class: 'x', testid: 'y', onclick }, 'text', child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'data') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** A key that finds "the same" element again after a region is rebuilt, to keep focus. */
export function focusKey(el) {
  if (!(el instanceof HTMLElement) || el.dataset.testid === undefined) return null;
  return `${el.dataset.testid}|${el.dataset.token ?? ''}|${el.dataset.lineNo ?? ''}`;
}

export function findByFocusKey(root, key) {
  for (const el of root.querySelectorAll('[data-testid]')) if (focusKey(el) === key) return el;
  return null;
}

/** Rebuilds `root`'s children only when `signature` changed, keeping the focused control focused. */
const signatures = new WeakMap();
export function region(root, signature, build) {
  if (signatures.get(root) === signature) return;
  signatures.set(root, signature);
  const active = document.activeElement;
  const key = active !== null && root.contains(active) ? focusKey(active) : null;
  root.replaceChildren(...[build()].flat().filter((c) => c !== null && c !== undefined && c !== false));
  if (key !== null) findByFocusKey(root, key)?.focus();
}

export function isEditable(el) {
  return el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement || (el instanceof HTMLElement && el.isContentEditable);
}
