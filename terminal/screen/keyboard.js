/**
 * The keyboard: function keys for every action, line keys, and a keyboard-wedge scanner.
 *
 * A keyboard-wedge scanner "types" a code and Enter. A character typed while no field
 * has focus moves the focus into the scan field and lands there, so the rest of the burst
 * and its Enter arrive in the scan form, which sends the code as a scan, whatever the
 * typing speed. So a focused button is never pressed by the scanner's Enter either.
 * Space is left alone: it presses the focused button.
 */
import { changeQty, complete, dismiss, moveSelection, removeCustomer, reprint, voidSelected } from './actions.js';
import { openCancel, openCash, openCashMove, openDialog, openModal, openNoSale, openQty, openShiftDialog, openTokens, openXReport, openZReport } from './dialogs.js';
import { byTestId, isEditable } from './dom.js';
import { openBid } from './auctions.js';
import { openCustomerData, openExchange, openRegister, openSellTokens, openWallet, openWalletPay } from './economy.js';
import { showLocal, ui } from './state.js';

/** As long as a gift certificate's signed form, which a keyboard-wedge scanner types from its QR code. */
const SCAN_CODE_LENGTH_MAX = 1024;

function isCodeCharacter(e) {
  return e.key.length === 1 && e.key !== ' ' && e.key !== '+' && e.key !== '-' && !e.ctrlKey && !e.altKey && !e.metaKey;
}

function onKeyDown(e) {
  if (ui.state === null) return;
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
  // Customers and tokens between stores: the shifted function keys.
  if (plain && e.shiftKey && e.key === 'F2') return handled(), openRegister();
  if (plain && e.shiftKey && e.key === 'F3') return handled(), openSellTokens();
  if (plain && e.shiftKey && e.key === 'F5') return handled(), openExchange();
  if (plain && e.shiftKey && e.key === 'F6') return handled(), openWallet();
  if (plain && e.shiftKey && e.key === 'F8') return handled(), openWalletPay();
  if (plain && e.shiftKey && e.key === 'F9') return handled(), openCustomerData();
  if (plain && !e.shiftKey && e.key === 'F1') return handled(), openBid();
  if (plain && e.key === 'F2' && !e.shiftKey) return handled(), openQty();
  if (plain && e.key === 'F4' && !e.shiftKey) return handled(), openTokens();
  if (plain && e.key === 'F4' && e.shiftKey) return handled(), removeCustomer();
  if (plain && e.key === 'F8') return handled(), openCash();
  if (plain && e.key === 'F9') return handled(), complete();
  if (plain && e.key === 'F10' && !e.shiftKey) return handled(), reprint();
  if (plain && e.key === 'F10' && e.shiftKey) return handled(), openModal('dlg-receipt');
  if (plain && e.key === 'Delete' && e.shiftKey) return handled(), openCancel();
  if (plain && e.key === 'F3') return handled(), openShiftDialog();
  if (plain && e.key === 'F5') return handled(), openCashMove();
  if (plain && e.key === 'F6') return handled(), openNoSale();
  if (plain && e.key === 'F7' && !e.shiftKey) return handled(), openXReport();
  if (plain && e.key === 'F7' && e.shiftKey) return handled(), openZReport();
  if (plain && e.key === 'Escape' && (ui.localMessage !== null || ui.state.message !== null)) return handled(), dismiss();

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
}

/** Listens in the capture phase, before a focused control sees the key. */
export function installKeyboard() {
  document.addEventListener('keydown', onKeyDown, true);
}
