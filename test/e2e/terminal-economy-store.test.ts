import { expect } from 'chai';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCardNumber } from '../../core/index.ts';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { waitFor } from '../helpers/browser.ts';
import { http } from '../helpers/http.ts';
import { tempDir } from '../helpers/vendor.ts';
import { ledgerPicture, startLinkedStore, type LinkedStore } from '../helpers/xchg-store.ts';

const WAIT_MS = 30_000;
const PEN = '4006381333931'; // 450, or 90 ACME, or 45 MALL

/**
 * The till against the real store server linked to a stand-in mall (wallet, holds,
 * customer directory): a paired terminal with the printer simulator exchanges tokens,
 * reads and fills the mall wallet, pays part of a sale from it, buys another store's
 * customer data, and says at once when the mall is away, changing nothing.
 */
describe('e2e: tokens between stores at the till, against the store server and a mall', function () {
  this.timeout(180_000);
  let store: LinkedStore;
  let terminal: RunningTerminal;
  let sim: PrinterSimulator;
  let cleanup: () => Promise<void>;
  let card: string;

  const app = () => terminal.app;
  const message = () => app().state().message;
  const result = () => app().state().economy.result;
  const units = (token: string) => {
    const id = store.server.ledger.customerIdByCard(card);
    return store.server.ledger.customerView(id).balances.find((b) => b.token === token)?.units ?? 0;
  };
  const lastPrinted = async (count: number) => {
    const all = await sim.waitForReceipts(count, WAIT_MS);
    return (all.at(-1)?.lines ?? []).map((l) => l.text).join('\n');
  };

  /** The wallet PIN the customer chooses with the first deposit. */
  const WALLET_PIN = '581321';

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-till-econ-'));
    store = await startLinkedStore(join(root, 'store'));
    card = store.cards[0] as string;
    const created = await http(`${store.server.url}/api/terminals`, 'POST', { name: 'Till 2' }, { authorization: `Bearer ${store.init.operatorToken}` });
    if (created.status !== 200) throw new Error(`create terminal: ${created.text}`);
    const dataDir = join(root, 'till');
    await mkdir(dataDir, { recursive: true });
    await pairTerminal(dataDir, store.server.url, created.body.pairingCode as string);
    terminal = await startTerminal({ dataDir, scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, drawer: { pollIdleMs: 0 } });
    if (terminal.printerSim === null) throw new Error('no printer simulator');
    sim = terminal.printerSim;
    await waitFor(() => app().state().status.server.state === 'connected', WAIT_MS, 'the terminal connected');
    await app().command({ type: 'login', staffId: 'ana', pin: '1234' });
    await app().command({ type: 'scan', code: card });
    expect(app().state().cart.customer?.name, message()?.text).to.be.a('string');
  });
  after(async () => {
    await terminal?.close();
    await store?.close();
    await cleanup?.();
  });
  afterEach(() => store.double.setDown(false));

  it('exchanges ACME from the card for MALL: the quote the store gives, journalled once, printed', async () => {
    const acme = units('ACME');
    const mall = units('MALL');
    await app().command({ type: 'exchangeQuote', fromToken: 'ACME', units: 30, source: 'card', toToken: 'MALL' });
    const q = app().state().economy.quote;
    expect(q, message()?.text).to.not.equal(null);
    const printed = sim.receipts().length;
    await app().command({ type: 'exchangeConfirm' });
    expect(message()?.kind, message()?.text).to.equal('success');
    expect(units('ACME')).to.equal(acme - 30);
    expect(units('MALL')).to.equal(mall + (q?.unitsOut ?? 0));
    expect(result()?.card?.find((c) => c.token === 'MALL')).to.deep.include({ before: mall, after: mall + (q?.unitsOut ?? 0) });
    const text = await lastPrinted(printed + 1);
    expect(text).to.include('TOKEN EXCHANGE').and.include('30 ACME').and.include(`${q?.unitsOut} MALL`).and.include('Service charge');
  });

  it('shows the mall wallet and moves tokens into it; the move prints', async () => {
    store.double.credit(card, 'MALL', 100);
    await app().command({ type: 'walletBalance' });
    expect(message()?.kind, message()?.text).to.not.equal('error');
    expect(result()?.wallet?.find((w) => w.token === 'MALL')?.after).to.equal(100);
    const acme = units('ACME');
    const printed = sim.receipts().length;
    // The wallet has no PIN yet: the first deposit is refused until the customer chooses one.
    await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 5 });
    expect(message()?.code).to.equal('MALL_ERR_WALLET_PIN_NOT_SET');
    expect(units('ACME')).to.equal(acme);
    await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 5, newPin: WALLET_PIN });
    expect(message()?.kind, message()?.text).to.equal('success');
    expect(store.double.pins.get(card)).to.equal(WALLET_PIN);
    expect(units('ACME')).to.equal(acme - 5);
    expect(await lastPrinted(printed + 1)).to.include('MOVED TO THE MALL WALLET').and.include('5 ACME');
  });

  it('pays a pen from the mall wallet: priced with the wallet tokens, taken from the wallet, printed', async () => {
    const wallet = store.double.balance(card, 'MALL');
    const mall = units('MALL');
    await app().command({ type: 'scan', code: PEN });
    await app().command({ type: 'setTenders', tenders: [{ token: 'MALL', units: 45, source: 'wallet' }] });
    await waitFor(() => app().state().priced?.cashDueMinor === 0, WAIT_MS, 'the pen priced as paid from the wallet');
    const printed = sim.receipts().length;
    await app().command({ type: 'complete' });
    // The store asked the mall, which wants the wallet PIN: the sale waits for it.
    expect(app().state().completing?.waiting, message()?.text).to.deep.include({ for: 'wallet-pin', code: 'MALL_ERR_WALLET_PIN_REQUIRED' });
    await app().command({ type: 'walletPin', pin: WALLET_PIN });
    expect(message()?.kind, message()?.text).to.equal('success');
    await waitFor(() => store.double.balance(card, 'MALL') === wallet - 45, WAIT_MS, 'the wallet debited at the mall');
    expect(units('MALL')).to.equal(mall);
    expect(await lastPrinted(printed + 1)).to.include('45 MALL');
  });

  it('says at once that the mall wallet cannot be reached, keeps the sale with its other tenders, and changes nothing', async () => {
    await app().command({ type: 'scan', code: card });
    await app().command({ type: 'scan', code: PEN });
    await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    const before = ledgerPicture(store.server);
    store.double.setDown(true);
    await app().command({ type: 'walletBalance' });
    expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
    await app().command({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units: 1 });
    expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
    await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }, { token: 'MALL', units: 45, source: 'wallet' }] });
    expect(message()?.code).to.equal('VND_ERR_WALLET_OFFLINE');
    expect(app().state().cart.tenders).to.deep.equal([{ token: 'ACME' }]);
    expect(ledgerPicture(store.server)).to.equal(before);
    store.double.setDown(false);
    await app().command({ type: 'complete' });
    expect(message()?.kind, message()?.text).to.equal('success');
  });

  it('buys another store\'s customer data and shows the toll', async () => {
    const other = makeCardNumber(9_101);
    store.double.addCustomer(other, { home: 'bolt', customerId: 'cust-000001', name: 'Olga Other', contact: { email: 'olga@example.org' }, consent: true });
    await app().command({ type: 'customerData', card: other });
    expect(message()?.kind, message()?.text).to.equal('success');
    const details = Object.fromEntries((result()?.details ?? []).map((d) => [d.label, d.value]));
    expect(details['Home store']).to.equal('Bolt Hardware');
    expect(details['Toll charged to this store']).to.equal('€0.10');
    expect(store.double.tolls.length).to.equal(1);
  });
});
