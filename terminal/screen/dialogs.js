/**
 * The dialogs: quantity, tokens, cash, cancel, receipt number, sign-in, the refund form,
 * and the cashier's day (open and close shift with a count, paid in/out, no sale, X and Z
 * reports, the closed shift's result). Enter submits a dialog's form, Esc closes it; a closed dialog hands the keyboard
 * back to the scan field. The customer-PIN dialog opens and closes with the terminal's
 * state: it shows while a sale waits for the customer's PIN.
 */
import { setCash, setTenders } from './actions.js';
import { $, byTestId, h } from './dom.js';
import { formatMinor, formatMinorPlain, formatUnits as units, minorPerUnit, parseMoney, sentence } from './format.js';
import { send } from './socket.js';
import { currency, currentPricing, editable, money, QTY_MAX, selectedLine, showLocal, ui } from './state.js';

export function openDialog() {
  return document.querySelector('dialog[open]');
}

export function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

export function showError(form, text) {
  const p = $('[data-role="error"]', form);
  p.textContent = sentence(text);
  p.hidden = false;
}

export function clearError(form) {
  const p = $('[data-role="error"]', form);
  if (p !== null) p.hidden = true;
}

export function openModal(testid, prepare) {
  if (ui.state === null || openDialog() !== null) return;
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

export function openQty() {
  const line = selectedLine();
  if (!editable() || line === null) return;
  openModal('dlg-qty', () => {
    byTestId('dlg-qty-line').textContent = `${line.name} (now ${line.qty})`;
    byTestId('qty-input').value = String(line.qty);
  });
}

export function openTokens() {
  const c = ui.state?.cart.customer;
  if (!editable()) return;
  if (c === null || c === undefined) {
    showLocal('error', 'scan the customer card before paying with tokens');
    return;
  }
  openModal('dlg-tokens', () => {
    // Tokens from the mall wallet have their own dialog; this one sets those from the card.
    const tenders = ui.state.cart.tenders.filter((t) => t.source !== 'wallet');
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

export function openCash() {
  if (!editable() || ui.state.cart.lines.length === 0) return;
  const due = currentPricing()?.cashDueMinor ?? null;
  openModal('dlg-cash', () => {
    byTestId('dlg-cash-due').textContent = due === null ? 'Cash due: being priced…' : `Cash due: ${money(due)}`;
    byTestId('cash-input').value = ui.state.cart.cashTenderedMinor > 0 ? formatMinorPlain(ui.state.cart.cashTenderedMinor, currency()) : '';
    const quick = [];
    if (due !== null && due > 0) quick.push(['Exact', due]);
    const scale = minorPerUnit(currency());
    for (const note of [5, 10, 20, 50, 100]) if (due === null || note * scale >= due) quick.push([formatMinor(note * scale, currency()), note * scale]);
    byTestId('cash-quick').replaceChildren(
      ...quick.slice(0, 5).map(([label, minor]) => h('button', { type: 'button', class: 'small', testid: 'cash-quick-btn', onclick: () => closeAndSetCash(minor) }, label)),
    );
  });
}

export function openCancel() {
  if (!editable() || (ui.state.cart.lines.length === 0 && ui.state.cart.customer === null)) return;
  openModal('dlg-cancel');
}

// ---- the cashier's day ----------------------------------------------------------------

/** Notes and coins a drawer holds, in minor units, for currencies with cents. */
const PIECES_MINOR = [50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1];
const PIECE_COUNT_MAX = 1_000_000;

export function shiftOpen() {
  return ui.state?.shift.current ?? null;
}

function fillCountGrid(dlg) {
  const pieces = minorPerUnit(currency()) === 100 ? PIECES_MINOR : [];
  const grid = $('[data-role="count-grid"]', dlg);
  grid.replaceChildren(
    ...pieces.map((v) =>
      h(
        'label',
        { class: 'piece' },
        h('span', { class: 'piece-value' }, formatMinor(v, currency())),
        h('input', { type: 'number', min: '0', max: String(PIECE_COUNT_MAX), step: '1', inputmode: 'numeric', name: `piece-${v}`, placeholder: '0', testid: 'count-piece', data: { value: String(v) }, oninput: () => showCountSum(dlg) }),
      ),
    ),
  );
  $('details', dlg).hidden = pieces.length === 0;
  showCountSum(dlg);
}

/** The pieces counted, as the store takes them; the store sums them itself. */
function countedPieces(dlg) {
  const out = [];
  for (const input of dlg.querySelectorAll('[data-testid="count-piece"]')) {
    const raw = input.value.trim();
    if (raw === '') continue;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0 || n > PIECE_COUNT_MAX) return { error: `${formatMinor(Number(input.dataset.value), currency())}: a count is a whole number` };
    if (n > 0) out.push({ valueMinor: Number(input.dataset.value), count: n });
  }
  return { pieces: out };
}

/** Shows the sum of the pieces as the cashier types, for their own check only. */
function showCountSum(dlg) {
  const { pieces } = countedPieces(dlg);
  const sum = (pieces ?? []).reduce((acc, p) => acc + p.valueMinor * p.count, 0);
  $('[data-role="count-sum"]', dlg).textContent = Number.isSafeInteger(sum) ? money(sum) : '-';
}

/** The count a shift dialog holds: the pieces when any were counted, else the typed total. */
function readCount(form) {
  const dlg = form.closest('dialog');
  const counted = countedPieces(dlg);
  if (counted.error !== undefined) return counted;
  if (counted.pieces.length > 0) return { count: { denominations: counted.pieces } };
  const total = parseMoney(form.elements.total.value, currency());
  if (total === null) return { error: `type the total counted, e.g. ${formatMinor(15000, currency())}, or count the notes and coins` };
  return { count: { totalMinor: total } };
}

/** Opens the shift dialog that fits: open a shift when none is open on this till, else close it. */
export function openShiftDialog() {
  if (!editable()) return;
  if (ui.state.shift.known && shiftOpen() === null) openModal('dlg-shift-open', fillCountGrid);
  else if (shiftOpen() !== null) openModal('dlg-shift-close', fillCountGrid);
  else showLocal('error', 'the store server has not said whether a shift is open on this till yet: wait for it to connect');
}

export function openCashMove() {
  if (editable()) openModal('dlg-cash-move');
}

export function openNoSale() {
  if (editable()) openModal('dlg-no-sale');
}

export function openXReport() {
  if (ui.state !== null) openModal('dlg-x-report');
}

export function openZReport() {
  if (editable()) openModal('dlg-z-report');
}

/** The closed shift's result: it opens with the terminal's state and stays until Done. */
export function showShiftResult(closed) {
  const dlg = byTestId('dlg-shift-result');
  if (closed === null) {
    if (dlg.open) dlg.close();
    return;
  }
  const m = (x) => (x === null ? '-' : money(x));
  const overShort = closed.overShortMinor ?? 0;
  const verdict = overShort === 0 ? 'the count matches' : overShort > 0 ? `over by ${money(overShort)}` : `short by ${money(-overShort)}`;
  byTestId('shift-result').replaceChildren(
    ...[
      ['Counted', m(closed.countedMinor), 'shift-result-counted'],
      ['Expected', m(closed.expectedMinor), 'shift-result-expected'],
      ['Over / short', verdict, 'shift-result-over-short'],
      ['Opening float', m(closed.openingFloatMinor), null],
      ['Cash sales', m(closed.cashSalesMinor), null],
      ['Paid in', m(closed.paidInMinor), null],
      ['Paid out', m(closed.paidOutMinor), null],
    ].flatMap(([label, value, testid]) => [h('dt', {}, label), h('dd', { testid }, value)]),
  );
  byTestId('dlg-shift-result').dataset.overShort = String(overShort);
  if (!dlg.open) {
    closeDialogs();
    dlg.showModal();
    byTestId('btn-shift-result-close').focus();
  }
}

/**
 * Sends a command and keeps the dialog open with the terminal's refusal in it, so a
 * mistyped PIN or amount can be fixed without typing everything again.
 */
export async function sendFromDialog(form, cmd) {
  const before = ui.state?.message?.at ?? null;
  if (!(await send(cmd))) return false;
  const m = ui.state?.message;
  if (m !== null && m !== undefined && m.at !== before && m.kind === 'error') return showError(form, m.text), false;
  return true;
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
    return setTenders([...tenders, ...ui.state.cart.tenders.filter((t) => t.source === 'wallet')]);
  },
  async cash(form) {
    const minor = parseMoney(form.elements.cash.value, currency());
    if (minor === null) return showError(form, `type an amount of money, e.g. ${formatMinor(2000, currency())}`), false;
    return setCash(minor);
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
  async customerPin(form) {
    const pin = form.elements.pin.value;
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    // The PIN leaves the page once, for this one sale; the field is emptied at once.
    form.elements.pin.value = '';
    // The one PIN pad serves the store's customer PIN and the mall wallet's PIN.
    await send({ type: byTestId('dlg-customer-pin').dataset.pinFor === 'wallet-pin' ? 'walletPin' : 'customerPin', pin });
    // The next state closes the dialog, or opens it again with the refusal.
    return false;
  },
  async 'shift-open'(form) {
    const read = readCount(form);
    if (read.error !== undefined) return showError(form, read.error), false;
    return sendFromDialog(form, { type: 'openShift', count: read.count });
  },
  async 'shift-close'(form) {
    const read = readCount(form);
    if (read.error !== undefined) return showError(form, read.error), false;
    return sendFromDialog(form, { type: 'closeShift', count: read.count });
  },
  async cashMove(form) {
    const amountMinor = parseMoney(form.elements.amount.value, currency());
    const reason = form.elements.reason.value.trim();
    if (amountMinor === null || amountMinor < 1) return showError(form, `type an amount of money, e.g. ${formatMinor(2000, currency())}`), false;
    if (reason === '') return showError(form, 'say why the cash moves'), false;
    return sendFromDialog(form, { type: 'cashMove', kind: form.elements.kind.value, amountMinor, reason });
  },
  async noSale(form) {
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    const reason = form.elements.reason.value.trim();
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    if (reason === '') return showError(form, 'say why the drawer opens'), false;
    form.elements.pin.value = '';
    return sendFromDialog(form, { type: 'noSale', staffId, pin, reason });
  },
  async xReport(form) {
    return sendFromDialog(form, { type: 'xReport', scope: form.elements.scope.value });
  },
  async zReport(form) {
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    form.elements.pin.value = '';
    return sendFromDialog(form, { type: 'zReport', staffId, pin });
  },
  async refund(form) {
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    const reason = form.elements.reason.value.trim();
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    if (reason === '') return showError(form, 'say why the sale is refunded'), false;
    // The panel stays open: the next state says whether it was refunded or why not.
    ui.refundPending = { messageAt: ui.state?.message?.at ?? null };
    form.elements.pin.value = '';
    await send({ type: 'refund', staffId, pin, reason });
    return false;
  },
};

/** More dialogs' submitters, added at page load by the parts of the page that own them. */
export function registerSubmitters(more) {
  Object.assign(submitters, more);
}

async function closeAndSetCash(minor) {
  closeDialogs();
  await setCash(minor);
}

/** Wires the dialogs' forms and buttons once, at page load. */
export function installDialogs() {
  for (const form of document.querySelectorAll('dialog form')) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearError(form);
      const run = submitters[form.dataset.action];
      // The answer can come long after the dialog closed for another reason (a result
      // shown, a receipt still printing) and was opened again: that opening is not closed.
      const dlg = form.closest('dialog');
      let closedMeanwhile = false;
      const onClose = () => (closedMeanwhile = true);
      dlg.addEventListener('close', onClose);
      let close;
      try {
        close = await run(form);
      } finally {
        dlg.removeEventListener('close', onClose);
      }
      if (close !== false && !closedMeanwhile) dlg.close();
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
  const shiftResult = byTestId('dlg-shift-result');
  shiftResult.addEventListener('cancel', (e) => {
    e.preventDefault();
    void send({ type: 'closeShiftResult' });
  });
  byTestId('btn-shift-result-close').addEventListener('click', () => void send({ type: 'closeShiftResult' }));
  installCustomerPin();
  byTestId('btn-tokens-none').addEventListener('click', async () => {
    closeDialogs();
    await setTenders([]);
  });
  // A closed dialog hands the keyboard back to the scan field.
  for (const dlg of document.querySelectorAll('dialog')) {
    dlg.addEventListener('close', () => {
      if (openDialog() === null) byTestId('scan-input').focus();
    });
  }
}

/** The customer-PIN dialog: typed or tapped digits; Esc or its button gives up paying this way. */
function installCustomerPin() {
  const dlg = byTestId('dlg-customer-pin');
  const input = byTestId('customer-pin-input');
  const giveUp = () => {
    input.value = '';
    dlg.close();
    void send({ type: 'stopCompletion' });
  };
  dlg.addEventListener('cancel', (e) => {
    e.preventDefault();
    giveUp();
  });
  byTestId('btn-customer-pin-cancel').addEventListener('click', giveUp);
  for (const key of dlg.querySelectorAll('.keypad [data-key]')) {
    key.addEventListener('click', () => {
      const k = key.dataset.key;
      if (k === 'clear') input.value = '';
      else if (k === 'back') input.value = input.value.slice(0, -1);
      else if (input.value.length < 12) input.value += k;
      input.focus();
    });
  }
}

/**
 * Opens the PIN pad for the sale's customer PIN or its mall wallet PIN (`waiting.for`),
 * with the reason the last PIN was refused if there was one.
 */
export function showCustomerPin(waiting) {
  const dlg = byTestId('dlg-customer-pin');
  const form = $('form', dlg);
  const wallet = waiting.for === 'wallet-pin';
  if (dlg.dataset.pinFor !== waiting.for) {
    dlg.dataset.pinFor = waiting.for;
    byTestId('dlg-customer-pin-title').textContent = wallet ? 'Wallet PIN' : 'Customer PIN';
    byTestId('dlg-customer-pin-why').textContent = wallet
      ? "Tokens from the mall wallet need the customer's wallet PIN. Turn the screen to the customer."
      : "This payment needs the customer's PIN. Turn the screen to the customer.";
  }
  if (!dlg.open) {
    closeDialogs();
    form.reset();
    dlg.showModal();
    byTestId('customer-pin-input').focus();
  }
  if (waiting.code === 'VND_ERR_CUSTOMER_PIN_REQUIRED' || waiting.code === 'MALL_ERR_WALLET_PIN_REQUIRED') clearError(form);
  else showError(form, waiting.text);
}
