import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { makeCardNumber } from '../../core/index.ts';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import type { RunningTerminal } from '../../terminal/run.ts';
import { printedText as printed, screenQueries, tillSummary, startStandInScreen, type StandInScreen } from '../helpers/browser.ts';
import { ANNA_CARD, ANNA_WALLET_PIN, PEN, startEconomyDouble, type EconomyDouble } from '../helpers/economy-store-double.ts';

const UI_WAIT_MS = 30_000;

/**
 * Tokens between stores on the cashier screen in headless chromium: a real terminal with
 * the printer simulator, against a stand-in store server. In order, as at a till: a new
 * customer registered from the keyboard, tokens sold for cash by touch, an exchange quoted
 * and confirmed from the keyboard, a first deposit into the mall wallet with a PIN chosen
 * twice and a move back with it typed on the keypad, a sale paid from the mall wallet by
 * touch with its PIN on the PIN pad, and the mall wallet out of reach said at once.
 */
describe('e2e: tokens between stores on the cashier screen (against a stand-in store server)', function () {
  this.timeout(180_000);
  let store: EconomyDouble;
  let terminal: RunningTerminal;
  let sim: PrinterSimulator;
  let screen: StandInScreen;
  let page: Page;

  const { tid, expectText, dialogOpen, dialogClosed } = screenQueries(() => page, UI_WAIT_MS, () => tillSummary(screen.terminal));
  /** The "after" cell of one token's row in a result table. */
  const afterCell = (table: string, token: string) => page.locator(`[data-testid="${table}-row"][data-token="${token}"] [data-testid="after"]`).innerText();
  const beforeCell = (table: string, token: string) => page.locator(`[data-testid="${table}-row"][data-token="${token}"] [data-testid="before"]`).innerText();

  before(async () => {
    store = await startEconomyDouble();
    screen = await startStandInScreen(store, {
      dirPrefix: 'mallpos-econ-ui-',
      terminal: { scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, drawer: { pollIdleMs: 0 } },
      timeoutMs: UI_WAIT_MS,
    });
    ({ terminal, page } = screen);
    if (terminal.printerSim === null) throw new Error('no printer simulator');
    sim = terminal.printerSim;
    await tid('btn-signin').click();
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');
  });
  after(async () => {
    await screen?.close();
    await store?.close();
  });

  it('registers a new customer from the keyboard and prints the card slip with its barcode', async () => {
    const receipts = sim.receipts().length;
    await page.keyboard.press('Shift+F2');
    await dialogOpen('dlg-register');
    await page.keyboard.type('Hana Till');
    await tid('register-consent-yes').check();
    await page.fill('[data-testid="register-email"]', 'hana@example.org');
    await tid('register-name').focus();
    await page.keyboard.press('Enter');

    await dialogOpen('dlg-economy-result');
    await expectText('economy-result-title', 'New customer');
    await expectText('economy-result-details', 'new number, printed');
    await expectText('customer-name', 'Hana Till');
    const sent = store.sent('customer:register');
    expect(sent).to.have.length(1);
    expect(sent[0]).to.deep.include({ name: 'Hana Till', consent: true, card: null, contact: { email: 'hana@example.org' } });
    const card = makeCardNumber(501);
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    expect(all.at(-1)?.barcodes.map((b) => b.data)).to.deep.equal([card]);
    // The screen shows the new number masked, as every card number.
    expect(await page.locator('body').innerText()).to.not.include(card);
    await page.keyboard.press('Escape');
    await dialogClosed('dlg-economy-result');
  });

  it('sells tokens for cash by touch, showing the balance before and after and the change', async () => {
    const receipts = sim.receipts().length;
    await tid('btn-sell-tokens').click();
    await dialogOpen('dlg-sell-tokens');
    await page.selectOption('[data-testid="sell-token"]', 'ACME');
    await page.fill('[data-testid="sell-units"]', '12');
    await tid('sell-method-cash').check();
    await page.fill('[data-testid="sell-tendered"]', '20');
    await tid('btn-sell-ok').click();

    await dialogOpen('dlg-economy-result');
    await expectText('economy-result-title', 'Tokens sold');
    await expectText('economy-result-details', '€8.00');
    expect(await beforeCell('economy-card', 'ACME')).to.equal('0');
    expect(await afterCell('economy-card', 'ACME')).to.equal('12');
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    expect(printed(all.at(-1))).to.include('TOKENS BOUGHT').and.include('€12.00').and.include('Change').and.include('€8.00');
    await tid('btn-economy-result-close').click();
    await dialogClosed('dlg-economy-result');
    await expectText('customer', '12');
  });

  it('exchanges from the keyboard: Enter asks for the quote, shows the charge and remainder, Enter again confirms', async () => {
    await page.keyboard.press('Shift+F5');
    await dialogOpen('dlg-exchange');
    await page.selectOption('[data-testid="exchange-from"]', 'ACME');
    await page.selectOption('[data-testid="exchange-to"]', 'BETA');
    await tid('exchange-units').focus();
    await page.keyboard.type('10');
    await page.keyboard.press('Enter');
    await expectText('quote-receives', '3 BETA');
    await expectText('quote-charge', '€0.20');
    await expectText('quote-remainder', '€0.80');
    await expectText('btn-exchange-ok', 'Confirm exchange');
    expect(store.applied('exchange:commit')).to.equal(0);

    await page.keyboard.press('Enter');
    await dialogOpen('dlg-economy-result');
    await expectText('economy-result-title', 'Tokens exchanged');
    expect(await beforeCell('economy-card', 'ACME')).to.equal('12');
    expect(await afterCell('economy-card', 'ACME')).to.equal('2');
    expect(await afterCell('economy-card', 'BETA')).to.equal('3');
    expect(store.applied('exchange:commit')).to.equal(1);
    await page.keyboard.press('Escape');
    await dialogClosed('dlg-economy-result');
  });

  /** Types a PIN on a dialog's keypad, by touch. */
  const tapPin = async (dialog: string, pin: string) => {
    for (const d of pin) await page.locator(`[data-testid="${dialog}"] .keypad:visible [data-key="${d}"]`).click();
  };

  it('puts tokens into a wallet without a PIN only with a PIN chosen and typed twice, then takes them back with it typed on the keypad', async () => {
    const card = makeCardNumber(501);
    await tid('btn-wallet').click();
    await dialogOpen('dlg-wallet');
    await tid('wallet-to').check();
    await page.selectOption('[data-testid="wallet-token"]', 'ACME');
    await page.fill('[data-testid="wallet-units"]', '2');
    await tid('btn-wallet-move-ok').click();
    await expectText('message', 'has no PIN yet');
    expect(store.wallet(card)['ACME'] ?? 0).to.equal(0);
    // Two different PINs are refused on the page; nothing is sent.
    const moves = store.sent('wallet:move').length;
    await page.fill('[data-testid="wallet-new-pin"]', '975318642097');
    await page.fill('[data-testid="wallet-new-pin-again"]', '975318642098');
    await tid('btn-wallet-move-ok').click();
    await page.locator('[data-testid="dlg-wallet"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
    expect(await page.locator('[data-testid="dlg-wallet"] [data-role="error"]').innerText()).to.include('differ');
    expect(store.sent('wallet:move').length).to.equal(moves);
    expect(await page.getAttribute('[data-testid="wallet-new-pin"]', 'type')).to.equal('password');
    await page.fill('[data-testid="wallet-new-pin"]', '');
    await tid('wallet-new-pin').focus();
    await tapPin('dlg-wallet', '975318642097');
    await page.fill('[data-testid="wallet-new-pin-again"]', '975318642097');
    // The printer is busy: the move is answered only once its slip has printed, after the
    // cashier has closed the result and opened the wallet dialog again.
    const receipts = sim.receipts().length;
    const release = sim.holdStatus();
    await tid('btn-wallet-move-ok').click();
    await dialogOpen('dlg-economy-result');
    await expectText('economy-result-title', 'Moved to the mall wallet');
    expect(store.walletPin(card)).to.equal('975318642097');
    expect(store.wallet(card)['ACME']).to.equal(2);
    await page.keyboard.press('Escape');
    await dialogClosed('dlg-economy-result');

    await tid('btn-wallet').click();
    await dialogOpen('dlg-wallet');
    release();
    await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    await page.locator('body[data-commands="0"]').waitFor({ timeout: UI_WAIT_MS });
    // The answer to the earlier move does not close the dialog opened since.
    expect(await tid('dlg-wallet').getAttribute('open')).to.not.equal(null);
    await tid('wallet-from').check();
    await page.selectOption('[data-testid="wallet-token"]', 'ACME');
    await page.fill('[data-testid="wallet-units"]', '1');
    await tid('wallet-pin').click();
    await tapPin('dlg-wallet', '975318642097');
    await tid('btn-wallet-move-ok').click();
    await dialogOpen('dlg-economy-result');
    await expectText('economy-result-title', 'Moved from the mall wallet');
    expect(store.sent('wallet:move').at(-1)?.['walletPin']).to.equal('975318642097');
    expect(store.wallet(card)['ACME']).to.equal(1);
    expect(await page.locator('body').innerText()).to.not.include('975318642097');
    await page.keyboard.press('Escape');
    await dialogClosed('dlg-economy-result');
  });

  it('pays a sale with mall wallet tokens by touch: the tender shows, the cart is priced with it, the sale takes it', async () => {
    await page.fill('[data-testid="scan-input"]', ANNA_CARD);
    await page.keyboard.press('Enter');
    await expectText('customer-name', 'Anna');
    await page.fill('[data-testid="scan-input"]', PEN);
    await page.keyboard.press('Enter');
    await expectText('total-money', '€3.00');
    await tid('btn-wallet-pay').click();
    await dialogOpen('dlg-wallet-pay');
    await page.selectOption('[data-testid="wallet-pay-token"]', 'MALL');
    await page.fill('[data-testid="wallet-pay-units"]', '2');
    await tid('btn-wallet-pay-ok').click();
    await dialogClosed('dlg-wallet-pay');
    await expectText('tenders', '2 MALL from the wallet');
    await expectText('cash-due', '€0.00');
    const wallet = store.wallet(ANNA_CARD)['MALL'] ?? 0;
    await tid('btn-complete').click();
    // The mall wants the customer's wallet PIN: the PIN pad opens for it; a wrong PIN is said there.
    await dialogOpen('dlg-customer-pin');
    await expectText('dlg-customer-pin-title', 'Wallet PIN');
    await tapPin('dlg-customer-pin', '731904826155');
    await tid('btn-customer-pin-ok').click();
    await page.locator('[data-testid="dlg-customer-pin"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
    expect(await page.locator('[data-testid="dlg-customer-pin"] [data-role="error"]').innerText()).to.include('Wrong wallet PIN');
    await tapPin('dlg-customer-pin', ANNA_WALLET_PIN);
    await tid('btn-customer-pin-ok').click();
    await expectText('message', /Sale S\d{10} complete/);
    await dialogClosed('dlg-customer-pin');
    expect(store.sent('sale:commit').at(-1)?.['tenders']).to.deep.equal([{ token: 'MALL', units: 2, source: 'wallet' }]);
    expect(store.sent('sale:commit').at(-1)?.['walletPin']).to.equal(ANNA_WALLET_PIN);
    expect(store.wallet(ANNA_CARD)['MALL']).to.equal(wallet - 2);
  });

  it('says at once that the mall wallet cannot be reached, and keeps the wallet dialog open', async () => {
    await page.fill('[data-testid="scan-input"]', ANNA_CARD);
    await page.keyboard.press('Enter');
    await expectText('customer-name', 'Anna');
    store.setMallReachable(false);
    try {
      await tid('btn-wallet').click();
      await dialogOpen('dlg-wallet');
      await tid('btn-wallet-balance').click();
      await page.locator('[data-testid="dlg-wallet"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
      await expectText('message', 'The mall wallet cannot be reached now');
      expect(await page.locator('[data-testid="dlg-wallet"] [data-role="error"]').innerText()).to.include('mall wallet cannot be reached');
      await page.keyboard.press('Escape');
      await dialogClosed('dlg-wallet');
    } finally {
      store.setMallReachable(true);
    }
  });
});
