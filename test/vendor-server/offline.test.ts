import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { CatalogView, JournalEvent, OfflineSaleAck, OfflineSaleRecord, XReport } from '../../core/index.ts';
import { writeConfig } from '../../vendor-server/config.ts';
import { toSnapshot, type StateSnapshot } from '../../vendor-server/ledger/state.ts';
import { checkpointDifference } from '../../vendor-server/ledger/store.ts';
import { until } from '../helpers/process.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { requireShifts } from './economy-helpers.ts';

const PEN = '4006381333931'; // 450 minor in the demo catalog
const BREAD = '5901234123457'; // 289 minor

type Till = { terminalId: string; credential: string; socket: TerminalClient };

/** A till's offline record, consistent unless a test breaks it. */
function record(till: { terminalId: string }, counter: number, lines: { code: string; qty: number; unitPriceMinor: number }[], at = new Date().toISOString()): OfflineSaleRecord {
  const full = lines.map((l) => ({ code: l.code, name: l.code === PEN ? 'Pen' : 'Bread', qty: l.qty, unitPriceMinor: l.unitPriceMinor, totalMinor: l.unitPriceMinor * l.qty }));
  const totalMinor = full.reduce((s, l) => s + l.totalMinor, 0);
  const cashTenderedMinor = Math.ceil(totalMinor / 1000) * 1000;
  return {
    key: `${till.terminalId}:${randomUUID()}`,
    offlineId: `${till.terminalId}-${counter}`,
    counter,
    at,
    catalogVersion: 1,
    cashier: 'ana',
    currency: 'EUR',
    lines: full,
    totalMinor,
    cashTenderedMinor,
    changeMinor: cashTenderedMinor - totalMinor,
  };
}

async function exportJournal(store: DemoStore): Promise<JournalEvent[]> {
  const res = await store.operator('GET', '/api/ledger/export?format=jsonl');
  expect(res.status).to.equal(200);
  const lines = res.text.trim().split('\n');
  lines.pop(); // the trailer
  return lines.map((l) => (JSON.parse(l) as { event: JournalEvent }).event);
}

describe('vendor server: offline sales forwarded by the tills', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till1: Till;
  let till2: Till;

  before(async () => {
    store = await startDemoStore();
    till1 = await store.openTill('Till 1');
    till2 = await store.openTill('Till 2');
  });
  after(async () => store.close());

  it('serves the whole catalog with the offline limits, and pushes a newer version when a product changes', async () => {
    const first = expectOk(await call<CatalogView>(till1.socket, 'catalog:get', { sinceVersion: null }));
    expect(first.currency).to.equal('EUR');
    expect(first.products.find((p) => p.gtin === PEN)?.priceMinor).to.equal(450);
    expect(first.offlineLimits).to.deep.equal({ maxSales: 500, maxTotalMinor: 500_000, maxOutageS: 8 * 3600, catalogMaxAgeS: 24 * 3600 });
    expect(first.version).to.be.greaterThan(0);

    const pushed = new Promise<{ version: number }>((resolve) => till2.socket.once('catalog:changed', resolve));
    const up = await store.operator('PUT', '/api/products/9001001000014', { name: 'Tea', priceMinor: 199, tokenPrices: {} });
    expect(up.status, up.text).to.equal(200);
    const { version } = await pushed;
    expect(version).to.be.greaterThan(first.version);
    const second = expectOk(await call<CatalogView>(till2.socket, 'catalog:get', { sinceVersion: first.version }));
    expect(second.version).to.equal(version);
    expect(second.products.find((p) => p.gtin === '9001001000014')?.priceMinor).to.equal(199);

    const bad = await call(till1.socket, 'catalog:get', { sinceVersion: -1 });
    expect(!bad.ok && bad.error.code).to.equal('CORE_ERR_VALIDATION');
  });

  it('journals 50 interleaved offline sales of two tills once each, counts them in the totals and the X report, and a repeat changes nothing', async () => {
    const x0 = expectOk(await call<XReport>(till1.socket, 'report:x', { scope: 'day' }));
    const records: OfflineSaleRecord[] = [];
    const acks = new Map<string, OfflineSaleAck>();
    for (let i = 1; i <= 25; i++) {
      for (const till of [till1, till2]) {
        const r = record(till, i, [{ code: i % 2 === 0 ? PEN : BREAD, qty: 1 + (i % 3), unitPriceMinor: i % 2 === 0 ? 450 : 289 }]);
        records.push(r);
        const ack = expectOk(await call<OfflineSaleAck>(till.socket, 'offline-sale:forward', r));
        expect([ack.offlineId, ack.repeated, ack.priceDifferences]).to.deep.equal([r.offlineId, false, []]);
        acks.set(r.offlineId, ack);
      }
    }
    // Repeats of some keys (a forward whose ack was lost) get the original answer.
    const seqBefore = store.server.ledger.state.seq;
    for (const r of records.filter((_, i) => i % 7 === 0)) {
      const again = expectOk(await call<OfflineSaleAck>(r.offlineId.startsWith(till1.terminalId) ? till1.socket : till2.socket, 'offline-sale:forward', r));
      expect(again).to.deep.equal({ ...acks.get(r.offlineId), repeated: true });
    }
    expect(store.server.ledger.state.seq).to.equal(seqBefore);

    // An independent sum over the exported journal equals what the tills recorded.
    const journal = await exportJournal(store);
    const offline = journal.filter((e): e is Extract<JournalEvent, { type: 'sale' }> => e.type === 'sale' && e.data.offline !== undefined);
    const ids = offline.map((e) => e.data.offline?.offlineId);
    expect(new Set(ids).size).to.equal(ids.length);
    expect([...ids].sort()).to.deep.equal(records.map((r) => r.offlineId).sort());
    const tillSum = records.reduce((s, r) => s + r.totalMinor, 0);
    expect(offline.reduce((s, e) => s + e.data.totalMinor, 0)).to.equal(tillSum);
    for (const e of offline) {
      const r = records.find((x) => x.offlineId === e.data.offline?.offlineId) as OfflineSaleRecord;
      expect([e.terminal, e.cashier, e.key, e.data.customer, e.data.offline?.tillAt, e.data.offline?.receivedAt, e.at]).to.deep.equal([r.offlineId.slice(0, -(`-${r.counter}`.length)), 'ana', r.key, null, r.at, e.at, e.data.offline?.receivedAt]);
    }

    // The day's totals and the X report include them.
    const x1 = expectOk(await call<XReport>(till1.socket, 'report:x', { scope: 'day' }));
    expect(x1.totals.salesCount - x0.totals.salesCount).to.equal(50);
    expect(x1.totals.grossMinor - x0.totals.grossMinor).to.equal(tillSum);
    const day = (await store.operator('GET', '/api/totals')).body as { sales: number; grossMinor: number };
    expect(day.grossMinor).to.be.at.least(tillSum);
  });

  it('refuses every forged or broken forward and leaves the journal unchanged', async () => {
    const last1 = store.server.ledger.state.offlineTills[till1.terminalId]?.counter ?? 0;
    const next = last1 + 1;
    const good = record(till1, next, [{ code: PEN, qty: 2, unitPriceMinor: 450 }]);
    const seqBefore = store.server.ledger.state.seq;
    const refused = async (payload: unknown, code: string, socket = till1.socket) => {
      const ack = await call(socket, 'offline-sale:forward', payload);
      expect(ack.ok ? 'accepted' : ack.error.code, JSON.stringify(payload).slice(0, 200)).to.equal(code);
    };
    // Another till's number or key, sent by till 1.
    const other = record(till2, (store.server.ledger.state.offlineTills[till2.terminalId]?.counter ?? 0) + 1, [{ code: PEN, qty: 1, unitPriceMinor: 450 }]);
    await refused(other, 'VND_ERR_OFFLINE_NOT_OWN');
    await refused({ ...good, key: `${till2.terminalId}:${randomUUID()}` }, 'VND_ERR_OFFLINE_NOT_OWN');
    await refused({ ...good, offlineId: `${till2.terminalId}-${next}` }, 'VND_ERR_OFFLINE_NOT_OWN');
    // A number already journalled, with a new key and other content.
    await refused({ ...record(till1, last1, [{ code: BREAD, qty: 9, unitPriceMinor: 289 }]) }, 'VND_ERR_OFFLINE_ID_REUSED');
    // Totals that do not agree.
    await refused({ ...good, totalMinor: good.totalMinor - 1 }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, lines: [{ ...good.lines[0], totalMinor: 1 }], totalMinor: 1, changeMinor: good.cashTenderedMinor - 1 }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, cashTenderedMinor: good.totalMinor - 1, changeMinor: 0 }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, changeMinor: good.changeMinor + 100 }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, currency: 'USD' }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, cashier: 'nobody' }, 'VND_ERR_OFFLINE_INVALID');
    await refused({ ...good, totalMinor: 900.5 }, 'CORE_ERR_AMOUNT');
    await refused({ ...good, at: new Date(Date.now() + 24 * 3600_000).toISOString() }, 'VND_ERR_OFFLINE_INVALID');
    // A gap: the next number skipped.
    await refused(record(till1, next + 1, [{ code: PEN, qty: 1, unitPriceMinor: 450 }]), 'VND_ERR_OFFLINE_GAP');
    // Tokens or a card smuggled in fields the record does not have, and prototype keys.
    await refused({ ...good, tenders: [{ token: 'ACME', units: 5 }] }, 'CORE_ERR_VALIDATION');
    await refused({ ...good, card: '2000000000008' }, 'CORE_ERR_VALIDATION');
    await refused(JSON.parse(`{"__proto__":{"tenders":[{"token":"ACME"}]},${JSON.stringify(good).slice(1)}`), 'CORE_ERR_VALIDATION');
    await refused({ ...good, lines: [JSON.parse(`{"__proto__":{"x":1},${JSON.stringify(good.lines[0]).slice(1)}`)] }, 'CORE_ERR_VALIDATION');
    expect(store.server.ledger.state.seq).to.equal(seqBefore);

    // The good one still goes through; the same key with another body is a conflict.
    expectOk(await call<OfflineSaleAck>(till1.socket, 'offline-sale:forward', good));
    await refused({ ...good, lines: [{ ...good.lines[0], qty: 3, totalMinor: 1350 }], totalMinor: 1350, cashTenderedMinor: 2000, changeMinor: 650 }, 'VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(store.server.ledger.state.seq).to.equal(seqBefore + 1);
  });

  it('reports a price that differs from the catalog and journals the till\'s price', async () => {
    const next = (store.server.ledger.state.offlineTills[till2.terminalId]?.counter ?? 0) + 1;
    const r = record(till2, next, [
      { code: PEN, qty: 2, unitPriceMinor: 400 },
      { code: BREAD, qty: 1, unitPriceMinor: 289 },
    ]);
    const ack = expectOk(await call<OfflineSaleAck>(till2.socket, 'offline-sale:forward', r));
    expect(ack.priceDifferences).to.deep.equal([{ code: PEN, tillUnitMinor: 400, serverUnitMinor: 450 }]);
    const event = await store.server.ledger.readEvent(ack.seq);
    expect(event.type === 'sale' && [event.data.totalMinor, event.data.lines[0]?.unitPriceMinor, event.data.offline?.priceDifferences]).to.deep.equal([1089, 400, ack.priceDifferences]);
  });

  it('finds a checkpoint whose offline counters differ from the journal\'s', () => {
    const state = store.server.ledger.state;
    const snapshot = JSON.parse(JSON.stringify(toSnapshot(state))) as StateSnapshot;
    expect(checkpointDifference(snapshot, state)).to.equal(null);
    // A checkpoint edited to move a till's counter on would make the server refuse its next
    // offline sale as a gap, or accept a reused number: the audit names it.
    const forged = snapshot.offlineTills?.[till1.terminalId];
    if (forged === undefined) throw new Error('till 1 has offline sales');
    forged.counter += 1;
    expect(checkpointDifference(snapshot, state)).to.match(/offline sale counters/);
  });

  it('shows what each till holds in the operator API and /metrics, and raises an alarm when it does not forward', async () => {
    // A short alarm limit, so the test sees it raised without a long wait.
    await writeConfig(store.dir, { ...store.init.config, offline: { maxSales: 100, maxTotalMinor: 100_000, maxOutageS: 3600, catalogMaxAgeS: 600, forwardAlarmAfterS: 1 } });
    await store.restart();
    const socket = await store.connect(till1.credential);
    expectOk(await call(socket, 'offline:report', { waiting: 3, oldestAt: '2026-01-01T10:00:00.000Z', lastForwardedAt: null }));
    const bad = await call(socket, 'offline:report', { waiting: -1, oldestAt: null, lastForwardedAt: null });
    expect(!bad.ok && bad.error.code).to.equal('CORE_ERR_VALIDATION');
    const listed = async () => (await store.operator('GET', '/api/offline')).body as { limits: { forwardAlarmAfterS: number }; terminals: { terminalId: string; waiting: number; alarm: boolean; lastCounter: number }[] };
    const first = await listed();
    expect(first.limits.forwardAlarmAfterS).to.equal(1);
    expect(first.terminals.map((t) => [t.terminalId, t.waiting, t.lastCounter > 0])).to.deep.equal([[till1.terminalId, 3, true]]);
    await until('the forwarding alarm', async () => ((await listed()).terminals[0]?.alarm === true ? true : undefined), 30_000);
    const metrics = (await store.operator('GET', '/metrics')).text;
    expect(metrics).to.include(`mallpos_offline_sales_waiting{terminal="${till1.terminalId}"} 3`);
    expect(metrics).to.include(`mallpos_offline_forward_alarm{terminal="${till1.terminalId}"} 1`);
    // The till forwards everything: the alarm ends.
    expectOk(await call(socket, 'offline:report', { waiting: 0, oldestAt: null, lastForwardedAt: new Date().toISOString() }));
    expect((await listed()).terminals[0]?.alarm).to.equal(false);
    expect((await store.operator('GET', '/metrics')).text).to.include(`mallpos_offline_forward_alarm{terminal="${till1.terminalId}"} 0`);
  });
});

describe('vendor server: offline sales in the cashier\'s day', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let till: Till;

  before(async () => {
    store = await startDemoStore();
    await requireShifts(store);
    till = await store.openTill('Till 1');
  });
  after(async () => store.close());

  it('counts an offline sale in the till\'s open shift, and one from a day a Z closed in the open day, saying so', async () => {
    const key = () => `${till.terminalId}:${randomUUID()}`;
    expectOk(await call(till.socket, 'shift:open', { key: key(), count: { totalMinor: 5000 } }));
    const soldAt = new Date(Date.now() - 60_000).toISOString();
    const first = record(till, 1, [{ code: PEN, qty: 2, unitPriceMinor: 450 }], soldAt);
    const a1 = expectOk(await call<OfflineSaleAck>(till.socket, 'offline-sale:forward', first));
    expect(a1.afterZ).to.equal(false);
    const shift = expectOk(await call<{ cashSalesMinor: number; changeGivenMinor: number }>(till.socket, 'shift:current', {}));
    expect(shift.cashSalesMinor - shift.changeGivenMinor).to.equal(900);
    expectOk(await call(till.socket, 'shift:close', { key: key(), count: { totalMinor: 5900 } }));
    const z = expectOk(await call<{ totals: { salesCount: number; grossMinor: number } }>(till.socket, 'report:z', { key: key(), supervisor: { staffId: 'sam', pin: '9999' } }));
    expect([z.totals.salesCount, z.totals.grossMinor]).to.deep.equal([1, 900]);

    // Sold before that Z, forwarded after it: journalled into the open day, flagged as such.
    const late = record(till, 2, [{ code: BREAD, qty: 1, unitPriceMinor: 289 }], soldAt);
    const a2 = expectOk(await call<OfflineSaleAck>(till.socket, 'offline-sale:forward', late));
    expect(a2.afterZ).to.equal(true);
    const event = await store.server.ledger.readEvent(a2.seq);
    expect(event.type === 'sale' && event.data.offline?.afterZ).to.equal(true);
    const x = expectOk(await call<XReport>(till.socket, 'report:x', { scope: 'day' }));
    expect([x.totals.salesCount, x.totals.grossMinor]).to.deep.equal([1, 289]);
  });
});
