import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MallposError, type CatalogView, type OfflineLimits } from '../../core/index.ts';
import { CatalogCopy } from '../../terminal/catalog-copy.ts';
import { OfflineSales, type OfflineSaleDraft } from '../../terminal/offline-sales.ts';

const LIMITS: OfflineLimits = { maxSales: 3, maxTotalMinor: 2_000, maxOutageS: 600, catalogMaxAgeS: 60 };

function draft(totalMinor: number): OfflineSaleDraft {
  return {
    catalogVersion: 4,
    cashier: 'ana',
    currency: 'EUR',
    lines: [{ code: '4006381333931', name: 'Pen', qty: 1, unitPriceMinor: totalMinor, totalMinor }],
    totalMinor,
    cashTenderedMinor: totalMinor,
    changeMinor: 0,
  };
}

function catalog(version: number, priceMinor: number): CatalogView {
  return {
    version,
    at: '2026-11-30T20:00:00.000Z',
    currency: 'EUR',
    products: [{ gtin: '4006381333931', name: 'Pen', priceMinor, currency: 'EUR', tokenPrices: { ACME: 90 } }],
    offlineLimits: LIMITS,
  };
}

async function refusedWith(p: Promise<unknown>): Promise<MallposError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MallposError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('terminal: offline sales store', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mallpos-offline-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('numbers sales with the terminal id and a counter that is never reused across a reopen, even after forwarding', async () => {
    const now = Date.parse('2026-11-30T20:00:00.000Z');
    let sales = await OfflineSales.open(dir, 'till-1');
    await sales.contact(now);
    const a = await sales.record(draft(100), LIMITS, now + 1_000);
    const b = await sales.record(draft(200), LIMITS, now + 2_000);
    expect([a.record.offlineId, b.record.offlineId]).to.deep.equal(['till-1-1', 'till-1-2']);
    expect(a.record.key).to.match(/^till-1:[0-9a-f-]{36}$/);
    expect(a.record.key).to.not.equal(b.record.key);
    await sales.markPrinted(a.record.offlineId);
    await sales.markPrinted(b.record.offlineId);
    for (const e of [a, b]) await sales.markForwarded({ offlineId: e.record.offlineId, saleId: `S${e.record.counter}`, seq: e.record.counter, receivedAt: new Date(now).toISOString(), repeated: false, priceDifferences: [] }, now + 3_000);
    expect(sales.entries()).to.have.length(0);

    sales = await OfflineSales.open(dir, 'till-1');
    const c = await sales.record(draft(100), LIMITS, now + 4_000);
    expect(c.record.offlineId).to.equal('till-1-3');
    expect(sales.summary()).to.include({ waiting: 1, waitingTotalMinor: 100, lastForwardedAt: new Date(now + 3_000).toISOString() });
  });

  it('keeps a recorded sale, unprinted and waiting, for the next process', async () => {
    const now = Date.now();
    const first = await OfflineSales.open(dir, 'till-1');
    await first.contact(now);
    const e = await first.record(draft(450), LIMITS, now);
    const again = await OfflineSales.open(dir, 'till-1');
    expect(again.entries()).to.deep.equal([{ record: e.record, printed: false, forwarded: null }]);
    expect(again.waiting().map((w) => w.record.offlineId)).to.deep.equal(['till-1-1']);
  });

  it('refuses beyond the count, the total value and the outage length, and records nothing then', async () => {
    const now = Date.parse('2026-11-30T20:00:00.000Z');
    const sales = await OfflineSales.open(dir, 'till-1');
    expect((await refusedWith(sales.record(draft(100), LIMITS, now))).message).to.match(/never reached the store server/);
    await sales.contact(now);
    expect((await refusedWith(sales.record(draft(2_001), LIMITS, now))).message).to.match(/over the most this till may hold/);
    await sales.record(draft(100), LIMITS, now);
    await sales.record(draft(100), LIMITS, now);
    await sales.record(draft(100), LIMITS, now);
    const full = await refusedWith(sales.record(draft(100), LIMITS, now));
    expect(full.code).to.equal('POS_ERR_OFFLINE');
    expect(full.message).to.match(/3 offline sales are waiting.*the till stops/);
    const late = await OfflineSales.open(dir, 'till-1');
    expect(late.nextCounter).to.equal(4);
    const outage = late.refusal({ ...LIMITS, maxSales: 10 }, 100, now + 601_000);
    expect(outage).to.match(/unreachable for 601 s.*the till stops/);
  });

  it('keeps the outage clock across a restart', async () => {
    const now = Date.parse('2026-11-30T20:00:00.000Z');
    const sales = await OfflineSales.open(dir, 'till-1');
    await sales.contact(now);
    const reopened = await OfflineSales.open(dir, 'till-1');
    expect(reopened.summary().lastContactAt).to.equal(new Date(now).toISOString());
    expect(reopened.refusal(LIMITS, 100, now + 599_000)).to.equal(null);
    expect(reopened.refusal(LIMITS, 100, now + 700_000)).to.match(/unreachable for 700 s/);
  });

  it('says when every change asked for is on disk, so a closing till leaves no write behind it', async () => {
    const now = Date.parse('2026-11-30T20:00:00.000Z');
    const sales = await OfflineSales.open(dir, 'till-1');
    // Not awaited, as the till's clock tick asks for it.
    void sales.contact(now);
    void sales.contact(now + 5_000);
    await sales.settled();
    const onDisk = JSON.parse(await readFile(join(dir, 'offline-sales.json'), 'utf8')) as { lastContactAt: string };
    expect(onDisk.lastContactAt).to.equal(new Date(now + 5_000).toISOString());
  });

  it('refuses a file of another terminal or with sales out of order rather than reuse numbers', async () => {
    const sales = await OfflineSales.open(dir, 'till-1');
    await sales.contact();
    await sales.record(draft(100), LIMITS);
    expect((await refusedWith(OfflineSales.open(dir, 'till-2'))).code).to.equal('POS_ERR_CONFIG');
    const file = join(dir, 'offline-sales.json');
    const s = JSON.parse(await readFile(file, 'utf8')) as { nextCounter: number };
    s.nextCounter = 1;
    await writeFile(file, JSON.stringify(s));
    expect((await refusedWith(OfflineSales.open(dir, 'till-1'))).message).to.match(/out of order/);
  });
});

describe('terminal: catalog copy', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mallpos-catalog-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the newest version durably, ignores an older answer and says when it is stale', async () => {
    const now = Date.parse('2026-11-30T20:00:00.000Z');
    const copy = await CatalogCopy.open(dir);
    expect(copy.version).to.equal(null);
    expect(copy.lookup('4006381333931')).to.equal(null);
    expect(await copy.accept(catalog(4, 450), now)).to.equal(true);
    expect(await copy.accept(catalog(3, 999), now)).to.equal(false);
    const reopened = await CatalogCopy.open(dir);
    expect(reopened.version).to.equal(4);
    expect(reopened.lookup('4006381333931')?.priceMinor).to.equal(450);
    expect(reopened.limits).to.deep.equal(LIMITS);
    expect(reopened.status(now + 30_000)).to.include({ version: 4, ageS: 30, stale: false });
    expect(reopened.status(now + 61_000)).to.include({ ageS: 61, stale: true });
    // The same version confirms the copy current again.
    expect(await reopened.accept(catalog(4, 450), now + 61_000)).to.equal(false);
    expect(reopened.status(now + 62_000)).to.include({ ageS: 1, stale: false });
  });

  it('refuses a malformed catalog and keeps the old copy', async () => {
    const copy = await CatalogCopy.open(dir);
    await copy.accept(catalog(1, 450));
    const bad = { ...catalog(2, 450), products: [{ gtin: '1', name: 'x', priceMinor: 1.5, currency: 'EUR', tokenPrices: {} }] };
    expect((await refusedWith(copy.accept(bad))).code).to.equal('POS_ERR_OFFLINE');
    expect((await CatalogCopy.open(dir)).lookup('4006381333931')?.priceMinor).to.equal(450);
  });
});
