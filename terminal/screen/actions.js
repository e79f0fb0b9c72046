/** What the cashier's buttons and keys do that needs no dialog: commands to the terminal. */
import { send } from './socket.js';
import { clearLocal, editable, QTY_MAX, rerender, selectedLine, ui } from './state.js';

export function complete() {
  const waiting = ui.state?.completing?.waiting?.for;
  // A sale stopped for a cashier or for pairing is sent again under its own key.
  if ((waiting === 'cashier' || waiting === 'pairing') && ui.state.cashier !== null) return void send({ type: 'complete' });
  if (!editable() || ui.state.cart.lines.length === 0) return;
  void send({ type: 'complete' });
}

export function changeQty(delta) {
  const line = selectedLine();
  if (!editable() || line === null) return;
  const qty = line.qty + delta;
  if (qty < 1 || qty > QTY_MAX) return;
  void send({ type: 'setQty', lineNo: line.lineNo, qty });
}

/** Sets one line's quantity (its row's − and + buttons) and selects it. */
export function setLineQty(lineNo, qty) {
  ui.selectedLineNo = lineNo;
  if (editable()) void send({ type: 'setQty', lineNo, qty });
}

export function voidSelected() {
  const line = selectedLine();
  if (!editable() || line === null) return;
  void send({ type: 'voidLine', lineNo: line.lineNo });
}

export function voidLine(lineNo) {
  if (editable()) void send({ type: 'voidLine', lineNo });
}

export function selectLine(lineNo) {
  ui.selectedLineNo = lineNo;
  rerender();
}

export function moveSelection(step) {
  const lines = ui.state?.cart.lines ?? [];
  if (lines.length === 0) return;
  const i = lines.findIndex((l) => l.lineNo === ui.selectedLineNo);
  const next = i < 0 ? lines.length - 1 : Math.min(lines.length - 1, Math.max(0, i + step));
  selectLine(lines[next].lineNo);
}

export function toggleTender(token) {
  if (!editable()) return;
  const tenders = ui.state.cart.tenders;
  const fromCard = (t) => t.token === token && t.source !== 'wallet';
  const next = tenders.some(fromCard) ? tenders.filter((t) => !fromCard(t)) : [...tenders, { token }];
  void send({ type: 'setTenders', tenders: next });
}

export function setTenders(tenders) {
  return send({ type: 'setTenders', tenders });
}

export function removeCustomer() {
  if (editable() && ui.state.cart.customer !== null) void send({ type: 'removeCustomer' });
}

export function setCash(minor) {
  return send({ type: 'setCash', cashTenderedMinor: minor });
}

export function reprint() {
  void send({ type: 'reprint' });
}

export function logout() {
  void send({ type: 'logout' });
}

/** Dismisses the message on show, the page's own or the terminal's. */
export function dismiss() {
  clearLocal();
  void send({ type: 'dismiss' });
}

export function scan(code) {
  if (code !== '') void send({ type: 'scan', code });
}
