import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { writeFileDurable } from '../../platform/storage/index.ts';
import type { PendingSale } from '../../terminal/app.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { waitFor } from '../helpers/browser.ts';
import { http } from '../helpers/http.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { linkInstrumentStore, startInstrumentMall, type InstrumentMall } from '../vendor-server/instruments-rig.ts';

const WAIT_MS = 30_000;
const PEN = '4006381333931'; // 45 MALL

/**
 * A till that stopped while completing a sale paid by a gift certificate: the sale's key
 * and body (the certificate's signed form with it) are on the till's disk, so the restarted
 * till sends the same sale again and learns its outcome. Committed once, reserved at the
 * mall once, however often the till restarts in between.
 */
describe('e2e: a till restarted while completing a sale paid by a gift certificate', function () {
  this.timeout(120_000);
  let mall: InstrumentMall;
  let server: RunningVendorServer;
  let dataDir: string;
  let terminalId: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-instruments-till-'));
    mall = await startInstrumentMall(join(root, 'mall'));
    const vendorDir = join(root, 'vendor');
    const init = await linkInstrumentStore(vendorDir, mall);
    server = await startTestVendor(vendorDir);
    dataDir = await mkdtemp(join(tmpdir(), 'mallpos-instruments-restart-'));
    const created = await http(`${server.url}/api/terminals`, 'POST', { name: 'Till 1' }, { authorization: `Bearer ${init.operatorToken}` });
    terminalId = (await pairTerminal(dataDir, server.url, created.body.pairingCode as string)).terminalId;
  });
  after(async () => {
    await server?.close();
    await mall?.close();
    await rm(dataDir, { recursive: true, force: true });
    await cleanup?.();
  });

  const start = async (): Promise<RunningTerminal> => {
    const t = await startTerminal({ dataDir, scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, drawer: false });
    await waitFor(() => t.app.state().status.server.state === 'connected', WAIT_MS, 'the till connected');
    return t;
  };

  it('sends the same sale again after each restart: one sale, one reservation', async () => {
    const { code, compact } = await mall.issue('gift', 200);
    const pending: PendingSale = {
      key: `${terminalId}:${randomUUID()}`,
      body: { lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 0, instruments: [{ instrument: compact }] },
      startedAt: new Date().toISOString(),
    };
    // The till stopped right after writing the sale, before its first send.
    await writeFileDurable(join(dataDir, 'pending-sale.json'), JSON.stringify(pending));
    let till = await start();
    // A new key needs a signed-in cashier: the sale waits for one, then goes.
    await waitFor(() => till.app.state().completing?.waiting?.for === 'cashier', WAIT_MS, 'the sale waiting for a cashier');
    await till.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await till.app.command({ type: 'complete' });
    await till.app.whenIdle();
    expect(till.app.state().message?.text).to.include(`155 MALL remain on ${code}`);
    const seq = server.ledger.state.seq;
    const calls = mall.reserveCalls;
    expect(server.ledger.state.keys.get(pending.key)).to.be.a('number');
    await till.close();

    // Stopped again after the store committed it, before the till noted it: sent again, learnt, not charged twice.
    await writeFileDurable(join(dataDir, 'pending-sale.json'), JSON.stringify(pending));
    till = await start();
    await waitFor(() => till.app.state().completing === null && (till.app.state().message?.text ?? '').includes('complete'), WAIT_MS, 'the sale learnt again');
    expect(till.app.state().message?.text).to.include(`155 MALL remain on ${code}`);
    expect(server.ledger.state.seq).to.equal(seq);
    expect(mall.reserveCalls).to.equal(calls);
    expect(mall.instruments.get(code)?.remainingUnits).to.equal(155);
    await till.close();
  });
});
