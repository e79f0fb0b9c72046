import { expect } from 'chai';
import fc from 'fast-check';
import type { LoyaltyProgram } from '../../core/economy.ts';
import { loyaltyProgramSchema } from '../../core/economy-requests.ts';
import { loyaltyUnits } from '../../core/loyalty.ts';

const PROGRAM: LoyaltyProgram = {
  token: 'ACME',
  rules: [
    { kind: 'per-amount', everyMinor: 100, units: 2 },
    { kind: 'per-product', gtins: ['5901234123457', '036000291452'], units: 5 },
    { kind: 'per-category', category: 'dairy', units: 3 },
  ],
  capPerSale: 50,
};

describe('core: loyalty earning', () => {
  it('adds the rules: whole amounts of cash, listed products per item, categories per item', () => {
    expect(loyaltyUnits(PROGRAM, { lines: [], cashPaidMinor: 0 })).to.equal(0);
    expect(loyaltyUnits(PROGRAM, { lines: [], cashPaidMinor: 99 })).to.equal(0);
    expect(loyaltyUnits(PROGRAM, { lines: [], cashPaidMinor: 250 })).to.equal(4);
    expect(loyaltyUnits(PROGRAM, { lines: [{ gtin: '5901234123457', qty: 2 }], cashPaidMinor: 0 })).to.equal(10);
    // A UPC-A listed with 12 digits matches the EAN-13 form the catalog keeps.
    expect(loyaltyUnits(PROGRAM, { lines: [{ gtin: '0036000291452', qty: 1 }], cashPaidMinor: 0 })).to.equal(5);
    expect(loyaltyUnits(PROGRAM, { lines: [{ gtin: '9001001001295', qty: 3, category: 'dairy' }], cashPaidMinor: 129 })).to.equal(9 + 2);
    expect(loyaltyUnits(PROGRAM, { lines: [{ gtin: '9001001001295', qty: 3, category: 'bakery' }], cashPaidMinor: 0 })).to.equal(0);
  });

  it('caps a sale at capPerSale, even when a rule alone would overflow', () => {
    expect(loyaltyUnits(PROGRAM, { lines: [{ gtin: '5901234123457', qty: 9_999 }], cashPaidMinor: 0 })).to.equal(50);
    const huge: LoyaltyProgram = { token: 'ACME', rules: [{ kind: 'per-amount', everyMinor: 1, units: 1_000_000 }], capPerSale: 7 };
    expect(loyaltyUnits(huge, { lines: [], cashPaidMinor: Number.MAX_SAFE_INTEGER })).to.equal(7);
  });

  it('is an integer between 0 and the cap for any sale', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gtin: fc.constantFrom('5901234123457', '4006381333931', '0036000291452'), qty: fc.integer({ min: 1, max: 9_999 }), category: fc.constantFrom(undefined, 'dairy', 'bakery') }), { maxLength: 20 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        (lines, cash) => {
          const u = loyaltyUnits(PROGRAM, { lines, cashPaidMinor: cash });
          return Number.isSafeInteger(u) && u >= 0 && u <= PROGRAM.capPerSale;
        },
      ),
    );
  });

  it('validates a programme in the config: known rule kinds, positive integers, bounded lists, no unknown fields', () => {
    expect(loyaltyProgramSchema.safeParse(PROGRAM).success).to.equal(true);
    const bad: unknown[] = [
      { ...PROGRAM, rules: [] },
      { ...PROGRAM, capPerSale: 0 },
      { ...PROGRAM, capPerSale: 1.5 },
      { ...PROGRAM, token: 'acme' },
      { ...PROGRAM, rules: [{ kind: 'per-visit', units: 1 }] },
      { ...PROGRAM, rules: [{ kind: 'per-amount', everyMinor: 0, units: 1 }] },
      { ...PROGRAM, rules: [{ kind: 'per-amount', everyMinor: 100, units: -1 }] },
      { ...PROGRAM, rules: [{ kind: 'per-product', gtins: ['abc'], units: 1 }] },
      { ...PROGRAM, rules: [{ kind: 'per-category', category: 'constructor', units: 1 }] },
      { ...PROGRAM, extra: true },
    ];
    for (const b of bad) expect(loyaltyProgramSchema.safeParse(b).success, JSON.stringify(b)).to.equal(false);
  });
});
