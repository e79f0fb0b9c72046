import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScreenState } from '../../terminal/app.ts';
import { startTerminalRig, waitFor, type TerminalRig } from '../helpers/browser.ts';
import { startTestVendor } from '../helpers/vendor.ts';

const PEN = '4006381333931';
const CARD = 'C0000000018';
const WAIT_MS = 30_000;

/**
 * Selling through an outage against the real store server: a paired terminal keeps a
 * copy of the demo store's catalog, the store server stops, the till sells for cash
 * (tokens and customer cards refused), the store server starts again on the same port
 * and journals each offline sale once, under the key the till gave it.
 */
describe('e2e: the till sells for cash while the store server is down, and forwards once', function () {
  this.timeout(180_000);
  let rig: TerminalRig;
  const state = (): ScreenState => rig.terminal.app.state();
  const eventsWithKey = async (key: string): Promise<number> => {
    const exported = await rig.store.operator('GET', '/api/ledger/export?format=jsonl');
    return exported.text
      .trim()
      .split('\n')
      .filter((l) => (JSON.parse(l) as { event?: { key?: string | null } }).event?.key === key).length;
  };

  before(async () => {
    rig = await startTerminalRig({ ackTimeoutMs: 2_000, terminal: { drawer: false } });
  });
  after(async () => {
    await rig?.close();
  });

  it('keeps a copy of the store catalog from catalog:get', async () => {
    await rig.terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await waitFor(() => state().offline.catalog !== null, WAIT_MS, 'the catalog copy');
    const onDisk = JSON.parse(await readFile(join(rig.dataDir, 'catalog-copy.json'), 'utf8')) as { catalog: { products: { gtin: string; priceMinor: number }[] } };
    expect(onDisk.catalog.products.find((p) => p.gtin === PEN)?.priceMinor).to.equal(450);
  });

  it('sells for cash with the store server stopped and refuses tokens, with a reason', async () => {
    await rig.store.server.close();
    await waitFor(() => state().offline.selling, WAIT_MS, 'the till selling offline');
    const app = rig.terminal.app;
    await app.command({ type: 'scan', code: PEN });
    expect(state().cart.lines.map((l) => l.gtin)).to.deep.equal([PEN]);
    await app.command({ type: 'scan', code: CARD });
    expect(state().message?.text).to.match(/customer cards cannot be used now, because balances are kept on the store server/);
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    expect(state().message?.text).to.match(/tokens cannot be taken now/);
    await app.command({ type: 'setCash', cashTenderedMinor: 500 });
    await app.command({ type: 'complete' });
    expect(state().message?.text).to.match(new RegExp(`recorded offline as ${rig.terminalId}-1, change €0.50`));
    await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'setCash', cashTenderedMinor: 450 });
    await app.command({ type: 'complete' });
    expect(state().offline.waiting).to.equal(2);
    const receipts = await rig.terminal.printerSim!.waitForReceipts(2, WAIT_MS);
    expect(receipts.map((r) => r.lines.map((l) => l.text).join('\n')).every((t) => t.includes('RECORDED OFFLINE'))).to.equal(true);
  });

  it('forwards the offline sales in order when the store server is back; each is journalled once', async () => {
    const saved = JSON.parse(await readFile(join(rig.dataDir, 'offline-sales.json'), 'utf8')) as { sales: { record: { key: string; offlineId: string } }[] };
    const keys = saved.sales.map((s) => s.record.key);
    expect(keys).to.have.length(2);
    const port = Number(new URL(rig.terminal.app.link.url).port);
    rig.store.server = await startTestVendor(rig.store.dir, { port });
    await waitFor(() => state().status.server.state === 'connected' && state().offline.waiting === 0, WAIT_MS, 'the offline sales forwarded');
    expect(state().offline.problem).to.equal(null);
    for (const key of keys) expect(await eventsWithKey(key)).to.equal(1);
    // Connected again: nothing is sent twice.
    await rig.terminal.app.whenSynced();
    for (const key of keys) expect(await eventsWithKey(key)).to.equal(1);
  });
});
