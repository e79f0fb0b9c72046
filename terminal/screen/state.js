/**
 * What the page knows: the last state the terminal pushed, and the little the page adds
 * of its own (the selected line, a local refusal). The terminal program owns everything
 * else: cart, customer, tenders, completion. The page never computes a price or a balance,
 * so what it shows is what the store server priced.
 */
import { formatMinor } from './format.js';

export const QTY_MAX = 9_999;

export const ui = {
  /** The terminal's last pushed state; null until the first arrives. */
  state: null,
  /** A refusal the terminal answered directly (a bad command), shown until the next message. */
  localMessage: null,
  selectedLineNo: null,
  lastNextLineNo: 0,
  /** A refund sent and not yet answered: the message time it was sent at. */
  refundPending: null,
  /** The waiting sale's key the sign-in dialog was last opened for, so it opens once. */
  signInAskedFor: null,
};

// The renderer registers itself here, so that state, socket and actions need not import it.
const hooks = { render: () => undefined, renderMessage: () => undefined };

export function setRenderer(render, renderMessage) {
  hooks.render = render;
  hooks.renderMessage = renderMessage;
}

export function rerender() {
  hooks.render();
}

const versionWaiters = new Set();

/** Takes a state pushed by the terminal; a new message replaces a local one. */
export function applyState(s) {
  const previous = ui.state;
  ui.state = s;
  if (previous === null || previous.message?.at !== s.message?.at) ui.localMessage = null;
  hooks.render();
  for (const w of versionWaiters) if (s.version >= w.version) w.done();
}

/** Resolves once a state at least as new as `version` has been drawn, or after `timeoutMs`. */
export function whenVersion(version, timeoutMs) {
  if (ui.state !== null && ui.state.version >= version) return Promise.resolve();
  return new Promise((resolve) => {
    const w = {
      version,
      done: () => {
        clearTimeout(timer);
        versionWaiters.delete(w);
        resolve();
      },
    };
    const timer = setTimeout(w.done, timeoutMs);
    versionWaiters.add(w);
  });
}

export function showLocal(kind, text) {
  ui.localMessage = { kind, text };
  hooks.renderMessage();
}

export function clearLocal() {
  ui.localMessage = null;
}

// ---- derived views ---------------------------------------------------------------------

export const currency = () => ui.state?.priced?.currency ?? ui.state?.store.currency ?? 'EUR';
export const money = (minor) => formatMinor(minor, currency());
export const editable = () => ui.state !== null && ui.state.completing === null;

/**
 * The server's pricing, when it matches the cart on screen. Right after a scan the
 * cart already has the new line while its pricing is on the way; priced lines are in
 * cart order and numbered 1..n, so they are matched by position.
 */
export function currentPricing() {
  const p = ui.state?.priced;
  if (p === null || p === undefined) return null;
  const lines = ui.state.cart.lines;
  if (p.lines.length !== lines.length) return null;
  for (let i = 0; i < lines.length; i++) {
    if (p.lines[i].gtin !== lines[i].gtin || p.lines[i].qty !== lines[i].qty) return null;
  }
  return p;
}

export function selectedLine() {
  return ui.state?.cart.lines.find((l) => l.lineNo === ui.selectedLineNo) ?? null;
}
