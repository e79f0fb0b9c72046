import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { ReceiptData, SaleAck, ShiftView, ZReport } from '../../core/index.ts';
import { runCli } from '../helpers/process.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { code, journalBytes, requireShifts } from './economy-helpers.ts';

const BREAD = '5901234123457'; // 289 minor
const SAM = { staffId: 'sam', pin: '9999' };

describe('vendor server: shifts refused, force-closed, reprints, and the operator\'s CLI', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till: { terminalId: string; credential: string; socket: TerminalClient };
  const key = () => `${till.terminalId}:${randomUUID()}`;

  before(async () => {
    store = await startDemoStore();
    await requireShifts(store);
    till = await store.openTill('Till 1');
  });
  after(async () => store.close());

  it('refuses bad counts, moves without a shift, a second shift and another cashier\'s sale, changing nothing', async () => {
    const before = await journalBytes(store.dir);
    const refusals: [string, unknown, string][] = [
      ['shift:open', { key: key(), count: { totalMinor: -1 } }, 'CORE_ERR_AMOUNT'],
      ['shift:open', { key: key(), count: { totalMinor: 1.5 } }, 'CORE_ERR_AMOUNT'],
      ['shift:open', { key: key(), count: { denominations: [] } }, 'CORE_ERR_VALIDATION'],
      ['shift:open', { key: key(), count: { denominations: [{ valueMinor: 0, count: 1 }] } }, 'CORE_ERR_VALIDATION'],
      ['shift:open', { key: key(), count: { denominations: [{ valueMinor: Number.MAX_SAFE_INTEGER, count: 2 }] } }, 'CORE_ERR_OVERFLOW'],
      ['shift:open', { key: key(), count: { totalMinor: 1, extra: 1 } }, 'CORE_ERR_VALIDATION'],
      ['shift:open', { key: 'nope', count: { totalMinor: 1 } }, 'CORE_ERR_VALIDATION'],
      ['shift:open', { key: `other:${randomUUID()}`, count: { totalMinor: 1 } }, 'VND_ERR_IDEMPOTENCY_KEY'],
      ['shift:cash-move', { key: key(), kind: 'paid-in', amountMinor: 100, reason: 'float top-up' }, 'VND_ERR_SHIFT_NOT_OPEN'],
      ['shift:cash-move', { key: key(), kind: 'stolen', amountMinor: 100, reason: 'x' }, 'CORE_ERR_VALIDATION'],
      ['shift:close', { key: key(), count: { totalMinor: 0 } }, 'VND_ERR_SHIFT_NOT_OPEN'],
      ['drawer:no-sale', { key: key(), reason: 'look', supervisor: SAM }, 'VND_ERR_SHIFT_REQUIRED'],
      ['report:x', { scope: 'shift' }, 'VND_ERR_SHIFT_NOT_OPEN'],
      ['report:x', { scope: 'week' }, 'CORE_ERR_VALIDATION'],
    ];
    for (const [event, payload, expected] of refusals) {
      expect(code(await call(till.socket, event as 'shift:open', payload)), `${event} ${JSON.stringify(payload)}`).to.equal(expected);
    }
    expect(await journalBytes(store.dir)).to.equal(before);

    expectOk(await call<ShiftView>(till.socket, 'shift:open', { key: key(), count: { totalMinor: 2000 } }));
    expect(code(await call(till.socket, 'shift:open', { key: key(), count: { totalMinor: 2000 } }))).to.equal('VND_ERR_SHIFT_OPEN');
    // Ana cannot open a second shift on another till either.
    const other = await store.openTill('Till 2');
    expect(code(await call(other.socket, 'shift:open', { key: `${other.terminalId}:${randomUUID()}`, count: { totalMinor: 0 } }))).to.equal('VND_ERR_SHIFT_OPEN');
    // Sam signs in on ana's till: her shift is not his to sell in.
    expectOk(await call(till.socket, 'cashier:login', SAM));
    const sale = await call(till.socket, 'sale:commit', { key: key(), lines: [{ code: BREAD, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 289 });
    expect(code(sale)).to.equal('VND_ERR_SHIFT_OTHER_CASHIER');
    expectOk(await call(till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  });

  it('counts receipt reprints on the server, one more each time, in the journal', async () => {
    const sale = expectOk(await call<SaleAck>(till.socket, 'sale:commit', { key: key(), lines: [{ code: BREAD, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 300 }));
    const first = expectOk(await call<ReceiptData & { reprintCount: number }>(till.socket, 'receipt:reprint', { saleId: sale.saleId }));
    const second = expectOk(await call<ReceiptData & { reprintCount: number }>(till.socket, 'receipt:reprint', { saleId: sale.saleId }));
    expect([first.reprintCount, second.reprintCount]).to.deep.equal([1, 2]);
    expect(second.sale.saleId).to.equal(sale.saleId);
    expect(code(await call(till.socket, 'receipt:reprint', { saleId: 'S9999999999' }))).to.equal('VND_ERR_SALE_UNKNOWN');
    // Signed out, the till may not journal a reprint.
    expectOk(await call(till.socket, 'cashier:logout', {}));
    expect(code(await call(till.socket, 'receipt:reprint', { saleId: sale.saleId }))).to.equal('VND_ERR_CASHIER_REQUIRED');
    await store.restart();
    // The till's access credential outlives the restart: it connects and signs in again.
    const socket = await store.connect(till.credential);
    expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    till = { ...till, socket };
    const third = expectOk(await call<ReceiptData & { reprintCount: number }>(till.socket, 'receipt:reprint', { saleId: sale.saleId }));
    expect(third.reprintCount).to.equal(3);
  });

  it('lets a supervisor force-close a shift left open through the CLI, and the CLI closes the day', async () => {
    const shiftId = store.server.cashierDay.currentShift(till.terminalId)?.shiftId ?? '';
    expect(shiftId).to.match(/^sh-\d+$/);
    const target = ['--data-dir', store.dir, '--url', store.server.url];
    process.env['MALLPOS_OPERATOR_TOKEN'] = store.init.operatorToken;
    try {
      const open = await runCli(['shifts', '--status', 'open', ...target]);
      expect(open.code, open.stderr).to.equal(0);
      expect((JSON.parse(open.stdout) as ShiftView[]).map((s) => s.shiftId)).to.deep.equal([shiftId]);

      // The Z waits for the open shift.
      const early = await runCli(['close-day', ...target]);
      expect(early.code).to.equal(1);
      expect(early.stderr).to.include('[VND_ERR_SHIFTS_STILL_OPEN]');

      // A cashier's PIN does not force-close; a wrong PIN neither; the supervisor's does.
      process.env['MALLPOS_SUPERVISOR_PIN'] = '1234';
      const byCashier = await runCli(['force-close-shift', shiftId, '--supervisor', 'ana', '--reason', 'till crashed', ...target]);
      expect(byCashier.stderr).to.include('[VND_ERR_SUPERVISOR_REQUIRED]');
      process.env['MALLPOS_SUPERVISOR_PIN'] = '0000';
      const wrong = await runCli(['force-close-shift', shiftId, '--supervisor', 'sam', '--reason', 'till crashed', ...target]);
      expect(wrong.stderr).to.include('[VND_ERR_PIN]');
      expect(store.server.cashierDay.currentShift(till.terminalId)?.status).to.equal('open');
      process.env['MALLPOS_SUPERVISOR_PIN'] = SAM.pin;
      const forced = await runCli(['force-close-shift', shiftId, '--supervisor', 'sam', '--reason', 'till crashed', '--counted', '2289', ...target]);
      expect(forced.code, forced.stderr).to.equal(0);
      const view = JSON.parse(forced.stdout) as ShiftView;
      expect(view.forcedBy).to.equal('sam');
      expect(view.expectedMinor).to.equal(2000 + 300 - 11);
      expect(view.overShortMinor).to.equal(2289 - 2289);
      const again = await runCli(['force-close-shift', shiftId, '--supervisor', 'sam', '--reason', 'till crashed', ...target]);
      expect(again.stderr).to.include('[VND_ERR_SHIFT_NOT_OPEN]');

      const z = await runCli(['close-day', '--key', 'z-cli-0001', ...target]);
      expect(z.code, z.stderr).to.equal(0);
      const report = JSON.parse(z.stdout) as ZReport;
      expect(report.zNumber).to.equal(1);
      expect(report.totals.salesCount).to.equal(1);
      expect(report.totals.overShortMinor).to.equal(0);
      const zAgain = await runCli(['close-day', '--key', 'z-cli-0001', ...target]);
      expect(JSON.parse(zAgain.stdout)).to.deep.equal(report);
      const listed = await runCli(['closures', '--kind', 'Z', ...target]);
      expect((JSON.parse(listed.stdout) as ZReport[]).map((c) => c.zNumber)).to.deep.equal([1]);
      const x = await runCli(['x-report', ...target]);
      expect(JSON.parse(x.stdout).totals.salesCount).to.equal(0);

      delete process.env['MALLPOS_OPERATOR_TOKEN'];
      const noToken = await runCli(['shifts', ...target]);
      expect(noToken.stderr).to.include('[VND_ERR_UNAUTHENTICATED]');
    } finally {
      delete process.env['MALLPOS_OPERATOR_TOKEN'];
      delete process.env['MALLPOS_SUPERVISOR_PIN'];
    }
  });
});
