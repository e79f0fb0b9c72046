import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { businessDay, type PeriodClosureReport, type ZReport } from '../../core/index.ts';
import { verifyStore } from '../../vendor-server/backup.ts';
import { CashierDayService } from '../../vendor-server/cashier-day/service.ts';
import { dataPaths, loadKeys } from '../../vendor-server/config.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { LedgerService } from '../../vendor-server/ledger/service.ts';
import { openLedger, type OpenedLedger } from '../../vendor-server/ledger/store.ts';
import { tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931'; // 450 minor

describe('vendor server: business days, month and year closures', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let opened: OpenedLedger;
  let ledger: LedgerService;
  let day: CashierDayService;
  let now = new Date('2026-12-30T10:00:00Z');
  const clock = () => now;
  const till = { terminal: 't001', cashier: 'ana' };
  const sell = () => ledger.commitSale(till, { key: `t001:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 450 });

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-periods-'));
    const init = await initVendor({ dataDir: dir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
    opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId: init.config.vendorId });
    ledger = new LedgerService({ vendorId: init.config.vendorId, name: init.config.storeName, address: [], currency: 'EUR' }, opened.state, opened.journal, {}, clock);
    // The store is one hour east of UTC.
    day = new CashierDayService(ledger, await loadKeys(dir), { shiftsRequired: false, utcOffsetMinutes: 60, zPerTerminal: false }, clock);
  });
  after(async () => {
    await opened.journal.close();
    await cleanup();
  });

  it('names business days at the store\'s offset, and the day after a Z is the next one', () => {
    expect(businessDay('2026-12-30T23:30:00Z', 60, null)).to.equal('2026-12-31');
    expect(businessDay('2026-12-30T22:59:59Z', 60, null)).to.equal('2026-12-30');
    expect(businessDay('2026-12-30T10:00:00Z', 0, '2026-12-30')).to.equal('2026-12-31');
    expect(businessDay('2026-12-30T10:00:00Z', 0, '2026-12-31')).to.equal('2027-01-01');
  });

  it('closes the month and the year of the Z reports when the first day of the next one is closed, chained and summed', async () => {
    await sell();
    const z1 = await day.closeDay(till, `t001:${randomUUID()}`);
    expect(z1.day).to.equal('2026-12-30');
    // 23:30 UTC is already the 31st in the store.
    now = new Date('2026-12-30T23:30:00Z');
    await sell();
    await sell();
    const z2 = await day.closeDay(till, `t001:${randomUUID()}`);
    expect(z2.day).to.equal('2026-12-31');
    expect(z2.totals.salesCount).to.equal(2);
    expect(await day.listClosures('month')).to.deep.equal([]);

    now = new Date('2027-01-01T09:00:00Z');
    await sell();
    const z3 = await day.closeDay(till, `t001:${randomUUID()}`);
    expect(z3.day).to.equal('2027-01-01');
    const months = (await day.listClosures('month')) as PeriodClosureReport[];
    const years = (await day.listClosures('year')) as PeriodClosureReport[];
    expect(months.map((m) => [m.number, m.period, m.fromZ, m.toZ])).to.deep.equal([[1, '2026-12', 1, 2]]);
    expect(years.map((y) => [y.number, y.period, y.fromZ, y.toZ])).to.deep.equal([[1, '2026', 1, 2]]);
    const month = months[0] as PeriodClosureReport;
    expect(month.totals.salesCount).to.equal(z1.totals.salesCount + z2.totals.salesCount);
    expect(month.totals.netMinor).to.equal(z1.totals.netMinor + z2.totals.netMinor);
    expect(month.grandTotalMinor).to.equal(z2.grandTotalMinor);
    expect(month.prevHash).to.equal('0'.repeat(64));
    // The Z chain runs through: each names the hash of the one before.
    const zs = (await day.listClosures('Z')) as ZReport[];
    expect(zs.map((z) => z.zNumber)).to.deep.equal([1, 2, 3]);
    expect(zs[1]?.prevHash).to.not.equal('0'.repeat(64));
    expect(z3.grandTotalMinor).to.equal(450 * 4);

    // verify agrees with every closure.
    await opened.journal.flushed();
    const report = await verifyStore(dir);
    expect(report.closures).to.deep.include({ z: 3, months: 1, years: 1, lastZ: 3, grandTotalMinor: 1800 });
  });

  it('refuses an event dated before the last Z (a clock set back), and journals nothing', async () => {
    const seq = ledger.state.seq;
    now = new Date('2027-01-01T08:00:00Z');
    const refused = await sell().catch((e: { code?: string }) => e);
    expect((refused as { code?: string }).code).to.equal('VND_ERR_PERIOD_CLOSED');
    expect(ledger.state.seq).to.equal(seq);
    now = new Date('2027-01-01T10:00:00Z');
    await sell();
    expect(ledger.state.seq).to.equal(seq + 1);
  });
});
