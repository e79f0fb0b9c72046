/**
 * Gift certificates and coupons on the cashier screen: the one last scanned (checked by
 * the store, with what remains on it, where that figure comes from, and the offline limit
 * when the mall cannot be reached), and those paying the sale, each of which can be taken
 * off again. The terminal keeps the signed forms; the page only sees codes and amounts.
 */
import { openModal, registerSubmitters, sendFromDialog, showError } from './dialogs.js';
import { byTestId, h, region } from './dom.js';
import { formatMinor, parseMoney } from './format.js';
import { send } from './socket.js';
import { currency, editable, ui } from './state.js';

export function renderInstruments(s) {
  const box = byTestId('instruments');
  const shown = s.instruments?.shown ?? null;
  const inCart = s.cart.instruments ?? [];
  box.hidden = shown === null && inCart.length === 0;
  const canEdit = editable();
  const sig = JSON.stringify([shown, inCart, canEdit, s.cart.lines.length]);
  region(box, sig, () => {
    const out = [h('h2', {}, 'Gift certificates and coupons')];
    if (shown !== null) {
      const usable = shown.remainingUnits > 0 && shown.state !== 'spent' && shown.state !== 'voided';
      out.push(
        h('div', { class: 'instrument', testid: 'instrument-view', data: { code: shown.code, state: shown.state } },
          h('div', { class: 'row strong' }, h('span', { class: 'k', testid: 'instrument-title' }, shown.title), h('span', { class: 'v', testid: 'instrument-code' }, shown.code)),
          h('div', { class: 'row' }, h('span', { class: 'k' }, 'Remaining'), h('span', { class: 'v num', testid: 'instrument-remaining' }, shown.remaining)),
          h('div', { class: 'row' }, h('span', { class: 'k' }, 'Worth when issued'), h('span', { class: 'v num', testid: 'instrument-face' }, shown.face)),
          h('div', { class: 'row' }, h('span', { class: 'k' }, 'Valid until'), h('span', { class: 'v', testid: 'instrument-expires' }, shown.expires)),
          h('p', { class: 'sub', testid: 'instrument-source' }, `Remaining ${shown.source}.`),
          shown.offlineLimit === null ? null : h('p', { class: 'sub warn', testid: 'instrument-offline' }, shown.offlineLimit),
          h('div', { class: 'buttons' },
            !shown.inCart && usable && s.cart.lines.length > 0
              ? h('button', { type: 'button', class: 'small edit primary', testid: 'btn-instrument-pay', disabled: !canEdit, onclick: () => void send({ type: 'instrumentPay', code: shown.code }) }, 'Pay with it')
              : null,
            shown.state === 'unsold' ? h('button', { type: 'button', class: 'small edit', testid: 'btn-instrument-sell', disabled: !canEdit, onclick: () => openSellCertificate(shown) }, 'Sell it') : null,
            h('button', { type: 'button', class: 'small', testid: 'btn-instrument-close', onclick: () => void send({ type: 'instrumentClose' }) }, 'Close'),
          ),
        ),
      );
    }
    if (inCart.length > 0) {
      out.push(
        h('ul', { class: 'instrument-tenders', testid: 'cart-instruments' },
          inCart.map((i) =>
            h('li', { testid: 'cart-instrument', data: { code: i.code } },
              h('span', {}, `${i.kind === 'gift' ? 'Gift certificate' : 'Coupon'} ${i.code} pays this sale`),
              ' ',
              h('button', { type: 'button', class: 'small edit', testid: 'btn-instrument-remove', data: { code: i.code }, disabled: !canEdit, onclick: () => void send({ type: 'instrumentRemove', code: i.code }) }, 'Take off'),
            ),
          ),
        ),
      );
    }
    return out;
  });
}

/**
 * Opens the dialog that sells a gift certificate: a new one of the store's own tokens, or
 * (`stock`, the certificate shown) one from the mall's stock, whose value is its own.
 */
export function openSellCertificate(stock) {
  if (!editable()) return;
  const fromStock = stock !== undefined && stock !== null && typeof stock === 'object' && typeof stock.code === 'string';
  openModal('dlg-sell-certificate', (dlg) => {
    const names = ui.state?.tokenNames ?? {};
    const select = dlg.querySelector('select[name="token"]');
    select.replaceChildren(...Object.keys(names).map((token) => h('option', { value: token }, `${token} · ${names[token]}`)));
    dlg.querySelector('[data-role="new-certificate"]').hidden = fromStock;
    dlg.querySelector('input[name="units"]').required = !fromStock;
    const stockLine = dlg.querySelector('[data-role="stock"]');
    stockLine.hidden = !fromStock;
    stockLine.textContent = fromStock ? `${stock.code}: ${stock.face}` : '';
    dlg.querySelector('input[name="code"]').value = fromStock ? stock.code : '';
  });
}

export function openVoidCertificate() {
  if (editable()) openModal('dlg-void-certificate');
}

registerSubmitters({
  async sellCertificate(form) {
    const code = form.elements.code.value;
    const units = Number(String(form.elements.units.value).trim());
    if (code === '' && (!Number.isSafeInteger(units) || units < 1)) return showError(form, 'units are a whole number, at least 1'), false;
    const what = code === '' ? { token: form.elements.token.value, units } : { code };
    if (form.elements.method.value === 'card') {
      const approvalRef = form.elements.approvalRef.value.trim();
      if (approvalRef === '') return showError(form, 'type the approval reference the card terminal printed'), false;
      return sendFromDialog(form, { type: 'sellCertificate', ...what, payment: { method: 'card', approvalRef } });
    }
    const tenderedMinor = parseMoney(form.elements.tendered.value, currency());
    if (tenderedMinor === null) return showError(form, `type the cash received, e.g. ${formatMinor(2000, currency())}`), false;
    return sendFromDialog(form, { type: 'sellCertificate', ...what, payment: { method: 'cash', tenderedMinor } });
  },
  async voidCertificate(form) {
    const code = form.elements.code.value.trim();
    const reason = form.elements.reason.value.trim();
    const staffId = form.elements.staffId.value.trim();
    const pin = form.elements.pin.value;
    if (code === '' || reason === '' || staffId === '') return showError(form, 'type the certificate code, the reason and the supervisor'), false;
    if (!/^\d{4,12}$/.test(pin)) return showError(form, 'a PIN is 4 to 12 digits'), false;
    // The PIN leaves the page once, for this request; the field is emptied at once.
    form.elements.pin.value = '';
    return sendFromDialog(form, { type: 'instrumentVoid', code, reason, staffId, pin });
  },
});
