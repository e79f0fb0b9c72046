import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { XReport, ZReport } from '../../core/index.ts';
import { verifyStore } from '../../vendor-server/backup.ts';
import { writeConfig } from '../../vendor-server/config.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const PEN = '4006381333931'; // 450 minor
const BREAD = '5901234123457'; // 289 minor
const SAM = { staffId: 'sam', pin: '9999' };

describe('vendor server: Z reports per till', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let till1: { terminalId: string; socket: TerminalClient };
  let till2: { terminalId: string; socket: TerminalClient };
  const key = (t: { terminalId: string }) => `${t.terminalId}:${randomUUID()}`;
  const sell = async (t: { terminalId: string; socket: TerminalClient }, code: string) =>
    expectOk(await call(t.socket, 'sale:commit', { key: key(t), lines: [{ code, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 1000 }));

  before(async () => {
    store = await startDemoStore();
    await writeConfig(store.dir, { ...store.init.config, zReports: { perTerminal: true } });
    await store.restart();
    till1 = await store.openTill('Till 1');
    till2 = await store.openTill('Till 2');
  });
  after(async () => store.close());

  it('closes each till\'s day with its own numbered chain of its own sales, and verify checks both chains', async () => {
    await sell(till1, PEN);
    await sell(till2, BREAD);
    await sell(till1, PEN);
    const x2 = expectOk(await call<XReport>(till2.socket, 'report:x', { scope: 'day' }));
    expect([x2.terminalId, x2.totals.salesCount, x2.totals.grossMinor]).to.deep.equal([till2.terminalId, 1, 289]);

    const z1 = expectOk(await call<ZReport>(till1.socket, 'report:z', { key: key(till1), supervisor: SAM }));
    expect([z1.terminalId, z1.zNumber, z1.totals.salesCount, z1.totals.grossMinor]).to.deep.equal([till1.terminalId, 1, 2, 900]);
    // Till 2's day is still open: its next sale is counted in its own first Z.
    await sell(till2, PEN);
    const z2 = expectOk(await call<ZReport>(till2.socket, 'report:z', { key: key(till2), supervisor: SAM }));
    expect([z2.terminalId, z2.zNumber, z2.totals.salesCount, z2.totals.grossMinor, z2.grandTotalMinor]).to.deep.equal([till2.terminalId, 1, 2, 739, 739]);
    // Till 1 sells on into its next day, and its second Z chains to its first.
    await sell(till1, BREAD);
    const z1b = (await store.operator('POST', '/api/closures/z', { terminalId: till1.terminalId }, { 'idempotency-key': randomUUID() })).body as ZReport;
    expect([z1b.zNumber, z1b.totals.grossMinor, z1b.grandTotalMinor, z1b.fromSeq]).to.deep.equal([2, 289, 1189, z1.toSeq + 2]);
    expect(z1b.day > z1.day).to.equal(true);

    // A store-wide Z is refused where the store closes per till.
    const storeWide = await store.operator('POST', '/api/closures/z', {}, { 'idempotency-key': randomUUID() });
    expect([storeWide.status, storeWide.body.error.code]).to.deep.equal([400, 'CORE_ERR_VALIDATION']);

    const report = await verifyStore(store.dir);
    expect(report.closures.z).to.equal(3);
  });
});
