/**
 * The dialogs: quantity, tokens, cash, cancel, receipt number, sign-in and the refund
 * form. Enter submits a dialog's form, Esc closes it; a closed dialog hands the keyboard
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
    const tenders = ui.state.cart.tenders;
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
    return setTenders(tenders);
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
    await send({ type: 'customerPin', pin });
    // The next state closes the dialog, or opens it again with the refusal.
    return false;
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

/** Opens the customer-PIN dialog, with the reason the last PIN was refused if there was one. */
export function showCustomerPin(waiting) {
  const dlg = byTestId('dlg-customer-pin');
  const form = $('form', dlg);
  if (!dlg.open) {
    closeDialogs();
    form.reset();
    dlg.showModal();
    byTestId('customer-pin-input').focus();
  }
  if (waiting.code === 'VND_ERR_CUSTOMER_PIN_REQUIRED') clearError(form);
  else showError(form, waiting.text);
}
