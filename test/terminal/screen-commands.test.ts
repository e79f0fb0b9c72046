import { expect } from 'chai';
import { commandSchema } from '../../terminal/screen-server.ts';

/** The cashier's day commands the page may send, and the malformed ones the terminal refuses before acting. */
describe('terminal screen commands: the cashier\'s day', () => {
  const ok = (cmd: unknown) => commandSchema.safeParse(cmd).success;

  it('takes counts as a total or as notes and coins, and the other day commands', () => {
    expect(ok({ type: 'openShift', count: { totalMinor: 15000 } })).to.equal(true);
    expect(ok({ type: 'closeShift', count: { denominations: [{ valueMinor: 5000, count: 2 }] } })).to.equal(true);
    expect(ok({ type: 'cashMove', kind: 'paid-out', amountMinor: 700, reason: 'window cleaner' })).to.equal(true);
    expect(ok({ type: 'noSale', staffId: 'sam', pin: '9999', reason: 'change' })).to.equal(true);
    expect(ok({ type: 'xReport', scope: 'day' })).to.equal(true);
    expect(ok({ type: 'zReport', staffId: 'sam', pin: '9999' })).to.equal(true);
    expect(ok({ type: 'closeShiftResult' })).to.equal(true);
  });

  it('refuses amounts that are not whole, safe and positive, and counts that are both or neither', () => {
    for (const amountMinor of [0, -100, 12.5, Number.MAX_SAFE_INTEGER + 2, '700']) {
      expect(ok({ type: 'cashMove', kind: 'paid-in', amountMinor, reason: 'x' }), String(amountMinor)).to.equal(false);
    }
    expect(ok({ type: 'cashMove', kind: 'gift', amountMinor: 100, reason: 'x' })).to.equal(false);
    expect(ok({ type: 'cashMove', kind: 'paid-in', amountMinor: 100, reason: '   ' })).to.equal(false);
    expect(ok({ type: 'openShift', count: { totalMinor: 100, denominations: [{ valueMinor: 100, count: 1 }] } })).to.equal(false);
    expect(ok({ type: 'openShift', count: {} })).to.equal(false);
    expect(ok({ type: 'openShift', count: { denominations: [] } })).to.equal(false);
    expect(ok({ type: 'openShift', count: { denominations: [{ valueMinor: 0, count: 1 }] } })).to.equal(false);
    expect(ok({ type: 'openShift', count: { denominations: [{ valueMinor: 100, count: -1 }] } })).to.equal(false);
    expect(ok({ type: 'openShift', count: { denominations: Array.from({ length: 41 }, () => ({ valueMinor: 100, count: 1 })) } })).to.equal(false);
  });

  it('refuses a no-sale or Z without a supervisor PIN, an unknown scope, and extra fields', () => {
    expect(ok({ type: 'noSale', staffId: 'sam', reason: 'change' })).to.equal(false);
    expect(ok({ type: 'noSale', staffId: 'sam', pin: '12', reason: 'change' })).to.equal(false);
    expect(ok({ type: 'zReport', staffId: 'sam', pin: 'abcd' })).to.equal(false);
    expect(ok({ type: 'xReport', scope: 'year' })).to.equal(false);
    expect(ok({ type: 'xReport', scope: 'shift', key: 'T1:chosen-by-the-page' })).to.equal(false);
    expect(ok(JSON.parse('{"type":"openShift","count":{"totalMinor":1},"__proto__":{"x":1}}'))).to.equal(false);
  });
});
