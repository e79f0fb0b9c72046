import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrinterSimulator, type DecodedReceipt } from '../../hardware/printer/index.ts';
import type { ScreenState } from '../../terminal/app.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { waitFor } from '../helpers/browser.ts';
import { MUESLI, PEN, startOfflineStoreDouble, type OfflineStoreDouble } from '../helpers/offline-store-double.ts';

const WAIT_MS = 20_000;
const CARD = 'C0000000018';
const text = (r: DecodedReceipt) => r.lines.map((l) => l.text).join('\n');

/**
 * The till sells for cash through an outage of its store server and forwards those sales
 * once it is back, against a stand-in store server (the remote side only).
 */
describe('terminal: selling through an outage of the store server', function () {
  this.timeout(90_000);
  let store: OfflineStoreDouble;
  let printer: PrinterSimulator;
  let terminal: RunningTerminal;
  let dataDir: string;

  const state = (): ScreenState => terminal.app.state();
  const start = async () => {
    terminal = await startTerminal({ dataDir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0, drawer: false, ackTimeoutMs: 1_000 });
  };
  const online = () => waitFor(() => state().status.server.state === 'connected' && state().offline.catalog !== null, WAIT_MS, 'connected with a catalog copy');
  const offline = () => waitFor(() => state().offline.selling, WAIT_MS, 'the till selling offline');
  const sellCash = async (codes: string[], cashMinor: number) => {
    for (const code of codes) await terminal.app.command({ type: 'scan', code });
    await terminal.app.command({ type: 'setCash', cashTenderedMinor: cashMinor });
    await terminal.app.command({ type: 'complete' });
  };

  beforeEach(async () => {
    store = await startOfflineStoreDouble({ maxSales: 3, maxTotalMinor: 5_000 });
    printer = new PrinterSimulator({ port: 0 });
    await printer.start();
    dataDir = await mkdtemp(join(tmpdir(), 'mallpos-offline-till-'));
    await store.pair(dataDir);
    await start();
    await online();
  });
  afterEach(async () => {
    await terminal?.close();
    await store?.close();
    await printer?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps a durable catalog copy current from pushes and looks up from it only while the store is down', async () => {
    expect(state().offline.catalog?.version).to.equal(1);
    store.setPrice(PEN, 500);
    await waitFor(() => state().offline.catalog?.version === 2, WAIT_MS, 'the copy follows the push');
    const onDisk = JSON.parse(await readFile(join(dataDir, 'catalog-copy.json'), 'utf8')) as { catalog: { version: number } };
    expect(onDisk.catalog.version).to.equal(2);
    // Online, lookups go to the store.
    const before = store.requests.filter((r) => r.event === 'product:lookup').length;
    await terminal.app.command({ type: 'scan', code: MUESLI });
    expect(store.requests.filter((r) => r.event === 'product:lookup').length).to.equal(before + 1);
    await terminal.app.command({ type: 'cancelSale' });

    await store.goDown();
    await offline();
    await terminal.app.command({ type: 'scan', code: PEN });
    expect(state().cart.lines.map((l) => [l.gtin, l.unitPriceMinor])).to.deep.equal([[PEN, 500]]);
    expect(state().pricingError).to.equal(null);
    await terminal.app.command({ type: 'scan', code: '4006381333924' });
    expect(state().message?.code).to.equal('POS_ERR_OFFLINE');
    expect(state().message?.text).to.match(/not in this till's copy of the catalog/);
  });

  it('sells for cash offline, refuses cards, tokens, refunds and short cash with reasons, and stops at the limits', async () => {
    await store.goDown();
    await offline();
    expect(state().offline).to.include({ selling: true, waiting: 0, stopped: null });

    await terminal.app.command({ type: 'scan', code: CARD });
    expect(state().message?.code).to.equal('POS_ERR_OFFLINE');
    expect(state().message?.text).to.match(/customer cards cannot be used now, because balances are kept on the store server/);
    await terminal.app.command({ type: 'scan', code: PEN });
    await terminal.app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    expect(state().message?.text).to.match(/tokens cannot be taken now/);
    await terminal.app.command({ type: 'refund', staffId: 'sam', pin: '9999', reason: 'damaged' });
    expect(state().message?.text).to.match(/refunds need the store server/);
    await terminal.app.command({ type: 'setCash', cashTenderedMinor: 400 });
    await terminal.app.command({ type: 'complete' });
    expect(state().message?.text).to.match(/cash only: €4.50 is due and €4.00 was tendered/);
    expect(state().offline.waiting).to.equal(0);

    await terminal.app.command({ type: 'setCash', cashTenderedMinor: 500 });
    await terminal.app.command({ type: 'complete' });
    expect(state().message?.kind).to.equal('success');
    expect(state().message?.text).to.match(/recorded offline as t-offline-1, change €0.50/);
    expect(state().cart.lines).to.have.length(0);
    const [first] = await printer.waitForReceipts(1, WAIT_MS);
    expect(text(first!)).to.include('RECORDED OFFLINE').and.include('t-offline-1').and.include('€4.50');

    await sellCash([MUESLI, MUESLI], 1_000);
    expect(state().offline).to.include({ waiting: 2, waitingTotalMinor: 450 + 798 });
    // Over the total value: refused, nothing recorded, the cart kept.
    await sellCash([PEN, PEN, PEN, PEN, PEN, PEN, PEN, PEN, PEN], 10_000);
    expect(state().message?.text).to.match(/over the most this till may hold.*the till stops/);
    expect(state().cart.lines).to.have.length(1);
    await terminal.app.command({ type: 'cancelSale' });
    await sellCash([PEN], 450);
    expect(state().offline.waiting).to.equal(3);
    expect(state().offline.stopped).to.match(/3 offline sales are waiting.*the till stops/);
    await sellCash([PEN], 450);
    expect(state().message?.code).to.equal('POS_ERR_OFFLINE');
    expect(state().offline.waiting).to.equal(3);
    expect(store.journal()).to.have.length(0);
  });

  it('forwards the waiting sales in order, each once with its key, reports price differences and what is left', async () => {
    await store.goDown();
    await offline();
    await sellCash([PEN], 450);
    await sellCash([MUESLI], 500);
    const keys = (JSON.parse(await readFile(join(dataDir, 'offline-sales.json'), 'utf8')) as { sales: { record: { key: string } }[] }).sales.map((s) => s.record.key);
    store.setPrice(PEN, 480);
    // The first answer is lost: the sale is sent again under the same key on the next connection.
    store.dropNextAnswer('offline-sale:forward');
    await store.comeBack();
    await waitFor(() => store.journal().length === 1 && state().status.server.state === 'connected', WAIT_MS, 'the first forward arrived');
    await terminal.app.whenSynced();
    expect(state().offline.waiting).to.equal(2);
    await store.goDown();
    await offline();
    await store.comeBack();
    await waitFor(() => state().offline.waiting === 0 && store.reports().some((r) => r.waiting === 0), WAIT_MS, 'every sale forwarded and reported');
    expect(store.journal().map((r) => [r.offlineId, r.key])).to.deep.equal([
      ['t-offline-1', keys[0]],
      ['t-offline-2', keys[1]],
    ]);
    expect(store.journal()[0]?.lines[0]).to.include({ code: PEN, unitPriceMinor: 450, totalMinor: 450 });
    expect(state().offline.priceDifferences).to.deep.equal([{ offlineId: 't-offline-1', code: PEN, tillUnitMinor: 450, serverUnitMinor: 480 }]);
    expect(state().offline.catalog?.version).to.equal(2);
    const forwards = store.requests.filter((r) => r.event === 'offline-sale:forward').map((r) => r.payload['offlineId']);
    expect(forwards).to.deep.equal(['t-offline-1', 't-offline-1', 't-offline-2']);
    // Forwarded and printed sales leave the file; the counter does not go back.
    await terminal.close();
    await start();
    await online();
    expect(state().offline.waiting).to.equal(0);
    await store.goDown();
    await offline();
    await sellCash([PEN], 500);
    expect(state().message?.text).to.match(/recorded offline as t-offline-3/);
  });

  it('does not print twice when it stopped after handing the receipt to the print queue but before noting it', async () => {
    await store.goDown();
    await offline();
    await sellCash([PEN], 450);
    await printer.waitForReceipts(1, WAIT_MS);
    await terminal.close();
    // The state on disk of a till stopped in that instant: the receipt is in the queue's file, the sale not marked.
    const file = join(dataDir, 'offline-sales.json');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { sales: { printed: boolean }[] };
    expect(saved.sales).to.have.length(1);
    saved.sales[0]!.printed = false;
    await writeFile(file, JSON.stringify(saved));
    await start();
    await waitFor(async () => (JSON.parse(await readFile(file, 'utf8')) as { sales: { printed: boolean }[] }).sales[0]?.printed === true, WAIT_MS, 'the sale noted as printed');
    await store.comeBack();
    await waitFor(() => state().offline.waiting === 0, WAIT_MS, 'forwarded');
    expect(printer.receipts()).to.have.length(1);
    expect(store.journal()).to.have.length(1);
  });

  it('stops forwarding at a refusal, shows it and sends no later sale before it', async () => {
    await store.goDown();
    await offline();
    await sellCash([PEN], 450);
    await sellCash([MUESLI], 399);
    store.refuseForwards('VND_ERR_VALIDATION');
    await store.comeBack();
    await waitFor(() => state().offline.problem !== null, WAIT_MS, 'the refusal shown');
    expect(state().offline.problem?.message).to.match(/offline sale t-offline-1 was refused by the store server.*stays waiting/);
    expect(state().offline.waiting).to.equal(2);
    expect(store.requests.filter((r) => r.event === 'offline-sale:forward').map((r) => r.payload['offlineId'])).to.deep.equal(['t-offline-1']);
    await waitFor(() => store.reports().some((r) => r.waiting === 2), WAIT_MS, 'the store told what waits');
  });

  it('keeps the outage clock across a restart and stops selling when the outage is too long', async () => {
    store.setLimits({ maxOutageS: 600 });
    store.setPrice(MUESLI, 399);
    await waitFor(() => state().offline.limits?.maxOutageS === 600, WAIT_MS, 'the new limits');
    await store.goDown();
    await offline();
    await terminal.close();
    // The till was last in touch with the store eleven minutes ago, as its file says after a restart.
    const file = join(dataDir, 'offline-sales.json');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { lastContactAt: string };
    saved.lastContactAt = new Date(Date.now() - 660_000).toISOString();
    await writeFile(file, JSON.stringify(saved));
    await start();
    await offline();
    expect(state().offline.stopped).to.match(/unreachable for 6\d\d s, longer than the 600 s.*the till stops/);
    await sellCash([PEN], 450);
    expect(state().message?.code).to.equal('POS_ERR_OFFLINE');
    expect(state().message?.text).to.match(/longer than the 600 s this till may sell offline: the till stops/);
    expect(state().offline.waiting).to.equal(0);
  });
});
