/**
 * Auctions at the till: the store's open lots with their high bids (the terminal keeps
 * them current from the store's pushes), and the bid dialog for the customer whose card
 * is scanned. Keyboard: F1 opens the dialog, Enter bids, Esc closes; touch: each lot has
 * its own Bid button. The page computes no amount: the least bid comes from the store.
 */
import { openModal, registerSubmitters, sendFromDialog, showError } from './dialogs.js';
import { $, byTestId, h, region } from './dom.js';
import { formatUnits as units, localTime } from './format.js';
import { editable, showLocal, ui } from './state.js';

const PIN = /^\d{4,12}$/;

function openLots() {
  return (ui.state?.auctions.lots ?? []).filter((l) => l.status === 'open');
}

function timeLeft(lot) {
  const s = Math.max(0, Math.round((Date.parse(lot.closesAt) - Date.now()) / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

/** Opens the bid dialog, on `lotId` when given (a lot's own button), else on the lot closing soonest. */
export function openBid(lotId) {
  if (!editable()) return;
  const lots = openLots();
  if (lots.length === 0) return showLocal('error', 'there is no open lot to bid on');
  if (!ui.state.cart.customer) return showLocal('error', 'scan the customer card first: a bid is the customer\'s');
  openModal('dlg-bid', (dlg) => {
    const select = byTestId('bid-lot');
    select.replaceChildren(...lots.map((l) => h('option', { value: l.lotId }, `${l.title} · ${l.high === null ? 'no bids' : units(l.high.units, l.token)}`)));
    if (lotId !== undefined) select.value = lotId;
    fillBid(dlg);
  });
}

/** The lot chosen, its high bid and the least bid it takes now. */
function fillBid(dlg) {
  const lot = openLots().find((l) => l.lotId === byTestId('bid-lot').value);
  const c = ui.state.cart.customer;
  $('[data-role="customer"]', dlg).textContent = c ? `${c.name} · card ${c.card}` : '';
  $('[data-role="lot"]', dlg).textContent = lot === undefined ? '' : `High bid ${lot.high === null ? 'none yet' : units(lot.high.units, lot.token)} · at least ${units(lot.minBidUnits, lot.token)} · closes ${localTime(lot.closesAt)}`;
  const input = byTestId('bid-units');
  if (lot !== undefined && (input.value === '' || Number(input.value) < lot.minBidUnits)) input.value = String(lot.minBidUnits);
}

/** The lots panel beside the cart: each open lot, its high bid, time left, and a Bid button. */
export function renderAuctions(s) {
  const root = byTestId('lots');
  const lots = s.auctions.lots.filter((l) => l.status === 'open').slice(0, 6);
  root.hidden = lots.length === 0;
  // Redrawn when a lot changes and every few seconds for the time left.
  const sig = JSON.stringify([lots.map((l) => [l.lotId, l.bids, l.closesAt]), Math.floor(Date.now() / 5000)]);
  region(root, sig, () => [
    h('h2', {}, 'Auctions'),
    ...lots.map((l) =>
      h('div', { class: 'lot', testid: 'lot-row', data: { lot: l.lotId, bids: String(l.bids), mall: l.mall === true ? 'yes' : 'no' } },
        // The mall's lots are marked: their bids are held in the customer's mall wallet and need its PIN.
        h('span', { class: 'lot-title' }, l.mall === true ? `Mall · ${l.title}` : l.title),
        h('strong', { testid: 'lot-high' }, l.high === null ? 'no bids' : units(l.high.units, l.token)),
        h('span', { class: 'lot-left' }, timeLeft(l)),
        h('button', { type: 'button', class: 'small edit', testid: 'btn-lot-bid', data: { lot: l.lotId }, onclick: () => openBid(l.lotId) }, 'Bid'),
      ),
    ),
  ]);
}

/** Wires the bid dialog once, at page load. */
export function installAuctions() {
  const dlg = byTestId('dlg-bid');
  byTestId('bid-lot').addEventListener('change', () => fillBid(dlg));
  registerSubmitters({
    async bid(form) {
      const n = Number(form.elements.units.value);
      if (!Number.isSafeInteger(n) || n < 1) return showError(form, 'a bid is a whole number of tokens, at least 1'), false;
      const pin = form.elements.pin.value;
      if (pin !== '' && !PIN.test(pin)) return showError(form, "the customer's PIN is 4 to 12 digits: the customer types it"), false;
      // The PIN leaves the page once, for this bid; the field is emptied at once.
      form.elements.pin.value = '';
      return sendFromDialog(form, { type: 'bid', lotId: form.elements.lotId.value, units: n, ...(pin === '' ? {} : { pin }) });
    },
  });
}
