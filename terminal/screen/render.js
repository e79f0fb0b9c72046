/* global requestAnimationFrame */
/**
 * Draws the terminal's state. Each part of the page is a region rebuilt only when what
 * it shows changed, so a scan redraws one cart row, not the page.
 */
import { removeCustomer, selectLine, setLineQty, setTenders, toggleTender, voidLine } from './actions.js';
import { clearError, closeDialogs, openDialog, openModal, showCustomerPin, showError, showShiftResult } from './dialogs.js';
import { $, byTestId, findByFocusKey, focusKey, h, region } from './dom.js';
import { renderAuctions } from './auctions.js';
import { renderEconomy } from './economy.js';
import { renderInstruments } from './instruments.js';
import { formatAge, formatMinor, formatUnits as units, localTime, sentence } from './format.js';
import { currency, currentPricing, editable, money, QTY_MAX, selectedLine, ui } from './state.js';

function tokenPrices(prices) {
  // The separator sticks to the price before it, so a wrapped line starts with a price.
  return Object.entries(prices).map(([t, u]) => ['\u00a0· ', h('span', { class: 'tp' }, units(u, t))]);
}

export function render() {
  if (ui.state === null) return;
  const s = ui.state;
  document.body.dataset.stateVersion = String(s.version);
  document.body.classList.toggle('is-completing', s.completing !== null);

  // A new line is selected as it arrives; a voided selection falls back to the last line.
  if (s.cart.nextLineNo > ui.lastNextLineNo && s.cart.lines.length > 0 && s.cart.lines.at(-1).lineNo >= ui.lastNextLineNo) {
    ui.selectedLineNo = s.cart.lines.at(-1).lineNo;
  }
  ui.lastNextLineNo = s.cart.nextLineNo;
  if (!s.cart.lines.some((l) => l.lineNo === ui.selectedLineNo)) ui.selectedLineNo = s.cart.lines.at(-1)?.lineNo ?? null;

  renderHeader(s);
  renderMessage();
  renderCart(s);
  renderCustomer(s);
  renderTotals(s);
  renderPayment(s);
  renderInstruments(s);
  renderLastSale(s);
  renderControls(s);
  renderRefund(s);
  renderWaiting(s);
  showShiftResult(s.shift.closed);
  renderEconomy(s);
  renderAuctions(s);

  const active = document.activeElement;
  if ((active === null || active === document.body) && openDialog() === null) byTestId('scan-input').focus();
}

const SERVER_TEXT = { connecting: 'connecting…', connected: 'connected', offline: 'unreachable', revoked: 'revoked', unauthorised: 'not paired' };
const PRINTER_TEXT = { ready: 'ready', 'paper-out': 'out of paper', 'cover-open': 'cover open', offline: 'offline', unreachable: 'unreachable' };

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

  // The shift open on this till, as the store server knows it.
  const shift = s.shift;
  if (!shift.known) setStatus('status-shift', 'none', 'unknown', 'the store server has not said yet');
  else if (shift.current === null) setStatus('status-shift', 'warn', 'none open');
  else setStatus('status-shift', 'ok', `open since ${localTime(shift.current.openedAt)}`, `${shift.current.cashierName}, float ${money(shift.current.openingFloatMinor)}`);
  byTestId('status-shift').dataset.shift = !shift.known ? 'unknown' : shift.current === null ? 'none' : 'open';

  // The cash drawer, as the printer reports it; a drawer left open is a warning.
  const drawer = s.status.drawer;
  byTestId('status-drawer').hidden = drawer.state === 'none';
  byTestId('status-drawer').dataset.drawer = drawer.state;
  if (drawer.state !== 'none') {
    const openFor = drawer.openSince === null ? null : Math.max(0, Math.round((Date.now() - Date.parse(drawer.openSince)) / 1000));
    const level = drawer.openTooLong || drawer.lastKickError !== null ? 'bad' : drawer.state === 'open' ? 'warn' : drawer.state === 'closed' ? 'ok' : 'none';
    const value = drawer.state === 'open' ? (drawer.openTooLong && openFor !== null ? `open ${formatAge(openFor)}` : 'open') : drawer.state === 'closed' ? 'closed' : 'state unknown';
    setStatus('status-drawer', level, value, drawer.lastKickError ?? '');
  }

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

  // Selling through an outage: sales waiting to be forwarded, the catalog copy's age, the limits.
  const off = s.offline;
  const offItem = byTestId('status-offline');
  offItem.hidden = !off.selling && off.waiting === 0 && off.problem === null;
  offItem.dataset.waiting = String(off.waiting);
  setStatus('status-offline', off.problem !== null || off.stopped !== null ? 'bad' : off.waiting > 0 ? 'warn' : 'ok', `offline: ${off.waiting} sale${off.waiting === 1 ? '' : 's'} waiting${off.forwarding ? ', sending…' : ''}`, off.problem?.message ?? '');
  const banner = byTestId('offline-banner');
  const bannerText = [];
  if (off.selling) {
    bannerText.push(off.stopped !== null ? `Selling offline has stopped: ${off.stopped}.` : 'Selling offline: the store server is unreachable. Cash sales only; no customer cards, tokens or refunds. Each sale is recorded on this till and sent to the store when it is back.');
    if (off.catalog !== null && off.catalog.stale) bannerText.push(`The till's catalog copy is ${formatAge(off.catalog.ageS)} old: prices may have changed.`);
  }
  if (off.problem !== null) bannerText.push(sentence(off.problem.message));
  banner.hidden = bannerText.length === 0;
  banner.dataset.stopped = String(off.selling && off.stopped !== null);
  banner.textContent = bannerText.join(' ');

  // The problems in words, so that nobody has to hover to learn what to do.
  const problems = [];
  if (server.state !== 'connected' && server.state !== 'connecting') problems.push(server.detail ?? 'the store server is unreachable');
  if (!off.selling && off.catalog !== null && off.catalog.stale) problems.push(`the till's catalog copy is ${formatAge(off.catalog.ageS)} old`);
  for (const d of off.priceDifferences.slice(-3)) problems.push(`offline sale ${d.offlineId}: ${d.code} was sold at ${money(d.tillUnitMinor)}, the store's price is ${d.serverUnitMinor === null ? 'unknown' : money(d.serverUnitMinor)}`);
  if (scanner.state === 'disconnected') problems.push(`scanner disconnected${scanner.error ? `: ${scanner.error}` : ''}${scanner.retryInMs ? `; retrying in ${Math.ceil(scanner.retryInMs / 1000)} s` : ''}`);
  if (printer.printer !== 'ready') problems.push(printer.lastError ?? `printer ${PRINTER_TEXT[printer.printer] ?? printer.printer}`);
  if (drawer.openTooLong) problems.push('the cash drawer has been left open: close it');
  if (drawer.lastKickError !== null) problems.push(drawer.lastKickError);
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

export function renderMessage() {
  const box = byTestId('message');
  const m = ui.localMessage ?? ui.state?.message ?? null;
  box.dataset.kind = m === null ? 'none' : m.kind;
  box.setAttribute('role', m?.kind === 'error' ? 'alert' : 'status');
  const text = m === null ? (ui.state?.cart.lines.length ? '' : 'Ready.') : sentence(m.text);
  byTestId('message-text').textContent = text;
  byTestId('btn-dismiss').hidden = m === null;
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
    const selected = line.lineNo === ui.selectedLineNo;
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
  if (ui.selectedLineNo === revealedLineNo || revealQueued) return;
  revealQueued = true;
  requestAnimationFrame(() => {
    revealQueued = false;
    revealedLineNo = ui.selectedLineNo;
    if (revealedLineNo !== null) rowCache.get(revealedLineNo)?.el.scrollIntoView({ block: 'nearest' });
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
  const select = () => selectLine(line.lineNo);
  const qty = (q) => (e) => {
    e.stopPropagation();
    setLineQty(line.lineNo, q);
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
          voidLine(line.lineNo);
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
    const using = new Set(s.cart.tenders.filter((t) => t.source !== 'wallet').map((t) => t.token));
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
        h('button', { type: 'button', class: 'small edit', testid: 'btn-remove-customer', disabled: !editable(), title: 'Shift+F4', onclick: removeCustomer }, 'Remove'),
      ),
      c.balances.length === 0 ? h('p', { class: 'muted' }, 'No tokens yet.') : h('table', { class: 'balances' }, h('tbody', {}, rows)),
    ];
  });
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
          : tenders.map((t, i) => [i > 0 ? h('span', { class: 'then' }, ' then ') : '', h('span', { class: 'chip', testid: 'tender', data: { token: t.token, source: t.source ?? 'card' } }, t.units === undefined ? `${t.token}, all it can pay` : `${units(t.units, t.token)}${t.source === 'wallet' ? ' from the wallet' : ''}`)]),
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
      if (fix !== null) out.push(h('button', { type: 'button', class: 'small edit fix', testid: 'btn-fix-tender', data: { token: fix.token }, disabled: !editable(), onclick: () => setTenders(fix.tenders) }, `Use the ${units(fix.held, fix.token)} held`));
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
  // A sale stopped for a cashier or for pairing is completed again with its own key.
  const again = s.completing !== null && (s.completing.waiting?.for === 'cashier' || s.completing.waiting?.for === 'pairing') && s.cashier !== null;
  byTestId('btn-complete').disabled = !again && (!canEdit || !hasLines);
  byTestId('btn-complete').classList.toggle('busy', s.completing !== null && !again);
  $('.label', byTestId('btn-complete')).textContent = s.completing === null || again ? 'Complete sale' : 'Confirming…';

  // The cashier's day: one shift button, open or close, as the store says.
  const open = s.shift.current !== null;
  byTestId('btn-shift-open').hidden = open;
  byTestId('btn-shift-close').hidden = !open;
  for (const id of ['btn-shift-open', 'btn-shift-close', 'btn-cash-move', 'btn-no-sale', 'btn-z-report']) byTestId(id).disabled = !canEdit;
  byTestId('btn-shift-open').disabled = !canEdit || !s.shift.known;
}

// ---- a sale waiting for a person -------------------------------------------------------

const CONFIRMING_TEXT = 'Confirming the sale with the store server… editing is paused; it will not be charged twice.';

/**
 * A sale being completed may stop for the customer's PIN (its dialog opens), for a
 * cashier's sign-in (the sign-in dialog opens once, then Complete sends it again), or for
 * pairing the till again (said in words; the cart stays).
 */
function renderWaiting(s) {
  const waiting = s.completing?.waiting ?? null;
  byTestId('completing').hidden = s.completing === null;
  byTestId('completing').dataset.waiting = waiting?.for ?? '';
  byTestId('completing-text').textContent = waiting === null ? CONFIRMING_TEXT : sentence(waiting.text);
  const pinDialog = byTestId('dlg-customer-pin');
  if (waiting?.for === 'customer-pin' || waiting?.for === 'wallet-pin') showCustomerPin(waiting);
  else if (pinDialog.open) pinDialog.close();
  const signInFor = waiting?.for === 'cashier' && s.cashier === null ? s.completing.key : null;
  if (signInFor !== null && ui.signInAskedFor !== signInFor) {
    ui.signInAskedFor = signInFor;
    // The sale waits for a cashier: the sign-in comes before any other dialog left open.
    if (!byTestId('dlg-signin').open) closeDialogs();
    openModal('dlg-signin');
  }
}

// ---- refund panel (opened by scanning a receipt) ----------------------------------------

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
  if (ui.refundPending !== null && s.message !== null && s.message.at !== ui.refundPending.messageAt) {
    if (!done && s.message.kind === 'error') showError(byTestId('refund-form'), s.message.text);
    ui.refundPending = null;
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

