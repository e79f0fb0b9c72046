/**
 * The cashier screen. Plain browser JavaScript modules, no build step:
 *
 *   state.js    what the page knows: the terminal's last state, the selected line
 *   socket.js   the link to the terminal program: states in, commands out
 *   render.js   draws the state, region by region
 *   actions.js  commands that need no dialog
 *   dialogs.js  quantity, tokens, cash, cancel, receipt, sign-in, customer-PIN and refund dialogs,
 *               and the cashier's day: shifts with a count, paid in/out, no sale, X and Z reports
 *   economy.js  customers and tokens between stores: new customer, sell tokens, exchange,
 *               the mall wallet, paying from it, another store's customer data
 *   auctions.js the store's open lots with their high bids, and the bid dialog
 *   keyboard.js function keys, line keys and the keyboard-wedge scanner
 *   format.js   amounts, times and messages as text (the one money formatter)
 *   dom.js      element building and regions redrawn only on change
 *
 * The terminal program owns everything: cart, customer, tenders, completion. This page
 * only draws the `state` the terminal pushes and sends `command`s back.
 */
import { dismiss, changeQty, complete, logout, reprint, scan, voidSelected } from './actions.js';
import { installDialogs, openCancel, openCash, openCashMove, openModal, openNoSale, openQty, openShiftDialog, openTokens, openXReport, openZReport } from './dialogs.js';
import { byTestId } from './dom.js';
import { installAuctions, openBid } from './auctions.js';
import { installEconomy, openCustomerData, openExchange, openRegister, openSellTokens, openWallet, openWalletPay } from './economy.js';
import { openSellCertificate, openVoidCertificate } from './instruments.js';
import { installKeyboard } from './keyboard.js';
import { render, renderMessage } from './render.js';
import { connect } from './socket.js';
import { setRenderer } from './state.js';

setRenderer(render, renderMessage);
installDialogs();
installEconomy();
installAuctions();

const onClick = (testid, fn) => byTestId(testid).addEventListener('click', fn);
onClick('btn-qty-dec', () => changeQty(-1));
onClick('btn-qty-inc', () => changeQty(1));
onClick('btn-qty', openQty);
onClick('btn-void-selected', voidSelected);
onClick('btn-cancel-sale', openCancel);
onClick('btn-tokens', openTokens);
onClick('btn-cash', openCash);
onClick('btn-complete', complete);
onClick('btn-reprint', reprint);
onClick('btn-refund', () => openModal('dlg-receipt'));
onClick('btn-signin', () => openModal('dlg-signin'));
onClick('btn-signout', logout);
onClick('btn-dismiss', dismiss);
onClick('btn-shift-open', openShiftDialog);
onClick('btn-shift-close', openShiftDialog);
onClick('btn-cash-move', openCashMove);
onClick('btn-no-sale', openNoSale);
onClick('btn-x-report', openXReport);
onClick('btn-z-report', openZReport);
onClick('btn-new-customer', openRegister);
onClick('btn-sell-tokens', openSellTokens);
onClick('btn-exchange', openExchange);
onClick('btn-wallet', openWallet);
onClick('btn-wallet-pay', openWalletPay);
onClick('btn-customer-data', openCustomerData);
onClick('btn-bid', () => openBid());
onClick('btn-sell-certificate', () => openSellCertificate(null));
onClick('btn-void-certificate', openVoidCertificate);

byTestId('scan-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = byTestId('scan-input');
  const code = input.value.trim();
  input.value = '';
  scan(code);
});

installKeyboard();
connect();
