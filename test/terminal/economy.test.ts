import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { bytesUnder as readdirBytes } from '../helpers/file-bytes.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCardNumber } from '../../core/index.ts';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { waitFor } from '../helpers/browser.ts';
import { ANNA_CARD, ANNA_WALLET_PIN, NO_CONSENT_CARD, OTHER_STORE_CARD, PEN, SERVICE_BPS, startEconomyDouble, type EconomyDouble } from '../helpers/economy-store-double.ts';

const WAIT_MS = 30_000;
const KEY = /^T-DOUBLE:[0-9a-f-]{36}$/;

/**
 * Tokens that travel between stores, at the till: a real terminal with the printer
 * simulator (ESC/POS over TCP) against a stand-in store server over real socket.io. Each
 * action is checked by the request the store got (its idempotency key reused when an
 * answer is lost), what the store then holds, the balances the screen shows before and
 * after, and the slip the printer decoded.
 */
describe('terminal: tokens between stores at the till', function () {
  this.timeout(120_000);
  let store: EconomyDouble;
  let terminal: RunningTerminal;
  let sim: PrinterSimulator;
  let dataDir: string;

  const app = () => terminal.app;
  const message = () => app().state().message;
  const result = () => app().state().economy.result;
  const printedCount = () => sim.receipts().length;
  const printedText = async (count: number) => {
    const all = await sim.waitForReceipts(count, WAIT_MS);
    return (all.at(-1)?.lines ?? []).map((l) => l.text).join('\n');
  };
  const cardOf = (card: string) => Object.fromEntries((store.customer(card)?.balances ?? []).map((b) => [b.token, b.units]));
  const scanAnna = async () => {
    await app().command({ type: 'scan', code: ANNA_CARD });
    await waitFor(() => app().state().cart.customer !== null, WAIT_MS, 'the customer on the till');
  };

  before(async () => {
    store = await startEconomyDouble();
    dataDir = await mkdtemp(join(tmpdir(), 'mallpos-econ-'));
    await store.pair(dataDir);
    terminal = await startTerminal({ dataDir, scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, ackTimeoutMs: 500, drawer: { pollIdleMs: 0 } });
    if (terminal.printerSim === null) throw new Error('no printer simulator');
    sim = terminal.printerSim;
    await waitFor(() => app().state().status.server.state === 'connected', WAIT_MS, 'the terminal connected');
    await app().command({ type: 'login', staffId: 'ana', pin: '1234' });
    await waitFor(() => app().state().cashier !== null, WAIT_MS, 'the cashier signed in');
  });
  after(async () => {
    await terminal?.close();
    await store?.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  describe('a new customer', () => {
    it('registers one with a new number and prints a card slip with its barcode, the number masked in the text', async () => {
      const printed = printedCount();
      await app().command({ type: 'registerCustomer', name: 'Dora New', consent: true, card: null, email: 'dora@example.org', phone: '' });
      expect(message()?.kind, message()?.text).to.equal('success');
      const sent = store.sent('customer:register');
      expect(sent).to.have.length(1);
      expect(sent[0]).to.deep.include({ name: 'Dora New', card: null, consent: true, contact: { email: 'dora@example.org' } });
      expect(String(sent[0]?.['key'])).to.match(KEY);
      const customer = app().state().cart.customer;
      expect(customer?.name).to.equal('Dora New');
      // The stand-in numbers new cards from serial 501 on.
      const card = makeCardNumber(501);
      expect(store.customer(card)?.name).to.equal('Dora New');
      // The screen shows the number masked; the slip's barcode is the card itself.
      expect(customer?.card).to.not.equal(card);
      expect(result()?.kind).to.equal('registered');
      const all = await sim.waitForReceipts(printed + 1, WAIT_MS);
      const slip = all.at(-1);
      expect(slip?.barcodes.map((b) => b.data)).to.deep.equal([card]);
      const text = (slip?.lines ?? []).map((l) => l.text).join('\n');
      expect(text).to.include('WELCOME: YOUR CUSTOMER CARD').and.include('Dora New').and.include('Shares data with stores');
      expect(text).to.not.include(card);
    });

    it('refuses a pre-printed card with a wrong check digit without asking the store', async () => {
      const before = store.requests.length;
      await app().command({ type: 'registerCustomer', name: 'Eve', consent: false, card: 'C0000000011' });
      expect(message()?.code).to.equal('CORE_ERR_CHECK_DIGIT');
      expect(store.requests.length).to.equal(before);
    });

    it('registers one on a pre-printed card, and the store refuses a card already in use', async () => {
      const preprinted = makeCardNumber(7777);
      await app().command({ type: 'registerCustomer', name: 'Fred Card', consent: false, card: preprinted });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(store.customer(preprinted)?.name).to.equal('Fred Card');
      await app().command({ type: 'registerCustomer', name: 'Other Fred', consent: false, card: preprinted });
      expect(message()?.code).to.equal('VND_ERR_CARD_IN_USE');
      expect(store.applied('customer:register')).to.equal(2);
    });
  });

  describe('selling tokens', () => {
    it('sells for cash with change, opens the drawer, shows the balances before and after and prints the receipt', async () => {
      await scanAnna();
      const kicks = sim.drawerKicks().length;
      const printed = printedCount();
      await app().command({ type: 'sellTokens', token: 'ACME', units: 15, payment: { method: 'cash', tenderedMinor: 2000 } });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(message()?.text).to.include('€15.00').and.include('change €5.00');
      const sent = store.sent('tokens:sell').at(-1);
      expect(sent).to.deep.include({ card: ANNA_CARD, token: 'ACME', units: 15, payment: { method: 'cash', tenderedMinor: 2000 } });
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(65);
      expect(result()?.card?.find((c) => c.token === 'ACME')).to.deep.include({ before: 50, after: 65 });
      expect(app().state().cart.customer?.balances.find((b) => b.token === 'ACME')?.units).to.equal(65);
      await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
      const text = await printedText(printed + 1);
      expect(text).to.include('TOKENS BOUGHT').and.include('Token sale').and.include('15 x €1.00').and.include('€15.00');
      expect(text).to.include('Cash tendered').and.include('€20.00').and.include('Change').and.include('€5.00');
      expect(text).to.include('Balances left').and.include('65 ACME');
    });

    it('sells by card with the approval reference, without opening the drawer', async () => {
      const kicks = sim.drawerKicks().length;
      const printed = printedCount();
      await app().command({ type: 'sellTokens', token: 'ACME', units: 5, payment: { method: 'card', approvalRef: 'APP-77812' } });
      expect(message()?.kind, message()?.text).to.equal('success');
      const text = await printedText(printed + 1);
      expect(text).to.include('Card approval ref APP-77812').and.include('70 ACME');
      expect(text).to.not.include('Cash tendered');
      expect(sim.drawerKicks()).to.have.length(kicks);
    });

    it('sends a sale whose answer was lost again under the same key; the store sells once', async () => {
      const before = cardOf(ANNA_CARD)['ACME'] ?? 0;
      const applied = store.applied('tokens:sell');
      const sends = store.sent('tokens:sell').length;
      store.dropNextAnswer('tokens:sell');
      await app().command({ type: 'sellTokens', token: 'ACME', units: 3, payment: { method: 'cash', tenderedMinor: 300 } });
      expect(message()?.kind, message()?.text).to.equal('success');
      const sent = store.sent('tokens:sell').slice(sends);
      expect(sent).to.have.length(2);
      expect(sent[0]?.['key']).to.match(KEY).and.equal(sent[1]?.['key']);
      expect(store.applied('tokens:sell')).to.equal(applied + 1);
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(before + 3);
    });

    it('keeps the key on disk while no answer comes, and sends the same sale again under it', async () => {
      const before = cardOf(ANNA_CARD)['ACME'] ?? 0;
      const sends = store.sent('tokens:sell').length;
      store.dropNextAnswer('tokens:sell', 5);
      await app().command({ type: 'sellTokens', token: 'ACME', units: 2, payment: { method: 'cash', tenderedMinor: 200 } });
      expect(message()?.code).to.equal('POS_ERR_OFFLINE');
      const pending = await readFile(join(dataDir, 'pending-economy-op.json'), 'utf8');
      const key = store.sent('tokens:sell')[sends]?.['key'];
      expect(pending).to.include(String(key));
      await app().command({ type: 'sellTokens', token: 'ACME', units: 2, payment: { method: 'cash', tenderedMinor: 200 } });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(new Set(store.sent('tokens:sell').slice(sends).map((r) => r['key']))).to.deep.equal(new Set([key]));
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(before + 2);
      expect(await readFile(join(dataDir, 'pending-economy-op.json'), 'utf8').catch(() => null)).to.equal(null);
    });

    it('sends a sale left unanswered before a restart again under the key it kept on disk; the store sells once', async () => {
      const before = cardOf(ANNA_CARD)['ACME'] ?? 0;
      const applied = store.applied('tokens:sell');
      const sends = store.sent('tokens:sell').length;
      const sale = { type: 'sellTokens', token: 'ACME', units: 4, payment: { method: 'card', approvalRef: 'APP-R1' } } as const;
      store.dropNextAnswer('tokens:sell', 5);
      await app().command(sale);
      expect(message()?.code).to.equal('POS_ERR_OFFLINE');
      const key = store.sent('tokens:sell')[sends]?.['key'];
      expect(key).to.match(KEY);

      await terminal.close();
      terminal = await startTerminal({ dataDir, scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, ackTimeoutMs: 500, drawer: { pollIdleMs: 0 } });
      if (terminal.printerSim === null) throw new Error('no printer simulator');
      sim = terminal.printerSim;
      await waitFor(() => app().state().status.server.state === 'connected', WAIT_MS, 'the restarted terminal connected');
      await app().command({ type: 'login', staffId: 'ana', pin: '1234' });
      await scanAnna();
      await app().command(sale);
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(store.sent('tokens:sell').at(-1)?.['key']).to.equal(key);
      expect(store.applied('tokens:sell')).to.equal(applied + 1);
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(before + 4);
    });

    it('says the store\'s refusal when the cash does not cover the tokens, and sells nothing', async () => {
      const before = cardOf(ANNA_CARD);
      await app().command({ type: 'sellTokens', token: 'BETA', units: 2, payment: { method: 'cash', tenderedMinor: 500 } });
      expect(message()?.code).to.equal('CORE_ERR_CASH_SHORT');
      expect(cardOf(ANNA_CARD)).to.deep.equal(before);
    });
  });

  describe('an exchange', () => {
    it('shows the quote by the rounding rule, then exchanges on confirmation and prints the receipt', async () => {
      const printed = printedCount();
      const before = cardOf(ANNA_CARD);
      await app().command({ type: 'exchangeQuote', fromToken: 'ACME', units: 10, source: 'card', toToken: 'BETA' });
      // 10 ACME = €10.00; 2% = €0.20; €9.80 buys 3 BETA (€9.00); €0.80 remains.
      const q = app().state().economy.quote;
      expect(q).to.deep.include({ fromToken: 'ACME', units: 10, source: 'card', toToken: 'BETA', unitsOut: 3 });
      expect(q?.charge).to.equal('€0.20 (2%)');
      expect(q?.remainder).to.equal('€0.80');
      expect(store.applied('exchange:commit')).to.equal(0);
      expect(cardOf(ANNA_CARD)).to.deep.equal(before);

      store.dropNextAnswer('exchange:commit');
      await app().command({ type: 'exchangeConfirm' });
      expect(message()?.kind, message()?.text).to.equal('success');
      const sent = store.sent('exchange:commit');
      expect(sent).to.have.length(2);
      expect(sent[0]).to.deep.include({ card: ANNA_CARD, from: { token: 'ACME', units: 10, source: 'card' }, to: 'BETA', expectUnits: 3 });
      expect(sent[0]?.['key']).to.match(KEY).and.equal(sent[1]?.['key']);
      expect(store.applied('exchange:commit')).to.equal(1);
      expect(cardOf(ANNA_CARD)['ACME']).to.equal((before['ACME'] ?? 0) - 10);
      expect(cardOf(ANNA_CARD)['BETA']).to.equal(3);
      expect(result()?.card?.find((c) => c.token === 'BETA')).to.deep.include({ before: 0, after: 3 });
      expect(app().state().economy.quote).to.equal(null);
      const text = await printedText(printed + 1);
      expect(text).to.include('TOKEN EXCHANGE').and.include('Given').and.include('10 ACME').and.include('Service charge (2%)').and.include('€0.20');
      expect(text).to.include('Received').and.include('3 BETA').and.include('Remainder').and.include('€0.80').and.include('Balances left');
    });

    it('refuses to confirm a quote the fee schedule changed since, shows the new quote and exchanges nothing', async () => {
      await app().command({ type: 'exchangeQuote', fromToken: 'ACME', units: 10, source: 'card', toToken: 'BETA' });
      expect(app().state().economy.quote?.unitsOut).to.equal(3);
      const before = cardOf(ANNA_CARD);
      store.setServiceBps(2000);
      try {
        await app().command({ type: 'exchangeConfirm' });
        expect(message()?.code).to.equal('VND_ERR_EXCHANGE_QUOTE_CHANGED');
        expect(cardOf(ANNA_CARD)).to.deep.equal(before);
        // €10.00 less 20% buys 2 BETA now: the cashier sees that before confirming again.
        expect(app().state().economy.quote?.unitsOut).to.equal(2);
        await app().command({ type: 'exchangeConfirm' });
        expect(message()?.kind, message()?.text).to.equal('success');
        expect(cardOf(ANNA_CARD)['BETA']).to.equal((before['BETA'] ?? 0) + 2);
      } finally {
        store.setServiceBps(SERVICE_BPS);
      }
    });

    it('says the store\'s refusal of too few tokens to buy one, and that there is then no quote to confirm', async () => {
      await app().command({ type: 'exchangeQuote', fromToken: 'ACME', units: 1, source: 'card', toToken: 'BETA' });
      expect(message()?.code).to.equal('CORE_ERR_EXCHANGE_TOO_SMALL');
      expect(app().state().economy.quote).to.equal(null);
      await app().command({ type: 'exchangeConfirm' });
      expect(message()?.code).to.equal('POS_ERR_COMMAND');
    });

    it('exchanges from the mall wallet and shows the wallet before and after', async () => {
      await app().command({ type: 'walletBalance' });
      expect(result()?.wallet?.find((w) => w.token === 'MALL')?.after).to.equal(20);
      await app().command({ type: 'exchangeQuote', fromToken: 'MALL', units: 4, source: 'wallet', toToken: 'ACME' });
      // 4 MALL = €6.00; 2% = €0.12; €5.88 buys 5 ACME; €0.88 remains.
      expect(app().state().economy.quote?.unitsOut).to.equal(5);
      const printed = printedCount();
      // From the wallet the mall wants the customer's wallet PIN: without it, or wrong, nothing moves.
      await app().command({ type: 'exchangeConfirm' });
      expect(message()?.code).to.equal('MALL_ERR_WALLET_PIN_REQUIRED');
      await app().command({ type: 'exchangeConfirm', pin: '731904826155' });
      expect(message()?.code).to.equal('MALL_ERR_WALLET_PIN');
      expect(store.wallet(ANNA_CARD)['MALL']).to.equal(20);
      await app().command({ type: 'exchangeConfirm', pin: ANNA_WALLET_PIN });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(store.wallet(ANNA_CARD)['MALL']).to.equal(16);
      // One request under one key, sent three times: the PIN is no part of what identifies it.
      const keys = new Set(store.sent('exchange:commit').slice(-3).map((r) => r['key']));
      expect(keys.size).to.equal(1);
      expect(store.sent('exchange:commit').at(-1)?.['walletPin']).to.equal(ANNA_WALLET_PIN);
      expect(result()?.wallet?.find((w) => w.token === 'MALL')).to.deep.include({ before: 20, after: 16 });
      const text = await printedText(printed + 1);
      expect(text).to.include('Given (wallet)').and.include('Mall wallet after').and.include('16 MALL');
    });
  });

  describe('the mall wallet', () => {
    it('moves tokens to the wallet and back, each under its own key, with a receipt', async () => {
      const card = cardOf(ANNA_CARD)['ACME'] ?? 0;
      const printed = printedCount();
      await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 6 });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(card - 6);
      expect(store.wallet(ANNA_CARD)['ACME']).to.equal(6);
      expect(result()?.card?.find((c) => c.token === 'ACME')).to.deep.include({ before: card, after: card - 6 });
      let text = await printedText(printed + 1);
      expect(text).to.include('MOVED TO THE MALL WALLET').and.include('Card to wallet').and.include('6 ACME').and.include('Mall wallet after');

      await app().command({ type: 'walletMove', direction: 'from-wallet', token: 'ACME', units: 6 });
      expect(message()?.code).to.equal('MALL_ERR_WALLET_PIN_REQUIRED');
      await app().command({ type: 'walletMove', direction: 'from-wallet', token: 'ACME', units: 6, pin: ANNA_WALLET_PIN });
      expect(cardOf(ANNA_CARD)['ACME']).to.equal(card);
      text = await printedText(printed + 2);
      expect(text).to.include('MOVED FROM THE MALL WALLET').and.include('Wallet to card');
      const keys = store.sent('wallet:move').map((r) => r['key']);
      expect(keys).to.have.length(3);
      expect(new Set(keys).size).to.equal(2);
    });

    it('on a first deposit sends the PIN the customer chose, never to disk', async () => {
      await app().command({ type: 'cancelSale' });
      await app().command({ type: 'registerCustomer', name: 'Nina New', consent: false, card: null });
      await app().command({ type: 'sellTokens', token: 'ACME', units: 10, payment: { method: 'cash', tenderedMinor: 2000 } });
      await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 4 });
      expect(message()?.code).to.equal('MALL_ERR_WALLET_PIN_NOT_SET');
      const card = String(store.sent('wallet:move').at(-1)?.['card']);
      expect(store.wallet(card)['ACME'] ?? 0).to.equal(0);
      await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 4, newPin: '975318642097' });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(store.walletPin(card)).to.equal('975318642097');
      expect(store.wallet(card)['ACME']).to.equal(4);
      expect(JSON.stringify(await readdirBytes(dataDir))).to.not.include('975318642097');
    });

    it('says at once that the wallet cannot be reached when the store cannot reach the mall; nothing moves', async () => {
      store.setMallReachable(false);
      try {
        const wallet = store.wallet(ANNA_CARD);
        const card = cardOf(ANNA_CARD);
        const moves = store.sent('wallet:move').length;
        await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 1 });
        expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
        expect(message()?.text).to.include('mall wallet cannot be reached');
        // Asked once: a refusal is not retried.
        expect(store.sent('wallet:move').length).to.equal(moves + 1);
        await app().command({ type: 'walletBalance' });
        expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
        expect(store.wallet(ANNA_CARD)).to.deep.equal(wallet);
        expect(cardOf(ANNA_CARD)).to.deep.equal(card);
      } finally {
        store.setMallReachable(true);
      }
    });
  });

  describe('paying from the wallet in a sale', () => {
    it('takes wallet tokens as a tender: the store prices and commits the sale with them; the receipt shows them and the tokens earned', async () => {
      await app().command({ type: 'cancelSale' });
      await app().command({ type: 'scan', code: ANNA_CARD });
      await app().command({ type: 'scan', code: PEN });
      await app().command({ type: 'scan', code: PEN });
      await waitFor(() => app().state().priced !== null, WAIT_MS, 'the cart priced');
      await app().command({ type: 'setTenders', tenders: [{ token: 'MALL', units: 2, source: 'wallet' }] });
      expect(message()?.kind, message()?.text).to.not.equal('error');
      expect(app().state().cart.tenders).to.deep.equal([{ token: 'MALL', units: 2, source: 'wallet' }]);
      // The store prices the wallet's tokens as tendered: 2 MALL pay one pen, €3.00 is left in cash.
      expect(store.sent('cart:price').at(-1)?.['tenders']).to.deep.equal([{ token: 'MALL', units: 2, source: 'wallet' }]);
      await waitFor(() => app().state().priced?.cashDueMinor === 300, WAIT_MS, 'the cart priced with the wallet tokens');
      await app().command({ type: 'setCash', cashTenderedMinor: 500 });
      const printed = printedCount();
      const wallet = store.wallet(ANNA_CARD)['MALL'] ?? 0;
      await app().command({ type: 'complete' });
      // The mall wants the customer's wallet PIN: the sale waits for it, its key and body on disk, the PIN nowhere.
      expect(app().state().completing?.waiting).to.deep.include({ for: 'wallet-pin', code: 'MALL_ERR_WALLET_PIN_REQUIRED' });
      await app().command({ type: 'walletPin', pin: '731904826155' });
      expect(app().state().completing?.waiting).to.deep.include({ for: 'wallet-pin', code: 'MALL_ERR_WALLET_PIN' });
      await app().command({ type: 'walletPin', pin: ANNA_WALLET_PIN });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(new Set(store.sent('sale:commit').slice(-3).map((r) => r['key'])).size).to.equal(1);
      expect(JSON.stringify(await readdirBytes(dataDir))).to.not.include('731904826155').and.not.include(ANNA_WALLET_PIN);
      // €6.00 less 2 MALL for one pen (€3.00) leaves €3.00 in cash: 3 ACME earned.
      expect(message()?.text).to.include('earned 3 ACME');
      const commit = store.sent('sale:commit').at(-1);
      expect(commit?.['tenders']).to.deep.equal([{ token: 'MALL', units: 2, source: 'wallet' }]);
      expect(store.wallet(ANNA_CARD)['MALL']).to.equal(wallet - 2);
      const text = await printedText(printed + 1);
      expect(text).to.include('From the mall wallet').and.include('2 MALL').and.include('Tokens earned').and.include('3 ACME');
    });

    it('refuses a wallet tender at once when the mall is away, keeping the other tenders; and takes the wallet tokens off a sale refused for it', async () => {
      await app().command({ type: 'scan', code: ANNA_CARD });
      await app().command({ type: 'scan', code: PEN });
      await waitFor(() => app().state().priced !== null, WAIT_MS, 'the cart priced');
      await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
      store.setMallReachable(false);
      try {
        await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }, { token: 'MALL', units: 1, source: 'wallet' }] });
        expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
        expect(app().state().cart.tenders).to.deep.equal([{ token: 'ACME' }]);
      } finally {
        store.setMallReachable(true);
      }
      await app().command({ type: 'setTenders', tenders: [{ token: 'MALL', units: 1, source: 'wallet' }] });
      expect(app().state().cart.tenders).to.deep.equal([{ token: 'MALL', units: 1, source: 'wallet' }]);
      await app().command({ type: 'setCash', cashTenderedMinor: 300 });
      // The mall goes away between the tender and the commit.
      store.setMallReachable(false);
      const sales = store.applied('sale:commit');
      try {
        await app().command({ type: 'complete' });
        expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
        expect(message()?.text).to.include('pay it another way');
        expect(app().state().cart.lines).to.have.length(1);
        expect(app().state().cart.tenders).to.deep.equal([]);
        expect(app().state().completing).to.equal(null);
        expect(store.applied('sale:commit')).to.equal(sales);
      } finally {
        store.setMallReachable(true);
      }
      await app().command({ type: 'complete' });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(store.applied('sale:commit')).to.equal(sales + 1);
    });
  });

  describe('another store\'s customer data', () => {
    it('shows the data and the toll charged, and is refused without the customer\'s consent at no toll', async () => {
      await app().command({ type: 'customerData', card: OTHER_STORE_CARD });
      expect(message()?.kind, message()?.text).to.equal('success');
      expect(message()?.text).to.include('toll €0.25');
      const details = Object.fromEntries((result()?.details ?? []).map((d) => [d.label, d.value]));
      expect(details['Home store']).to.equal('Beta Store');
      expect(details['Toll charged to this store']).to.equal('€0.25');
      expect(details['Contact']).to.equal('bea@example.org');
      expect(String(store.sent('customer:data-request')[0]?.['key'])).to.match(KEY);
      expect(store.tollsCharged()).to.equal(1);

      await app().command({ type: 'customerData', card: NO_CONSENT_CARD });
      expect(message()?.code).to.equal('MALL_ERR_NO_CONSENT');
      expect(store.tollsCharged()).to.equal(1);
      await app().command({ type: 'closeEconomy' });
      expect(result()).to.equal(null);
    });
  });

  describe('when the till cannot reach the store server', () => {
    it('says at once that token sales, registrations, exchanges and the wallet are online only; nothing is sent', async () => {
      await app().command({ type: 'scan', code: ANNA_CARD });
      await waitFor(() => app().state().cart.customer !== null, WAIT_MS, 'the customer on the till');
      await store.close();
      await waitFor(() => !app().link.connected, WAIT_MS, 'the till to notice the store is gone');
      const sent = store.requests.length;
      await app().command({ type: 'sellTokens', token: 'ACME', units: 1, payment: { method: 'cash', tenderedMinor: 100 } });
      expect(message()?.code).to.equal('POS_ERR_OFFLINE');
      expect(message()?.text).to.include('only while it can be reached');
      await app().command({ type: 'registerCustomer', name: 'Gina', consent: false, card: null });
      expect(message()?.text).to.include('only while it can be reached');
      await app().command({ type: 'exchangeQuote', fromToken: 'ACME', units: 10, source: 'card', toToken: 'BETA' });
      expect(message()?.text).to.include('only while it can be reached');
      await app().command({ type: 'walletBalance' });
      expect(message()?.text).to.include('mall wallet cannot be reached');
      await app().command({ type: 'customerData', card: OTHER_STORE_CARD });
      expect(message()?.code).to.equal('POS_ERR_OFFLINE');
      expect(store.requests.length).to.equal(sent);
    });
  });
});
