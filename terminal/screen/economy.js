/**
 * Customers and tokens between stores: a new customer, selling tokens, an exchange (quote,
 * then confirm), the mall wallet (its balance, moves to and from it), paying from the
 * wallet, and another store's customer data. Each action's result opens a dialog with the
 * customer's balances before and after, as the terminal pushed them; the page computes no
 * amount. Offline refusals ("the store server is unreachable", "the mall wallet cannot be
 * reached") show in the dialog and in the message bar at once.
 */
import { clearError, closeDialogs, openModal, registerSubmitters, sendFromDialog, showError } from './dialogs.js';
import { $, byTestId, h, region } from './dom.js';
import { formatMinor, parseMoney } from './format.js';
import { send } from './socket.js';
import { currency, editable, showLocal, ui } from './state.js';

/** A wallet PIN as the mall takes it. */
const PIN = /^\d{4,12}$/;

/** Shows the PIN fields a dialog needs now: the wallet PIN to take from the wallet, a new one to put into it. */
function showPinFields(dlg) {
  const form = $('form', dlg);
  const source = form.elements.source?.value;
  const direction = form.elements.direction?.value;
  const wallet = $('[data-role="pin-wallet"]', dlg);
  if (wallet !== null) wallet.hidden = source !== 'wallet';
  const from = $('[data-role="pin-from"]', dlg);
  if (from !== null) from.hidden = direction !== 'from-wallet';
  const fresh = $('[data-role="pin-new"]', dlg);
  if (fresh !== null) fresh.hidden = direction !== 'to-wallet';
}

/** A keypad for touch: its keys type into the PIN field last focused (or the first one shown). */
function installPinKeypad(dlg) {
  let target = null;
  for (const input of dlg.querySelectorAll('input[data-role="pin"]')) input.addEventListener('focus', () => (target = input));
  const shown = () => [...dlg.querySelectorAll('input[data-role="pin"]')].find((i) => i.offsetParent !== null) ?? null;
  for (const keypad of dlg.querySelectorAll('[data-role="pin-keypad"]')) {
    for (const key of keypad.querySelectorAll('[data-key]')) {
      key.addEventListener('click', () => {
        const input = target !== null && target.offsetParent !== null ? target : shown();
        if (input === null) return;
        const k = key.dataset.key;
        if (k === 'clear') input.value = '';
        else if (k === 'back') input.value = input.value.slice(0, -1);
        else if (input.value.length < 12) input.value += k;
        input.focus();
      });
    }
  }
}

/** Token types the page can offer: the store's, then any the customer holds that the store did not name. */
function tokenChoices() {
  const names = ui.state?.tokenNames ?? {};
  const out = Object.keys(names).map((token) => ({ token, name: names[token] }));
  for (const b of ui.state?.cart.customer?.balances ?? []) if (!out.some((t) => t.token === b.token)) out.push({ token: b.token, name: b.name });
  return out;
}

function fillTokenSelects(dlg) {
  const choices = tokenChoices();
  const held = new Map((ui.state?.cart.customer?.balances ?? []).map((b) => [b.token, b.units]));
  for (const select of dlg.querySelectorAll('select[data-role="token-select"]')) {
    select.replaceChildren(...choices.map((t) => h('option', { value: t.token }, held.has(t.token) ? `${t.token} · ${held.get(t.token)} held` : `${t.token} · ${t.name}`)));
  }
}

function fillCustomer(dlg) {
  const c = ui.state?.cart.customer;
  const p = $('[data-role="customer"]', dlg);
  if (p !== null) p.textContent = c === null || c === undefined ? '' : `${c.name} · card ${c.card}`;
}

function needCustomer(what) {
  if (ui.state?.cart.customer) return true;
  showLocal('error', `scan the customer card first: ${what} needs the customer`);
  return false;
}

function openEconomy(testid, prepare) {
  if (!editable()) return;
  openModal(testid, (dlg) => {
    fillTokenSelects(dlg);
    fillCustomer(dlg);
    prepare?.(dlg);
  });
}

export function openRegister() {
  openEconomy('dlg-register');
}

export function openSellTokens() {
  if (editable() && needCustomer('selling tokens')) openEconomy('dlg-sell-tokens', showPaymentFields);
}

export function openExchange() {
  if (editable() && needCustomer('an exchange')) {
    if (ui.state.economy.quote !== null) void send({ type: 'exchangeCancel' });
    openEconomy('dlg-exchange', () => {
      const c = ui.state.cart.customer;
      // The first token the customer holds is the likeliest to give; another store's the likeliest to get.
      const from = c.balances.find((b) => b.units > 0)?.token;
      if (from !== undefined) byTestId('exchange-from').value = from;
      const to = tokenChoices().find((t) => t.token !== from);
      if (to !== undefined) byTestId('exchange-to').value = to.token;
      showPinFields(byTestId('dlg-exchange'));
      showQuote(null);
    });
  }
}

export function openWallet() {
  if (editable() && needCustomer('the mall wallet')) openEconomy('dlg-wallet', showPinFields);
}

export function openWalletPay() {
  if (!editable()) return;
  if (ui.state.cart.lines.length === 0) return showLocal('error', 'scan an item first: wallet tokens pay for a sale');
  if (needCustomer('paying from the wallet')) {
    openEconomy('dlg-wallet-pay', () => {
      const current = ui.state.cart.tenders.find((t) => t.source === 'wallet');
      if (current !== undefined) {
        byTestId('wallet-pay-token').value = current.token;
        byTestId('wallet-pay-units').value = String(current.units);
      }
    });
  }
}

export function openCustomerData() {
  openEconomy('dlg-customer-data');
}

function showPaymentFields() {
  const dlg = byTestId('dlg-sell-tokens');
  const card = $('input[name="method"]:checked', dlg)?.value === 'card';
  $('[data-role="cash-field"]', dlg).hidden = card;
  $('[data-role="card-field"]', dlg).hidden = !card;
}

function whole(raw) {
  const n = Number(String(raw).trim());
  return Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** The exchange the form asks for, or an error in words. */
function exchangeAsked(form) {
  const units = whole(form.elements.units.value);
  if (units === null) return { error: 'units are a whole number, at least 1' };
  const fromToken = form.elements.fromToken.value;
  const toToken = form.elements.toToken.value;
  if (fromToken === toToken) return { error: 'choose two different token types' };
  return { cmd: { fromToken, units, source: form.elements.source.value, toToken } };
}

function quoteMatches(q, asked) {
  return q !== null && q.fromToken === asked.fromToken && q.units === asked.units && q.source === asked.source && q.toToken === asked.toToken;
}

/** The quote in the exchange dialog, and the button that confirms it. */
function showQuote(q) {
  const list = byTestId('exchange-quote');
  const ok = byTestId('btn-exchange-ok');
  list.hidden = q === null;
  region(list, JSON.stringify(q), () =>
    q === null
      ? []
      : [
          ['Given', q.given, 'quote-given'],
          ['Service charge', q.charge, 'quote-charge'],
          ['Received', q.receives, 'quote-receives'],
          ['Remainder', q.remainder, 'quote-remainder'],
          ...(q.offline ? [['Note', 'the mall is unreachable: made offline within the store\'s limits', 'quote-offline']] : []),
        ].flatMap(([label, value, testid]) => [h('dt', {}, label), h('dd', { testid }, value)]),
  );
  ok.firstChild.textContent = q === null ? 'Get quote ' : 'Confirm exchange ';
  ok.dataset.confirm = String(q !== null);
}

registerSubmitters({
  async register(form) {
    const name = form.elements.name.value.trim();
    if (name === '') return showError(form, 'type the customer\'s name'), false;
    const card = form.elements.card.value.trim();
    return sendFromDialog(form, {
      type: 'registerCustomer',
      name,
      consent: form.elements.consent.value === 'yes',
      card: card === '' ? null : card.toUpperCase(),
      email: form.elements.email.value.trim(),
      phone: form.elements.phone.value.trim(),
    });
  },
  async sellTokens(form) {
    const units = whole(form.elements.units.value);
    if (units === null) return showError(form, 'units are a whole number, at least 1'), false;
    const token = form.elements.token.value;
    if (form.elements.method.value === 'card') {
      const approvalRef = form.elements.approvalRef.value.trim();
      if (approvalRef === '') return showError(form, 'type the approval reference the card terminal printed'), false;
      return sendFromDialog(form, { type: 'sellTokens', token, units, payment: { method: 'card', approvalRef } });
    }
    const tenderedMinor = parseMoney(form.elements.tendered.value, currency());
    if (tenderedMinor === null) return showError(form, `type the cash received, e.g. ${formatMinor(2000, currency())}`), false;
    return sendFromDialog(form, { type: 'sellTokens', token, units, payment: { method: 'cash', tenderedMinor } });
  },
  async exchange(form) {
    const asked = exchangeAsked(form);
    if (asked.error !== undefined) return showError(form, asked.error), false;
    // Enter confirms the quote on show when the form still asks for it; anything else asks for a quote.
    if (quoteMatches(ui.state.economy.quote, asked.cmd)) {
      if (asked.cmd.source !== 'wallet') return sendFromDialog(form, { type: 'exchangeConfirm' });
      const pin = form.elements.pin.value;
      if (!PIN.test(pin)) return showError(form, "the customer's wallet PIN is 4 to 12 digits: the customer types it"), false;
      // The PIN leaves the page once, for this request; the field is emptied at once.
      form.elements.pin.value = '';
      return sendFromDialog(form, { type: 'exchangeConfirm', pin });
    }
    await sendFromDialog(form, { type: 'exchangeQuote', ...asked.cmd });
    return false;
  },
  async walletMove(form) {
    const units = whole(form.elements.units.value);
    if (units === null) return showError(form, 'units are a whole number, at least 1'), false;
    const direction = form.elements.direction.value;
    const cmd = { type: 'walletMove', direction, token: form.elements.token.value, units };
    if (direction === 'from-wallet') {
      const pin = form.elements.pin.value;
      if (!PIN.test(pin)) return showError(form, "the customer's wallet PIN is 4 to 12 digits: the customer types it"), false;
      cmd.pin = pin;
    } else if (form.elements.newPin.value !== '' || form.elements.newPinAgain.value !== '') {
      const newPin = form.elements.newPin.value;
      if (!PIN.test(newPin)) return showError(form, 'a new wallet PIN is 4 to 12 digits'), false;
      if (newPin !== form.elements.newPinAgain.value) return showError(form, 'the two new PINs differ: the customer types the same PIN twice'), false;
      cmd.newPin = newPin;
    }
    // The PINs leave the page once, for this request; the fields are emptied at once.
    for (const name of ['pin', 'newPin', 'newPinAgain']) form.elements[name].value = '';
    return sendFromDialog(form, cmd);
  },
  async walletPay(form) {
    const units = whole(form.elements.units.value);
    if (units === null) return showError(form, 'units are a whole number, at least 1'), false;
    const token = form.elements.token.value;
    const others = ui.state.cart.tenders.filter((t) => t.source !== 'wallet');
    return sendFromDialog(form, { type: 'setTenders', tenders: [...others, { token, units, source: 'wallet' }] });
  },
  async customerData(form) {
    const card = form.elements.card.value.trim().toUpperCase();
    if (!/^C\d{10}$/.test(card)) return showError(form, 'a card number is C followed by 10 digits, as printed under its barcode'), false;
    return sendFromDialog(form, { type: 'customerData', card });
  },
});

/** Draws what the terminal says about tokens between stores: the quote on show, the last result. */
export function renderEconomy(s) {
  const exchange = byTestId('dlg-exchange');
  if (exchange.open) {
    const form = $('form', exchange);
    const asked = exchangeAsked(form);
    showQuote(asked.cmd !== undefined && quoteMatches(s.economy.quote, asked.cmd) ? s.economy.quote : null);
  }
  showResult(s.economy.result);
}

function changesTable(title, rows, testid) {
  if (rows === null || rows.length === 0) return null;
  return h(
    'table',
    { class: 'changes', testid },
    h('caption', {}, title),
    h('thead', {}, h('tr', {}, h('th', {}, 'Token'), h('th', {}, 'Before'), h('th', {}, 'After'))),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          { testid: `${testid}-row`, data: { token: r.token } },
          h('td', { title: r.name }, r.token),
          h('td', { testid: 'before' }, r.before === null ? '-' : String(r.before)),
          h('td', { testid: 'after', class: r.before !== r.after ? 'changed' : '' }, String(r.after)),
        ),
      ),
    ),
  );
}

/** The last action's result: opens with the terminal's state and stays until Done. */
function showResult(result) {
  const dlg = byTestId('dlg-economy-result');
  if (result === null) {
    if (dlg.open) dlg.close();
    return;
  }
  byTestId('economy-result-title').textContent = result.title;
  dlg.dataset.kind = result.kind;
  region(byTestId('economy-result'), JSON.stringify(result), () => [
    result.customer === null ? null : h('p', { class: 'what', testid: 'economy-result-customer' }, `${result.customer.name} · card ${result.customer.card}`),
    h('dl', { class: 'shift-result', testid: 'economy-result-details' }, result.details.flatMap((d) => [h('dt', {}, d.label), h('dd', {}, d.value)])),
    changesTable('On the card at this store', result.card, 'economy-card'),
    changesTable('In the mall wallet', result.wallet, 'economy-wallet'),
  ]);
  if (!dlg.open) {
    closeDialogs();
    dlg.showModal();
    byTestId('btn-economy-result-close').focus();
  }
}

/** Wires the economy's dialogs once, at page load. */
export function installEconomy() {
  const result = byTestId('dlg-economy-result');
  result.addEventListener('cancel', (e) => {
    e.preventDefault();
    void send({ type: 'closeEconomy' });
  });
  byTestId('btn-economy-result-close').addEventListener('click', () => void send({ type: 'closeEconomy' }));
  for (const radio of byTestId('dlg-sell-tokens').querySelectorAll('input[name="method"]')) radio.addEventListener('change', showPaymentFields);
  const exchange = byTestId('dlg-exchange');
  // A changed field makes the quote on show stale: the button asks for a new one.
  exchange.addEventListener('input', () => {
    clearError($('form', exchange));
    if (ui.state !== null) renderEconomy(ui.state);
  });
  exchange.addEventListener('close', () => {
    if (ui.state?.economy.quote !== null && ui.state?.economy.result === null) void send({ type: 'exchangeCancel' });
  });
  const wallet = byTestId('dlg-wallet');
  for (const dlg of [exchange, wallet]) {
    dlg.addEventListener('change', () => showPinFields(dlg));
    installPinKeypad(dlg);
  }
  byTestId('btn-wallet-balance').addEventListener('click', async () => {
    const form = $('form', byTestId('dlg-wallet'));
    clearError(form);
    await sendFromDialog(form, { type: 'walletBalance' });
  });
  byTestId('btn-wallet-pay-none').addEventListener('click', async () => {
    closeDialogs();
    await send({ type: 'setTenders', tenders: ui.state.cart.tenders.filter((t) => t.source !== 'wallet') });
  });
}
