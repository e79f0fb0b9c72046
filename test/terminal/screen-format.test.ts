import { expect } from 'chai';
import fc from 'fast-check';
import { formatMinor as coreFormatMinor } from '../../core/index.ts';
import { formatMinor, formatMinorPlain, minorPerUnit, parseMoney } from '../../terminal/screen/format.js';

const CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY', 'CHF', 'SEK'];

/**
 * The cashier screen formats money in the browser with its own module (it loads no
 * TypeScript); it must say exactly what the receipts and messages say, which core formats.
 */
describe('terminal/screen format.js', () => {
  it('formats every amount exactly as core does', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.constantFrom(...CURRENCIES), (minor, currency) => {
        expect(formatMinor(minor, currency)).to.equal(coreFormatMinor(minor, currency));
      }),
      { numRuns: 2_000 },
    );
  });

  it('reads back what it formats, without the symbol, as the cash dialog pre-fills it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999_999_999 }), fc.constantFrom(...CURRENCIES), (minor, currency) => {
        expect(parseMoney(formatMinorPlain(minor, currency), currency)).to.equal(minor);
        // A symbol the page knows is skipped; an unknown currency's code is not money.
        expect(parseMoney(formatMinor(minor, currency), currency)).to.equal(currency === 'SEK' ? null : minor);
      }),
    );
  });

  it('takes what a cashier types and refuses what is not money', () => {
    expect(parseMoney('20', 'EUR')).to.equal(2000);
    expect(parseMoney('12,5', 'EUR')).to.equal(1250);
    expect(parseMoney('€ 7.05', 'EUR')).to.equal(705);
    expect(parseMoney('350', 'JPY')).to.equal(350);
    expect(minorPerUnit('JPY')).to.equal(1);
    for (const bad of ['', '1.234', '-5', '1e3', '0x10', '12.', 'ten', '1 000 000 000 000 0']) expect(parseMoney(bad, 'EUR'), bad).to.equal(null);
  });
});
