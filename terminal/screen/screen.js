/* global io, HTMLElement, HTMLInputElement, HTMLTextAreaElement, HTMLSelectElement, Node, requestAnimationFrame */
/**
 * The cashier screen. Plain browser JavaScript, no build step.
 *
 * The terminal program owns everything: cart, customer, tenders, completion. This page
 * only draws the `state` the terminal pushes over socket.io and sends `command`s back;
 * it never computes a price or a balance, so what it shows is what the store server
 * priced. Amounts arrive as integers (token units, minor units of money) and are only
 * turned into text here, with integer arithmetic.
 */

// ---- money and tokens as text ----------------------------------------------------------

const CURRENCY_SYMBOLS = { EUR: '€', USD: '$', GBP: '£', JPY: '¥', CHF: 'CHF ' };
// ISO 4217 currencies whose minor unit is the whole unit.
const ZERO_DECIMAL_CURRENCIES = new Set(['JPY']);

/** "€4.50" from 450: integer remainder and exact division, no floating-point rounding. */
export function formatMinor(minor, currency) {
  const negative = minor < 0;
  const abs = Math.abs(minor);
  const symbol = CURRENCY_SYMBOLS[currency] ?? `${currency} `;
  if (ZERO_DECIMAL_CURRENCIES.has(currency)) return `${negative ? '-' : ''}${symbol}${abs}`;
  const cents = abs % 100;
  const whole = (abs - cents) / 100;
  return `${negative ? '-' : ''}${symbol}${whole}.${String(cents).padStart(2, '0')}`;
}

/** Minor units from what a cashier types ("20", "12.5", "12,50", "€ 7"); null when it is not money. */
export function parseMoney(text, currency) {
  const t = String(text).replace(/[\s€$£¥]/g, '').replace(/^CHF/i, '');
  if (ZERO_DECIMAL_CURRENCIES.has(currency)) return /^\d{1,12}$/.test(t) ? Number(t) : null;
  const m = /^(\d{1,12})(?:[.,](\d{1,2}))?$/.exec(t);
  if (m === null) return null;
  return Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}

const units = (n, token) => `${n} ${token}`;

// ---- limits ------------------------------------------------------------------------------

const SCAN_CODE_LENGTH_MAX = 64;
const COMMAND_ACK_TIMEOUT_MS = 30_000;
const QTY_MAX = 9_999;

// ---- small DOM helpers -----------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);
const byTestId = (id, root = document) => $(`[data-testid="${id}"]`, root);

/** Builds an element: h('td', { class: 'x', testid: 'y', onclick }, 'text', child, [more]). */
function h(tag, attrs = {}, ...children) {
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
function focusKey(el) {
  if (!(el instanceof HTMLElement) || el.dataset.testid === undefined) return null;
  return `${el.dataset.testid}|${el.dataset.token ?? ''}|${el.dataset.lineNo ?? ''}`;
}

function findByFocusKey(root, key) {
  for (const el of root.querySelectorAll('[data-testid]')) if (focusKey(el) === key) return el;
  return null;
}

/** Rebuilds `root`'s children only when `signature` changed, keeping the focused control focused. */
const signatures = new WeakMap();
function region(root, signature, build) {
  if (signatures.get(root) === signature) return;
  signatures.set(root, signature);
  const active = document.activeElement;
  const key = active !== null && root.contains(active) ? focusKey(active) : null;
  root.replaceChildren(...[build()].flat().filter((c) => c !== null && c !== undefined && c !== false));
  if (key !== null) findByFocusKey(root, key)?.focus();
}

function isEditable(el) {
  return el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement || (el instanceof HTMLElement && el.isContentEditable);
}

// ---- connection to the terminal --------------------------------------------------------

const socket = io({ transports: ['websocket'], reconnectionDelayMax: 1_000 });
let state = null;
/** A refusal the terminal answered directly (a bad command), shown until the next message. */
let localMessage = null;
let selectedLineNo = null;
let lastNextLineNo = 0;

socket.on('connect', () => {
  byTestId('screen-link').hidden = true;
});
socket.on('disconnect', () => {
  byTestId('screen-link').hidden = false;
});
socket.on('state', (s) => {
  const previous = state;
  state = s;
  if (previous === null || previous.message?.at !== s.message?.at) localMessage = null;
  render();
});

/** Sends a command; the terminal pushes the resulting state, the ack only reports bad commands. */
function send(cmd) {
  return new Promise((resolve) => {
    socket.timeout(COMMAND_ACK_TIMEOUT_MS).emit('command', cmd, (err, res) => {
      if (err) {
        if (cmd.type !== 'complete') showLocal('error', 'the terminal program did not answer: try again');
        resolve(false);
        return;
      }
      if (!res.ok) {
        showLocal('error', res.error?.message ?? 'the terminal refused this');
        resolve(false);
        return;
      }
      resolve(true);
    });
  });
}

function showLocal(kind, text) {
  localMessage = { kind, text };
  renderMessage();
}

// ---- derived views ---------------------------------------------------------------------

const currency = () => state?.priced?.currency ?? state?.store.currency ?? 'EUR';
const money = (minor) => formatMinor(minor, currency());
const editable = () => state !== null && state.completing === null;

/**
 * The server's pricing, when it matches the cart on screen. Right after a scan the
 * cart already has the new line while its pricing is on the way; priced lines are in
 * cart order and numbered 1..n, so they are matched by position.
 */
function currentPricing() {
  const p = state?.priced;
  if (p === null || p === undefined) return null;
  const lines = state.cart.lines;
  if (p.lines.length !== lines.length) return null;
  for (let i = 0; i < lines.length; i++) {
    if (p.lines[i].gtin !== lines[i].gtin || p.lines[i].qty !== lines[i].qty) return null;
  }
  return p;
}

function tokenPrices(prices) {
  // The separator sticks to the price before it, so a wrapped line starts with a price.
  return Object.entries(prices).map(([t, u]) => ['\u00a0· ', h('span', { class: 'tp' }, units(u, t))]);
}

function selectedLine() {
  return state?.cart.lines.find((l) => l.lineNo === selectedLineNo) ?? null;
}

// ---- rendering -------------------------------------------------------------------------

function render() {
  if (state === null) return;
  const s = state;
  document.body.dataset.stateVersion = String(s.version);
  document.body.classList.toggle('is-completing', s.completing !== null);

  // A new line is selected as it arrives; a voided selection falls back to the last line.
  if (s.cart.nextLineNo > lastNextLineNo && s.cart.lines.length > 0 && s.cart.lines.at(-1).lineNo >= lastNextLineNo) {
    selectedLineNo = s.cart.lines.at(-1).lineNo;
  }
  lastNextLineNo = s.cart.nextLineNo;
  if (!s.cart.lines.some((l) => l.lineNo === selectedLineNo)) selectedLineNo = s.cart.lines.at(-1)?.lineNo ?? null;

  renderHeader(s);
  renderMessage();
  renderCart(s);
  renderCustomer(s);
  renderTotals(s);
  renderPayment(s);
  renderLastSale(s);
  renderControls(s);
  renderRefund(s);
  byTestId('completing').hidden = s.completing === null;

  const active = document.activeElement;
  if ((active === null || active === document.body) && openDialog() === null) byTestId('scan-input').focus();
}

const SERVER_TEXT = { connecting: 'connecting…', connected: 'connected', offline: 'unreachable', revoked: 'revoked', unauthorised: 'not paired' };
const PRINTER_TEXT = { ready: 'ready', 'paper-out': 'out of paper', 'cover-open': 'cover open', offline: 'offline', unreachable: 'unreachable' };

function formatAge(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function setStatus(testid, level, value, title) {
  const li = byTestId(testid);
  li.dataset.state = level;
  $('.value', li).textContent = value;
  li.title = title ?? '';
}

function renderHeader(s) {
  byTestId('store-name').textContent = s.store.name;
  byTestId('terminal-name').textContent = s.terminal.name;
  document.title = `${s.store.name} · ${s.terminal.name}`;

  const server = s.status.server;
  const serverLevel = server.state === 'connected' ? 'ok' : server.state === 'connecting' ? 'warn' : 'bad';
  setStatus('status-server', serverLevel, SERVER_TEXT[server.state] ?? server.state, server.detail);
  byTestId('status-server').dataset.link = server.state;

  const scanner = s.status.scanner;
  if (scanner.state === 'none') setStatus('status-scanner', 'none', 'none (use the scan field)');
  else if (scanner.state === 'connected') setStatus('status-scanner', 'ok', 'ready', scanner.path);
  else setStatus('status-scanner', 'bad', scanner.state === 'stopped' ? 'stopped' : 'disconnected', scanner.error);

  const printer = s.status.printer;
  setStatus('status-printer', printer.printer === 'ready' ? 'ok' : 'bad', PRINTER_TEXT[printer.printer] ?? printer.printer, printer.lastError);
  setStatus('status-receipts', printer.waiting > 0 ? 'warn' : 'ok', String(printer.waiting));

  // The store's sync with the mall: sales keep working while it waits.
  const sync = server.server?.sync;
  const mall = byTestId('status-mall');
  mall.hidden = sync === undefined || !sync.configured;
  if (sync !== undefined && sync.configured) {
    const age = sync.oldestWaitingAgeS;
    const behind = sync.eventsWaiting > 0 && age !== null && age > 60;
    const level = sync.snapshotStale ? 'bad' : behind || sync.lastError !== null ? 'warn' : 'ok';
    const value = sync.eventsWaiting === 0 ? 'up to date' : `${sync.eventsWaiting} waiting${age !== null && age > 5 ? `, oldest ${formatAge(age)}` : ''}`;
    setStatus('status-mall', level, value, sync.lastError ?? '');
  }

  // The problems in words, so that nobody has to hover to learn what to do.
  const problems = [];
  if (server.state !== 'connected' && server.state !== 'connecting') problems.push(server.detail ?? 'the store server is unreachable');
  if (scanner.state === 'disconnected') problems.push(`scanner disconnected${scanner.error ? `: ${scanner.error}` : ''}${scanner.retryInMs ? `; retrying in ${Math.ceil(scanner.retryInMs / 1000)} s` : ''}`);
  if (printer.printer !== 'ready') problems.push(printer.lastError ?? `printer ${PRINTER_TEXT[printer.printer] ?? printer.printer}`);
  if (printer.waiting > 0) problems.push(`${printer.waiting} receipt${printer.waiting === 1 ? '' : 's'} waiting to print`);
  if (sync?.configured && sync.snapshotStale) problems.push('the store has not heard from the mall for too long: mall tokens and coupons cannot be taken until it does');
  const detail = byTestId('status-detail');
  detail.hidden = problems.length === 0;
  detail.textContent = problems.map(sentence).join(' ');

  const who = byTestId('cashier-name');
  who.textContent = s.cashier === null ? 'Not signed in' : s.cashier.name;
  byTestId('btn-signin').hidden = s.cashier !== null;
  byTestId('btn-signout').hidden = s.cashier === null;
}

function renderMessage() {
  const box = byTestId('message');
  const m = localMessage ?? state?.message ?? null;
  box.dataset.kind = m === null ? 'none' : m.kind;
  box.setAttribute('role', m?.kind === 'error' ? 'alert' : 'status');
  const text = m === null ? (state?.cart.lines.length ? '' : 'Ready.') : sentence(m.text);
  byTestId('message-text').textContent = text;
  byTestId('btn-dismiss').hidden = m === null;
}

/** Messages are plain sentences: a capital first letter and a full stop. */
function sentence(text) {
  const t = String(text).trim();
  if (t === '') return t;
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?:]$/.test(first) ? first : `${first}.`;
}

/**
 * Cart rows are keyed by line number and rebuilt only when what they show changed. While
 * the store server re-prices the cart (right after a scan), a line keeps showing how it
 * was last paid, so a scan builds one new row instead of redrawing the whole cart twice.
 */
const rowCache = new Map();
const lastPaid = new Map();
function renderCart(s) {
  const tbody = byTestId('cart-lines');
  const priced = currentPricing();
  const pending = priced === null && s.pricingError === null;
  const allocations = new Map((priced?.allocations ?? []).map((a) => [a.lineNo, a]));
  const canEdit = editable();
  const wanted = [];
  s.cart.lines.forEach((line, i) => {
    let paid;
    if (priced !== null) {
      const pl = priced.lines[i];
      paid = { state: 'priced', alloc: allocations.get(pl.lineNo) ?? null, totalMinor: pl.totalMinor, qty: line.qty };
      lastPaid.set(line.lineNo, paid);
    } else {
      const last = lastPaid.get(line.lineNo);
      paid = pending && last !== undefined && last.qty === line.qty ? last : { state: pending ? 'pending' : 'failed', alloc: null, totalMinor: null, qty: line.qty };
    }
    const sig = JSON.stringify([line, paid, canEdit, currency()]);
    let cached = rowCache.get(line.lineNo);
    if (cached === undefined || cached.sig !== sig) {
      const active = document.activeElement;
      const key = cached !== undefined && cached.el.contains(active) ? focusKey(active) : null;
      const el = cartRow(line, paid, canEdit);
      if (cached !== undefined) cached.el.replaceWith(el);
      cached = { sig, el };
      rowCache.set(line.lineNo, cached);
      if (key !== null) findByFocusKey(el, key)?.focus();
    }
    const selected = line.lineNo === selectedLineNo;
    if (cached.selected !== selected) {
      cached.selected = selected;
      cached.el.classList.toggle('selected', selected);
      cached.el.setAttribute('aria-selected', String(selected));
    }
    wanted.push(cached.el);
  });
  const keep = new Set(s.cart.lines.map((l) => l.lineNo));
  for (const [no, c] of rowCache) {
    if (!keep.has(no)) {
      c.el.remove();
      rowCache.delete(no);
      lastPaid.delete(no);
    }
  }
  // Put rows in cart order; a row already in place is not touched.
  wanted.forEach((el, i) => {
    if (tbody.children[i] !== el) tbody.insertBefore(el, tbody.children[i] ?? null);
  });
  const empty = s.cart.lines.length === 0;
  const cart = byTestId('cart');
  if (cart.dataset.lines !== String(s.cart.lines.length)) cart.dataset.lines = String(s.cart.lines.length);
  if (byTestId('cart-empty').hidden !== !empty) byTestId('cart-empty').hidden = !empty;
  if (cart.hidden !== empty) cart.hidden = empty;
  revealSelected();
}

/**
 * Scrolls the selected line into view when the selection changed. Scrolling needs
 * layout; done in the next animation frame it uses the layout the frame does anyway,
 * instead of forcing one in the middle of a render (that cost ~5 ms per scan).
 */
let revealedLineNo = null;
let revealQueued = false;
function revealSelected() {
  if (selectedLineNo === revealedLineNo || revealQueued) return;
  revealQueued = true;
  requestAnimationFrame(() => {
    revealQueued = false;
    revealedLineNo = selectedLineNo;
    if (selectedLineNo !== null) rowCache.get(selectedLineNo)?.el.scrollIntoView({ block: 'nearest' });
  });
}

function cartRow(line, paidState, canEdit) {
  const total = paidState.totalMinor ?? line.unitPriceMinor * line.qty;
  const alloc = paidState.alloc;
  let paid;
  if (alloc !== null) {
    const rest = total - alloc.coversMinor;
    paid = [h('span', { class: 'tok' }, units(alloc.units, alloc.token)), rest > 0 ? ` + ${money(rest)} cash` : ''];
  } else {
    paid = h('span', { class: 'muted' }, paidState.state === 'priced' ? 'cash' : paidState.state === 'failed' ? 'not priced' : 'pricing…');
  }
  const select = () => {
    selectedLineNo = line.lineNo;
    render();
  };
  const qty = (q) => (e) => {
    e.stopPropagation();
    selectedLineNo = line.lineNo;
    if (editable()) void send({ type: 'setQty', lineNo: line.lineNo, qty: q });
  };
  return h(
    'tr',
    { testid: 'cart-line', data: { lineNo: String(line.lineNo), gtin: line.gtin }, onclick: select },
    h(
      'td',
      { class: 'c-name' },
      h('div', { class: 'line-name', testid: 'line-name' }, line.name),
      h('div', { class: 'sub', testid: 'line-unit' }, h('span', { class: 'fiat' }, `${money(line.unitPriceMinor)}\u00a0each`), tokenPrices(line.tokenPrices)),
    ),
    h(
      'td',
      { class: 'c-qty' },
      h('div', { class: 'qty' },
        h('button', { type: 'button', class: 'icon edit', testid: 'btn-line-dec', data: { lineNo: String(line.lineNo) }, disabled: !canEdit || line.qty <= 1, 'aria-label': `One less ${line.name}`, onclick: qty(line.qty - 1) }, '−'),
        h('span', { class: 'n', testid: 'line-qty' }, String(line.qty)),
        h('button', { type: 'button', class: 'icon edit', testid: 'btn-line-inc', data: { lineNo: String(line.lineNo) }, disabled: !canEdit || line.qty >= QTY_MAX, 'aria-label': `One more ${line.name}`, onclick: qty(line.qty + 1) }, '+'),
      ),
    ),
    h('td', { class: 'c-total' }, h('div', { class: 'num amount', testid: 'line-total' }, money(total)), h('div', { class: 'paid', testid: 'line-paid' }, paid)),
    h(
      'td',
      { class: 'c-act' },
      h('button', {
        type: 'button', class: 'icon void edit', testid: 'btn-void', data: { lineNo: String(line.lineNo) }, disabled: !canEdit, 'aria-label': `Void ${line.name}`, title: 'Void this line',
        onclick: (e) => {
          e.stopPropagation();
          if (editable()) void send({ type: 'voidLine', lineNo: line.lineNo });
        },
      }, '✕'),
    ),
  );
}

function renderCustomer(s) {
  const c = s.cart.customer;
  const priced = currentPricing();
  const sig = JSON.stringify([c, s.cart.tenders, priced?.debits ?? null, editable()]);
  region(byTestId('customer'), sig, () => {
    if (c === null) {
      return [h('h2', {}, 'Customer'), h('p', { class: 'muted', testid: 'customer-none' }, 'No customer. Scan a loyalty card to pay with tokens.')];
    }
    const using = new Set(s.cart.tenders.map((t) => t.token));
    const debits = priced?.debits ?? {};
    const rows = c.balances.map((b) => {
      const debit = debits[b.token] ?? 0;
      return h(
        'tr',
        { testid: 'balance', data: { token: b.token } },
        h('td', { title: b.name }, h('div', { class: 'tok-code' }, b.token), h('div', { class: 'sub name' }, b.name)),
        h('td', { class: 'num', testid: 'balance-units' }, String(b.units), debit > 0 ? h('div', { class: 'sub after', testid: 'balance-after' }, `after: ${b.units - debit}`) : null),
        h(
          'td',
          { class: 'use' },
          b.spendable
            ? h('button', { type: 'button', class: `toggle edit${using.has(b.token) ? ' on' : ''}`, testid: 'btn-tender', data: { token: b.token }, 'aria-pressed': String(using.has(b.token)), disabled: !editable(), onclick: () => toggleTender(b.token) }, using.has(b.token) ? `Using ${b.token}` : `Use ${b.token}`)
            : h('span', { class: 'muted small' }, 'not accepted here'),
        ),
      );
    });
    return [
      h('div', { class: 'cust-head' },
        h('div', {}, h('h2', { testid: 'customer-name' }, c.name), h('div', { class: 'sub', testid: 'customer-card' }, `Card ${c.card}`)),
        h('button', { type: 'button', class: 'small edit', testid: 'btn-remove-customer', disabled: !editable(), title: 'Shift+F4', onclick: () => editable() && send({ type: 'removeCustomer' }) }, 'Remove'),
      ),
      c.balances.length === 0 ? h('p', { class: 'muted' }, 'No tokens yet.') : h('table', { class: 'balances' }, h('tbody', {}, rows)),
    ];
  });
}

function toggleTender(token) {
  if (!editable()) return;
  const tenders = state.cart.tenders;
  const next = tenders.some((t) => t.token === token) ? tenders.filter((t) => t.token !== token) : [...tenders, { token }];
  void send({ type: 'setTenders', tenders: next });
}

function renderTotals(s) {
  const priced = currentPricing();
  const localTotal = s.cart.lines.reduce((sum, l) => sum + l.unitPriceMinor * l.qty, 0);
  const items = s.cart.lines.reduce((sum, l) => sum + l.qty, 0);
  const sig = JSON.stringify([priced?.totalMinor ?? null, priced?.totalsByToken ?? null, localTotal, items, currency(), s.pricingError === null]);
  byTestId('totals').hidden = s.cart.lines.length === 0;
  region(byTestId('totals'), sig, () => {
    const byToken = Object.entries(priced?.totalsByToken ?? {});
    const note =
      priced === null
        ? h('span', { class: 'sub' }, s.pricingError === null ? 'being priced by the store server…' : 'at the prices last seen: not priced by the store server')
        : byToken.length > 0
          ? h('span', { class: 'by-token' }, 'or ', byToken.map(([t, u], i) => [i > 0 ? ' or ' : '', h('span', { class: 'tok', testid: 'total-token', data: { token: t } }, units(u, t))]))
          : h('span', { class: 'sub' }, 'no single token type pays for every item');
    return [
      h('div', { class: 'left' }, h('div', { class: 'label' }, 'Total'), h('div', { class: 'sub', testid: 'total-items' }, `${items} item${items === 1 ? '' : 's'}`)),
      h('div', { class: 'right' }, h('div', { class: 'grand', testid: 'total-money' }, money(priced?.totalMinor ?? localTotal)), note),
    ];
  });
}

function renderPayment(s) {
  const priced = currentPricing();
  const sig = JSON.stringify([s.cart.tenders, s.cart.cashTenderedMinor, s.cart.lines.length, priced?.debits ?? null, priced?.cashDueMinor ?? null, s.pricingError, currency(), editable()]);
  region(byTestId('payment'), sig, () => {
    const out = [h('h2', {}, 'Payment')];
    if (s.cart.lines.length === 0) {
      out.push(h('p', { class: 'muted' }, 'Nothing to pay yet.'));
      return out;
    }
    const tenders = s.cart.tenders;
    out.push(
      h('div', { class: 'tenders', testid: 'tenders' },
        h('span', { class: 'k' }, 'Pay with '),
        tenders.length === 0
          ? h('span', { class: 'chip cash' }, 'cash only')
          : tenders.map((t, i) => [i > 0 ? h('span', { class: 'then' }, ' then ') : '', h('span', { class: 'chip', testid: 'tender', data: { token: t.token } }, t.units === undefined ? `${t.token}, all it can pay` : units(t.units, t.token))]),
      ),
    );
    if (priced !== null) {
      const debits = Object.entries(priced.debits);
      out.push(
        h('div', { class: 'row' }, h('span', { class: 'k' }, 'Tokens taken'), h('span', { class: 'v', testid: 'debits' }, debits.length === 0 ? 'none' : debits.map(([t, u], i) => [i > 0 ? ' + ' : '', h('span', { class: 'tok', testid: 'debit', data: { token: t } }, units(u, t))]))),
        h('div', { class: 'row strong' }, h('span', { class: 'k' }, 'Cash due'), h('span', { class: 'v num', testid: 'cash-due' }, money(priced.cashDueMinor))),
      );
    }
    const tendered = s.cart.cashTenderedMinor;
    out.push(h('div', { class: 'row' }, h('span', { class: 'k' }, 'Cash tendered'), h('span', { class: 'v num', testid: 'cash-tendered' }, tendered > 0 ? money(tendered) : '-')));
    if (priced !== null && tendered > 0) {
      const diff = tendered - priced.cashDueMinor;
      out.push(
        diff >= 0
          ? h('div', { class: 'row strong change' }, h('span', { class: 'k' }, 'Change'), h('span', { class: 'v num', testid: 'change' }, money(diff)))
          : h('div', { class: 'row strong short' }, h('span', { class: 'k' }, 'Still to pay'), h('span', { class: 'v num', testid: 'change' }, money(-diff))),
      );
    }
    if (s.pricingError !== null) {
      out.push(h('p', { class: 'error', role: 'alert', testid: 'pricing-error' }, sentence(s.pricingError.message)));
      const fix = shortfallFix(s);
      if (fix !== null) out.push(h('button', { type: 'button', class: 'small edit fix', testid: 'btn-fix-tender', data: { token: fix.token }, disabled: !editable(), onclick: () => send({ type: 'setTenders', tenders: fix.tenders }) }, `Use the ${units(fix.held, fix.token)} held`));
    }
    return out;
  });
}

/**
 * "Not enough ACME tokens": the cashier most often wants to take what the customer
 * holds and the rest in cash, so the page offers exactly that tender, one click away.
 */
function shortfallFix(s) {
  const err = s.pricingError;
  const token = err?.details?.token;
  if (err?.code !== 'CORE_ERR_INSUFFICIENT_TOKENS' || typeof token !== 'string') return null;
  const held = s.cart.customer?.balances.find((b) => b.token === token)?.units ?? 0;
  if (held <= 0 || !s.cart.tenders.some((t) => t.token === token)) return null;
  return { token, held, tenders: s.cart.tenders.map((t) => (t.token === token ? { token, units: held } : t)) };
}

function renderLastSale(s) {
  const box = byTestId('last-sale');
  const sale = s.lastSale;
  box.hidden = sale === null || s.cart.lines.length > 0;
  region(box, JSON.stringify(sale), () => {
    if (sale === null) return [];
    const m = (x) => formatMinor(x, sale.currency);
    const debits = Object.entries(sale.debits);
    const after = Object.entries(sale.balancesAfter ?? {});
    return [
      h('h2', {}, 'Last sale ', h('span', { testid: 'last-sale-id' }, sale.saleId)),
      h('div', { class: 'row' }, h('span', { class: 'k' }, 'Total'), h('span', { class: 'v num' }, m(sale.totalMinor))),
      debits.length > 0 ? h('div', { class: 'row' }, h('span', { class: 'k' }, 'Tokens taken'), h('span', { class: 'v' }, debits.map(([t, u]) => units(u, t)).join(' + '))) : null,
      sale.cash.dueMinor > 0 || sale.cash.tenderedMinor > 0
        ? h('div', { class: 'row' }, h('span', { class: 'k' }, 'Cash'), h('span', { class: 'v' }, `${m(sale.cash.dueMinor)} due, ${m(sale.cash.tenderedMinor)} given, change ${m(sale.cash.changeMinor)}`))
        : null,
      sale.customer !== null ? h('div', { class: 'row' }, h('span', { class: 'k' }, 'Customer'), h('span', { class: 'v' }, sale.customer.name)) : null,
      after.length > 0 ? h('div', { class: 'row' }, h('span', { class: 'k' }, 'Balances left'), h('span', { class: 'v', testid: 'last-sale-balances' }, after.map(([t, u]) => units(u, t)).join(' · '))) : null,
    ];
  });
}

function renderControls(s) {
  const canEdit = editable();
  const hasLines = s.cart.lines.length > 0;
  const line = selectedLine();
  for (const el of document.querySelectorAll('.edit')) {
    if (el.closest('[data-testid="cart-lines"], [data-testid="customer"]') !== null) continue; // drawn with their rows
    el.disabled = !canEdit;
  }
  byTestId('btn-qty-dec').disabled = !canEdit || line === null || line.qty <= 1;
  byTestId('btn-qty-inc').disabled = !canEdit || line === null || line.qty >= QTY_MAX;
  byTestId('btn-qty').disabled = !canEdit || line === null;
  byTestId('btn-void-selected').disabled = !canEdit || line === null;
  byTestId('btn-cancel-sale').disabled = !canEdit || (!hasLines && s.cart.customer === null);
  byTestId('btn-tokens').disabled = !canEdit || s.cart.customer === null;
  byTestId('btn-cash').disabled = !canEdit || !hasLines;
  byTestId('btn-complete').disabled = !canEdit || !hasLines;
  byTestId('btn-complete').classList.toggle('busy', s.completing !== null);
  $('.label', byTestId('btn-complete')).textContent = s.completing === null ? 'Complete sale' : 'Confirming…';
}

// ---- refund panel (opened by scanning a receipt) ----------------------------------------

/** The time of a sale as the receipt prints it: "2026-11-28 21:23", local time. */
function localTime(iso) {
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

let refundPending = null;

function renderRefund(s) {
  const dlg = byTestId('refund-panel');
  if (s.refund === null) {
    if (dlg.open) dlg.close();
    return;
  }
  const { sale, refunded } = s.refund;
  const m = (x) => formatMinor(x, sale.currency);
  region(byTestId('refund-sale'), JSON.stringify(s.refund), () => {
    const out = [
      h('p', { class: 'what' }, h('strong', { testid: 'refund-sale-id' }, sale.saleId), ` · ${localTime(sale.at)}`, sale.customer !== null ? ` · ${sale.customer.name}` : ''),
      h('table', { class: 'mini' }, h('tbody', {}, sale.lines.map((l) => h('tr', {}, h('td', {}, `${l.qty} × ${l.name}`), h('td', { class: 'num' }, m(l.totalMinor)))))),
      h('div', { class: 'row strong' }, h('span', { class: 'k' }, 'Total'), h('span', { class: 'v num' }, m(sale.totalMinor))),
    ];
    const debits = Object.entries(sale.debits);
    if (debits.length > 0) out.push(h('div', { class: 'row' }, h('span', { class: 'k' }, 'Paid in tokens'), h('span', { class: 'v' }, debits.map(([t, u]) => units(u, t)).join(' + '))));
    if (sale.cash.dueMinor > 0) out.push(h('div', { class: 'row' }, h('span', { class: 'k' }, 'Paid in cash'), h('span', { class: 'v num' }, m(sale.cash.dueMinor))));
    if (refunded !== null) {
      const credited = Object.entries(refunded.credited);
      out.push(
        h('p', { class: 'ok', testid: 'refund-result' }, `Refunded as ${refunded.refundId}.`, credited.length > 0 ? ` ${credited.map(([t, u]) => units(u, t)).join(' and ')} credited back.` : '', refunded.cashRefundMinor > 0 ? ` Give back ${m(refunded.cashRefundMinor)} in cash.` : ''),
      );
    } else if (sale.refunded) {
      out.push(h('p', { class: 'error', testid: 'refund-result' }, 'This sale was already refunded.'));
    }
    return out;
  });
  const done = refunded !== null || sale.refunded;
  // A refusal (wrong PIN, not a supervisor) arrives as the next message: show it in the form.
  if (refundPending !== null && s.message !== null && s.message.at !== refundPending.messageAt) {
    if (!done && s.message.kind === 'error') showError(byTestId('refund-form'), s.message.text);
    refundPending = null;
  }
  byTestId('refund-form').hidden = done;
  byTestId('refund-done').hidden = !done;
  if (!dlg.open) {
    closeDialogs();
    byTestId('refund-form').reset();
    clearError(byTestId('refund-form'));
    dlg.showModal();
    (done ? byTestId('btn-refund-close') : byTestId('refund-staff')).focus();
  } else if (done && dlg.contains(document.activeElement) === false) {
    byTestId('btn-refund-close').focus();
  }
}

// ---- dialogs -----------------------------------------------------------------------------

function openDialog() {
  return document.querySelector('dialog[open]');
}

function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

function showError(form, text) {
  const p = $('[data-role="error"]', form);
  p.textContent = sentence(text);
  p.hidden = false;
}

function clearError(form) {
  const p = $('[data-role="error"]', form);
  if (p !== null) p.hidden = true;
}

function openModal(testid, prepare) {
  if (state === null || openDialog() !== null) return;
  const dlg = byTestId(testid);
  const form = $('form', dlg);
  form.reset();
  clearError(form);
  prepare?.(dlg);
  dlg.showModal();
  const first = $('input:not([type="checkbox"]), [autofocus]', dlg) ?? $('button[type="submit"]', dlg);
  first?.focus();
  first?.select?.();
}

function openQty() {
  const line = selectedLine();
  if (!editable() || line === null) return;
  openModal('dlg-qty', () => {
    byTestId('dlg-qty-line').textContent = `${line.name} (now ${line.qty})`;
    byTestId('qty-input').value = String(line.qty);
  });
}

function openTokens() {
  const c = state?.cart.customer;
  if (!editable()) return;
  if (c === null || c === undefined) {
    showLocal('error', 'scan the customer card before paying with tokens');
    return;
  }
  openModal('dlg-tokens', () => {
    const tenders = state.cart.tenders;
    const order = [...tenders.map((t) => t.token), ...c.balances.map((b) => b.token).filter((t) => !tenders.some((x) => x.token === t))];
    const totals = currentPricing()?.totalsByToken ?? {};
    byTestId('token-rows').replaceChildren(
      ...order.map((token) => {
        const b = c.balances.find((x) => x.token === token) ?? { token, name: token, units: 0, spendable: false };
        const t = tenders.find((x) => x.token === token);
        return h(
          'div',
          { class: `token-row${b.spendable ? '' : ' disabled'}`, testid: 'token-row', data: { token } },
          h('label', { class: 'use' }, h('input', { type: 'checkbox', name: 'use', value: token, checked: t !== undefined, disabled: !b.spendable, testid: 'token-use', data: { token } }), h('span', { class: 'tok-code' }, token)),
          h('span', { class: 'bal' }, `${b.name}: ${b.units} held`, totals[token] !== undefined ? h('span', { class: 'sub' }, ` · cart costs ${units(totals[token], token)}`) : null, b.spendable ? null : h('span', { class: 'sub' }, ' · not accepted here')),
          h('label', { class: 'units' }, h('span', { class: 'visually-hidden' }, `${token} units`), h('input', { type: 'number', name: `units-${token}`, min: '1', step: '1', inputmode: 'numeric', placeholder: 'all', value: t?.units ?? '', disabled: !b.spendable, testid: 'token-units', data: { token } })),
        );
      }),
    );
  });
}

function openCash() {
  if (!editable() || state.cart.lines.length === 0) return;
  const due = currentPricing()?.cashDueMinor ?? null;
  openModal('dlg-cash', () => {
    byTestId('dlg-cash-due').textContent = due === null ? 'Cash due: being priced…' : `Cash due: ${money(due)}`;
    byTestId('cash-input').value = state.cart.cashTenderedMinor > 0 ? formatMinor(state.cart.cashTenderedMinor, currency()).replace(/^[^\d]+/, '') : '';
    const quick = [];
    if (due !== null && due > 0) quick.push(['Exact', due]);
    const scale = ZERO_DECIMAL_CURRENCIES.has(currency()) ? 1 : 100;
    for (const note of [5, 10, 20, 50, 100]) if (due === null || note * scale >= due) quick.push([formatMinor(note * scale, currency()), note * scale]);
    byTestId('cash-quick').replaceChildren(
      ...quick.slice(0, 5).map(([label, minor]) => h('button', { type: 'button', class: 'small', testid: 'cash-quick-btn', onclick: () => setCash(minor) }, label)),
    );
  });
}

async function setCash(minor) {
  closeDialogs();
  await send({ type: 'setCash', cashTenderedMinor: minor });
}

function openCancel() {
  if (!editable() || state === null || (state.cart.lines.length === 0 && state.cart.customer === null)) return;
  openModal('dlg-cancel');
}

function complete() {
  if (!editable() || state.cart.lines.length === 0) return;
  void send({ type: 'complete' });
}

function changeQty(delta) {
  const line = selectedLine();
  if (!editable() || line === null) return;
  const qty = line.qty + delta;
  if (qty < 1 || qty > QTY_MAX) return;
  void send({ type: 'setQty', lineNo: line.lineNo, qty });
}

function voidSelected() {
  const line = selectedLine();
  if (!editable() || line === null) return;
  void send({ type: 'voidLine', lineNo: line.lineNo });
}

function moveSelection(step) {
  const lines = state?.cart.lines ?? [];
  if (lines.length === 0) return;
  const i = lines.findIndex((l) => l.lineNo === selectedLineNo);
  const next = i < 0 ? lines.length - 1 : Math.min(lines.length - 1, Math.max(0, i + step));
  selectedLineNo = lines[next].lineNo;
  render();
}

/** What each dialog's form does on Enter; a false result keeps the dialog open. */
const submitters = {
  async qty(form) {
    const qty = Number(form.elements.qty.value);
    const line = selectedLine();
    if (line === null) return true;
    if (!Number.isSafeInteger(qty) || qty < 1 || qty > QTY_MAX) return showError(form, `a quantity is a whole number from 1 to ${QTY_MAX}`), false;
    return send({ type: 'setQty', lineNo: line.lineNo, qty });
  },
  async tokens(form) {
    const tenders = [];
    for (const row of form.querySelectorAll('[data-testid="token-row"]')) {
      const token = row.dataset.token;
      if (!$('input[type="checkbox"]', row).checked) continue;
      const raw = $('input[type="number"]', row).value.trim();
      if (raw === '') {
        tenders.push({ token });
        continue;
      }
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n < 1) return showError(form, `${token}: units are a whole number, at least 1`), false;
      tenders.push({ token, units: n });
    }
    return send({ type: 'setTenders', tenders });
  },
  async cash(form) {
    const minor = parseMoney(form.elements.cash.value, currency());
    if (minor === null) return showError(form, `type an amount of money, e.g. ${formatMinor(2000, currency())}`), false;
    return send({ type: 'setCash', cashTenderedMinor: minor });
  },
  async cancel() {
    return send({ type: 'cancelSale' });
  },
  async receipt(form) {
    const code = form.elements.saleId.value.trim().toUpperCase();
    if (!/^S\d{10}$/.test(code)) return showError(form, 'a sale number is S followed by 10 digits, as printed under the receipt barcode'), false;
    return send({ type: 'scan', code });
  },
  async signin(form) {
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    return send({ type: 'login', staffId, pin });
  },
  async refund(form) {
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    const reason = form.elements.reason.value.trim();
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    if (reason === '') return showError(form, 'say why the sale is refunded'), false;
    // The panel stays open: the next state says whether it was refunded or why not.
    refundPending = { messageAt: state?.message?.at ?? null };
    form.elements.pin.value = '';
    await send({ type: 'refund', staffId, pin, reason });
    return false;
  },
};

for (const form of document.querySelectorAll('dialog form')) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError(form);
    const run = submitters[form.dataset.action];
    const close = await run(form);
    if (close !== false) form.closest('dialog').close();
  });
}
for (const btn of document.querySelectorAll('dialog [data-close]')) {
  btn.addEventListener('click', () => {
    const dlg = btn.closest('dialog');
    if (dlg.dataset.testid === 'refund-panel') void send({ type: 'closeRefund' });
    dlg.close();
  });
}
byTestId('refund-panel').addEventListener('cancel', () => void send({ type: 'closeRefund' }));
byTestId('btn-tokens-none').addEventListener('click', async () => {
  closeDialogs();
  await send({ type: 'setTenders', tenders: [] });
});
// A closed dialog hands the keyboard back to the scan field.
for (const dlg of document.querySelectorAll('dialog')) {
  dlg.addEventListener('close', () => {
    if (openDialog() === null) byTestId('scan-input').focus();
  });
}

// ---- buttons -----------------------------------------------------------------------------

const onClick = (testid, fn) => byTestId(testid).addEventListener('click', fn);
onClick('btn-qty-dec', () => changeQty(-1));
onClick('btn-qty-inc', () => changeQty(1));
onClick('btn-qty', openQty);
onClick('btn-void-selected', voidSelected);
onClick('btn-cancel-sale', openCancel);
onClick('btn-tokens', openTokens);
onClick('btn-cash', openCash);
onClick('btn-complete', complete);
onClick('btn-reprint', () => void send({ type: 'reprint' }));
onClick('btn-refund', () => openModal('dlg-receipt'));
onClick('btn-signin', () => openModal('dlg-signin'));
onClick('btn-signout', () => void send({ type: 'logout' }));
onClick('btn-dismiss', () => {
  localMessage = null;
  void send({ type: 'dismiss' });
});

byTestId('scan-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = byTestId('scan-input');
  const code = input.value.trim();
  input.value = '';
  if (code !== '') void send({ type: 'scan', code });
});

// ---- keyboard ------------------------------------------------------------------------------

/**
 * A keyboard-wedge scanner "types" a code and Enter. A character typed while no field
 * has focus moves the focus into the scan field and lands there, so the rest of the burst
 * and its Enter arrive in the scan form, which sends the code as a scan, whatever the
 * typing speed. So a focused button is never pressed by the scanner's Enter either.
 * Space is left alone: it presses the focused button.
 */
function isCodeCharacter(e) {
  return e.key.length === 1 && e.key !== ' ' && e.key !== '+' && e.key !== '-' && !e.ctrlKey && !e.altKey && !e.metaKey;
}

document.addEventListener(
  'keydown',
  (e) => {
    if (state === null) return;
    const target = e.target;
    const scanField = byTestId('scan-input');
    const inScanField = target === scanField;
    const inField = isEditable(target);

    // Dialogs handle their own keys: Enter submits their form, Esc closes them.
    if (openDialog() !== null) return;

    if (!inField && isCodeCharacter(e)) {
      e.preventDefault();
      if (scanField.disabled) return showLocal('error', 'a sale is being completed: wait for it to finish');
      scanField.focus();
      if (scanField.value.length < SCAN_CODE_LENGTH_MAX) scanField.value += e.key;
      return;
    }

    const plain = !e.ctrlKey && !e.altKey && !e.metaKey;
    const handled = () => {
      e.preventDefault();
      e.stopPropagation();
    };
    if (plain && e.key === 'F2' && !e.shiftKey) return handled(), openQty();
    if (plain && e.key === 'F4' && !e.shiftKey) return handled(), openTokens();
    if (plain && e.key === 'F4' && e.shiftKey) return handled(), editable() && state.cart.customer !== null && void send({ type: 'removeCustomer' });
    if (plain && e.key === 'F8') return handled(), openCash();
    if (plain && e.key === 'F9') return handled(), complete();
    if (plain && e.key === 'F10' && !e.shiftKey) return handled(), void send({ type: 'reprint' });
    if (plain && e.key === 'F10' && e.shiftKey) return handled(), openModal('dlg-receipt');
    if (plain && e.key === 'Delete' && e.shiftKey) return handled(), openCancel();
    if (plain && e.key === 'Escape' && (localMessage !== null || state.message !== null)) {
      localMessage = null;
      return handled(), void send({ type: 'dismiss' });
    }

    // Line keys work when no field is being typed in (the scan field counts while empty).
    const free = !inField || (inScanField && scanField.value === '');
    if (!free || !plain) return;
    // '+' needs Shift on many layouts; the other line keys are unshifted.
    if (e.key === '+') return handled(), changeQty(1);
    if (e.key === '-') return handled(), changeQty(-1);
    if (e.shiftKey) return;
    if (e.key === 'ArrowUp') return handled(), moveSelection(-1);
    if (e.key === 'ArrowDown') return handled(), moveSelection(1);
    if (e.key === 'Delete') return handled(), voidSelected();
  },
  true,
);
