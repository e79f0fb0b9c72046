import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import { bpsOf, type JournalEvent } from '../../core/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { startVendorServer, type RunningVendorServer } from '../../vendor-server/server.ts';
import { freePort, killHard, type ChildServer } from '../helpers/process.ts';
import { initMallAndVendor, registerDemoVendor, spawnMall, startTestMall, TEST_FEES, until, type MallAndVendor } from '../helpers/mall.ts';
import { silentLogger, tempDir } from '../helpers/vendor.ts';

const PEN = '4006381333931';
const MUESLI = '9001001000014';
const today = () => new Date().toISOString().slice(0, 10);
const op = { terminal: null, cashier: null };

async function vendorEvents(vendor: RunningVendorServer): Promise<JournalEvent[]> {
  const out: JournalEvent[] = [];
  for await (const rec of vendor.ledger.journal.iterate(1, vendor.ledger.journal.durableSeq)) out.push(JSON.parse(rec.text) as JournalEvent);
  return out;
}

/** What the mall should find in the vendor's own ledger. */
function expectedFromLedger(events: JournalEvent[], faceValues: Record<string, number>) {
  const redeemed: Record<string, number> = {};
  let transactions = 0;
  let grossMinor = 0;
  let royaltyMinor = 0;
  for (const e of events) {
    if (e.type !== 'sale') continue;
    transactions += 1;
    for (const [token, units] of Object.entries(e.data.debits)) {
      redeemed[token] = (redeemed[token] ?? 0) + units;
      const gross = units * (faceValues[token] ?? 0);
      grossMinor += gross;
      royaltyMinor += bpsOf(gross, TEST_FEES.royaltyBps);
    }
  }
  return { redeemed, transactions, grossMinor, royaltyMinor };
}

describe('e2e: the vendor server syncs with the mall', function () {
  this.timeout(600_000);
  let cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
    cleanups = [];
  });

  it('records mall allotments once, ships every event, and the statement matches the vendor ledger', async () => {
    const { dir, cleanup } = await tempDir('mallpos-sync-');
    cleanups.push(cleanup);
    const setup: MallAndVendor = await initMallAndVendor(dir);
    const mall: RunningMall = await startTestMall(setup.mallDir);
    cleanups.unshift(() => mall.close());
    const admin = new MallAdminClient(mall.url, setup.adminToken);
    await registerDemoVendor(admin, setup.vendorDir);
    const allotment = await admin.allot({ vendor: 'acme', token: 'MALL', units: 50_000, reference: 'float 2026-11' });

    const start = () =>
      startVendorServer({ dataDir: setup.vendorDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, mallUrl: mall.url, syncOverrides: { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 500 } });
    let vendor = await start();
    cleanups.unshift(() => vendor.close());
    await until('allotment in the float', () => (vendor.ledger.float()['MALL'] === 50_000 ? true : undefined));

    const customer = setup.vendorInit.demo?.customers[0];
    if (customer === undefined) throw new Error('demo customer');
    await vendor.ledger.issueTokens(op, `op:${randomUUID()}`, { customerId: customer.id, token: 'MALL', units: 1_000, reason: 'purchase' });
    await vendor.ledger.issueTokens(op, `op:${randomUUID()}`, { customerId: customer.id, token: 'ACME', units: 2_000, reason: 'reward' });
    const sales = [];
    for (let i = 0; i < 12; i++) {
      const token = i % 2 === 0 ? 'MALL' : 'ACME';
      sales.push(await vendor.ledger.commitSale({ terminal: 't001', cashier: null }, { key: `t001:${randomUUID()}`, lines: [{ code: i % 3 === 0 ? MUESLI : PEN, qty: 1 }], card: customer.card, tenders: [{ token }], cashTenderedMinor: 0 }));
    }
    const refunded = sales[0];
    if (refunded === undefined) throw new Error('a sale');
    await vendor.ledger.refundSale({ terminal: 't001', cashier: null }, { key: `t001:${randomUUID()}`, saleId: refunded.saleId, reason: 'test', supervisorId: 'sam' });

    expect(await vendor.sync?.drain(60_000)).to.equal(true);
    const cursor = await admin.cursor('acme');
    expect(cursor.lastEventSeq).to.equal(vendor.ledger.state.seq);
    const status = await vendor.sync?.status();
    expect(status?.eventsWaiting).to.equal(0);
    expect(status?.lastError).to.equal(null);
    expect(status?.flaggedEvents).to.equal(0);

    // A restart pulls the snapshot again: the allotment stays recorded once.
    const cached = (await vendor.sync?.status())?.snapshotIssuedAt;
    await vendor.close();
    vendor = await start();
    // Two fresh pulls: pulls run one after another, so the first was applied in full when the second arrives.
    const issued = new Set([cached]);
    await until('the snapshot pulled twice after the restart', async () => {
      issued.add((await vendor.sync?.status())?.snapshotIssuedAt);
      return issued.size >= 3 ? true : undefined;
    });
    expect(vendor.ledger.float()['MALL']).to.equal(50_000 - 1_000);
    const allotmentEvents = (await vendorEvents(vendor)).filter((e) => e.type === 'allotment' && e.data.reference === allotment.id);
    expect(allotmentEvents).to.have.length(1);

    // The statement, fetched and verified by the vendor server, equals its own ledger.
    const res = await fetch(`${vendor.url}/api/mall/statements?from=${today()}&to=${today()}`, { headers: { authorization: `Bearer ${setup.vendorInit.operatorToken}` } });
    expect(res.status).to.equal(200);
    const statement = (await res.json()) as { vendor: string; totals: { transactions: number; refunds: number; tokensRedeemed: Record<string, number>; grossMinor: number; royaltyMinor: number; reimbursementReceivableMinor: number }; completeness: { gap: unknown; alarms: unknown[]; flaggedEvents: number } };
    const events = await vendorEvents(vendor);
    const expected = expectedFromLedger(events, { MALL: 10, ACME: 5, SUNNY: 10 });
    expect(statement.vendor).to.equal('acme');
    expect(statement.totals.transactions).to.equal(expected.transactions);
    expect(statement.totals.tokensRedeemed).to.deep.equal(expected.redeemed);
    expect(statement.totals.grossMinor).to.equal(expected.grossMinor);
    expect(statement.totals.refunds).to.equal(1);
    const refundedRoyalty = Object.entries(refunded.debits).reduce((n, [token, units]) => n + bpsOf(units * ({ MALL: 10, ACME: 5 } as Record<string, number>)[token]!, TEST_FEES.royaltyBps), 0);
    expect(statement.totals.royaltyMinor).to.equal(expected.royaltyMinor - refundedRoyalty);
    expect(statement.completeness.gap).to.equal(null);
    expect(statement.completeness.alarms).to.deep.equal([]);
    expect(statement.completeness.flaggedEvents).to.equal(0);
    const positions = await admin.positions();
    expect(positions.sumMinor).to.equal(0);

    // Anyone holding the archive recomputes the same positions and statements, without the mall's database.
    await admin.statements(today(), today());
    const audit = await auditArchive(join(setup.mallDir, 'archive'));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.ok).to.equal(true);
    expect(audit.positions).to.deep.equal(positions.positions);
    expect(audit.statements).to.be.greaterThan(0);
  });

  it('keeps selling on the cached snapshot while the mall is away, and refuses mall tokens once it is too old', async () => {
    const { dir, cleanup } = await tempDir('mallpos-offline-');
    cleanups.push(cleanup);
    const setup = await initMallAndVendor(dir);
    // A mall whose clock runs 100 hours behind signs snapshots that are already old.
    let lagHours = 0;
    const mall = await startMallServer({ dataDir: setup.mallDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, clock: () => new Date(Date.now() - lagHours * 3_600_000) });
    cleanups.unshift(() => mall.close());
    const admin = new MallAdminClient(mall.url, setup.adminToken);
    await registerDemoVendor(admin, setup.vendorDir);
    await admin.allot({ vendor: 'acme', token: 'MALL', units: 10_000, reference: 'float' });
    const start = () => startVendorServer({ dataDir: setup.vendorDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, mallUrl: mall.url, syncOverrides: { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 200, snapshotMaxAgeHours: 72 } });
    let vendor = await start();
    await until('allotment in the float', () => (vendor.ledger.float()['MALL'] === 10_000 ? true : undefined));
    const customer = setup.vendorInit.demo?.customers[1];
    if (customer === undefined) throw new Error('demo customer');
    await vendor.ledger.issueTokens(op, `op:${randomUUID()}`, { customerId: customer.id, token: 'MALL', units: 500, reason: 'purchase' });
    const sell = (token: string) => vendor.ledger.commitSale({ terminal: 't001', cashier: null }, { key: `t001:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: customer.card, tenders: [{ token }], cashTenderedMinor: 0 });

    // The mall goes away: the store restarts on its cached snapshot and keeps selling.
    await vendor.close();
    await mall.close();
    vendor = await start();
    cleanups.unshift(() => vendor.close());
    const offline = await vendor.sync?.status();
    expect(offline?.snapshotIssuedAt).to.be.a('string');
    expect(offline?.snapshotStale).to.equal(false);
    expect((await sell('MALL')).debits).to.deep.equal({ MALL: 45 });
    await until('the outage is visible', async () => ((await vendor.sync?.status())?.lastError ?? undefined));

    // A snapshot older than 72 hours: mall tokens are refused with a plain reason; own tokens still sell.
    await vendor.close();
    lagHours = 100;
    const lagging = await startMallServer({ dataDir: setup.mallDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, clock: () => new Date(Date.now() - lagHours * 3_600_000) });
    cleanups.unshift(() => lagging.close());
    vendor = await startVendorServer({ dataDir: setup.vendorDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, mallUrl: lagging.url, syncOverrides: { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 200, snapshotMaxAgeHours: 72 } });
    await until('an old snapshot', async () => ((await vendor.sync?.status())?.snapshotStale === true ? true : undefined));
    const before = vendor.ledger.state.seq;
    let refused: { code?: string; message: string } | null = null;
    try {
      await sell('MALL');
    } catch (err) {
      refused = err as { code?: string; message: string };
    }
    expect(refused?.code).to.equal('VND_ERR_SNAPSHOT_STALE');
    expect(refused?.message).to.match(/MALL tokens cannot be taken now: the store has not heard from the mall for more than 72 hours/);
    expect(vendor.ledger.state.seq, 'nothing journalled for the refusal').to.equal(before);
    expect((await sell('ACME')).debits).to.deep.equal({ ACME: 90 });
  });

  it('delivers every batch exactly once across a mall outage during 10,000 sales', async () => {
    const { dir, cleanup } = await tempDir('mallpos-partition-');
    cleanups.push(cleanup);
    const setup = await initMallAndVendor(dir);
    const port = await freePort();
    let mallChild: ChildServer = await spawnMall(setup.mallDir, port);
    cleanups.unshift(async () => killHard(mallChild.child));
    const admin = new MallAdminClient(mallChild.url, setup.adminToken);
    await registerDemoVendor(admin, setup.vendorDir);

    const vendor = await startVendorServer({ dataDir: setup.vendorDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, mallUrl: mallChild.url, syncOverrides: { snapshotEveryMs: 500, batchAgeMs: 50, backoffBaseMs: 50, backoffMaxMs: 1_000 } });
    cleanups.unshift(() => vendor.close());
    await vendor.ledger.recordAllotment(op, `op:${randomUUID()}`, { token: 'ACME', units: 50_000_000, reference: 'more own tokens' });
    const customers = setup.vendorInit.demo?.customers ?? [];
    for (const c of customers) await vendor.ledger.issueTokens(op, `op:${randomUUID()}`, { customerId: c.id, token: 'ACME', units: 2_000_000, reason: 'reward' });

    const SALES = 10_000;
    let committed = 0;
    let killed = false;
    const worker = async (w: number) => {
      while (committed < SALES) {
        committed += 1;
        const c = customers[w % customers.length];
        if (c === undefined) throw new Error('customer');
        await vendor.ledger.commitSale({ terminal: 't001', cashier: null }, { key: `t001:${randomUUID()}`, lines: [{ code: PEN, qty: 1 + (w % 3) }, { code: MUESLI, qty: 1 }], card: c.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 });
        if (!killed && committed >= 2_500) {
          killed = true;
          await killHard(mallChild.child);
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, (_, w) => worker(w)));
    expect(killed).to.equal(true);
    const during = await vendor.sync?.status();
    expect(during?.eventsWaiting).to.be.greaterThan(0);
    expect(during?.lastError).to.be.a('string');

    mallChild = await spawnMall(setup.mallDir, port);
    expect(await vendor.sync?.drain(90_000)).to.equal(true);
    const cursor = await admin.cursor('acme');
    const vendorSync = await vendor.sync?.status();
    expect(cursor.lastEventSeq).to.equal(vendor.ledger.state.seq);
    expect(cursor.lastSeq).to.equal(vendorSync?.lastAckSeq);
    expect(await admin.alarms()).to.deep.equal([]);
    const metrics = await (await fetch(`${mallChild.url}/metrics`)).text();
    // Batches ingested by this second mall process plus those before the kill equal the cursor: no batch twice.
    expect(metrics).to.not.match(/mallpos_mall_batches_rejected_total\{code="MALL_ERR_BATCH_FORK"\}/);

    const [statement] = (await admin.statements(today(), today())).filter((s) => s.vendor === 'acme');
    if (statement === undefined) throw new Error('no statement for acme');
    const payload = statement.statement;
    const expected = expectedFromLedger(await vendorEvents(vendor), { MALL: 10, ACME: 5, SUNNY: 10 });
    expect(payload.totals.transactions).to.equal(expected.transactions);
    expect(payload.totals.transactions).to.equal(SALES);
    expect(payload.totals.tokensRedeemed).to.deep.equal(expected.redeemed);
    const audit = await auditArchive(join(setup.mallDir, 'archive'));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.batches).to.equal(cursor.lastSeq);
  });
});
