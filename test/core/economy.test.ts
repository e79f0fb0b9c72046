import { expect } from 'chai';
import fc from 'fast-check';
import { quoteExchange, quoteMatches } from '../../core/economy.ts';
import type { TokenType } from '../../core/token-types.ts';
import { expectCode } from './helpers.ts';

function tt(code: string, issuer: string, faceValueMinor: number, currency = 'EUR'): TokenType {
  return { code, name: code, kind: 'vendor', issuer, faceValueMinor, currency, acceptedBy: '*' };
}

describe('core/economy: exchange between issuers', () => {
  it('prices by the two face values less the service charge, the remainder staying with the surrendered tokens\' issuer', () => {
    // 37 tokens of 25c = 925c; 1% charge = 9.25c -> 9 (half up rounds .25 down); 916c buys 9 tokens of 100c; 16c remain.
    const q = quoteExchange(tt('ACME', 'acme', 25), 37, tt('BETA', 'beta', 100), 100);
    expect(q).to.deep.equal({
      from: { token: 'ACME', issuer: 'acme', units: 37, faceValueMinor: 25 },
      to: { token: 'BETA', issuer: 'beta', units: 9, faceValueMinor: 100 },
      currency: 'EUR',
      grossMinor: 925,
      serviceBps: 100,
      serviceChargeMinor: 9,
      valueOutMinor: 900,
      remainderMinor: 16,
    });
  });

  it('never gives the customer more value than they gave up less the charge (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        (fromFace, toFace, units, bps) => {
          let q;
          try {
            q = quoteExchange(tt('A', 'a', fromFace), units, tt('B', 'b', toFace), bps);
          } catch {
            // Too small to buy one token: nothing is exchanged.
            return units * fromFace - Math.round((units * fromFace * bps) / 10_000) < toFace + 1;
          }
          expect(q.valueOutMinor + q.serviceChargeMinor + q.remainderMinor).to.equal(q.grossMinor);
          expect(q.remainderMinor).to.be.at.least(0).and.below(toFace);
          expect(q.to.units * toFace).to.equal(q.valueOutMinor);
          expect(q.valueOutMinor).to.be.at.most(q.grossMinor - q.serviceChargeMinor);
          return true;
        },
      ),
    );
  });

  it('refuses the same issuer, different currencies, zero or fractional units and a result under one token', () => {
    expectCode(() => quoteExchange(tt('A', 'x', 10), 5, tt('B', 'x', 10), 0), 'CORE_ERR_EXCHANGE_SAME_ISSUER');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 5, tt('B', 'b', 10, 'USD'), 0), 'CORE_ERR_EXCHANGE_CURRENCY');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 0, tt('B', 'b', 10), 0), 'CORE_ERR_AMOUNT');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 1.5, tt('B', 'b', 10), 0), 'CORE_ERR_AMOUNT');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 5, tt('B', 'b', 51), 0), 'CORE_ERR_EXCHANGE_TOO_SMALL');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 5, tt('B', 'b', 50), 100), 'CORE_ERR_EXCHANGE_TOO_SMALL');
    expectCode(() => quoteExchange(tt('A', 'a', 10), 5, tt('B', 'b', 1), 10_001), 'CORE_ERR_VALIDATION');
  });

  it('lets the mall check a store\'s quote: any changed figure or a different fee fails', () => {
    const a = tt('A', 'a', 30);
    const b = tt('B', 'b', 70);
    const q = quoteExchange(a, 50, b, 250);
    expect(quoteMatches(q, a, b, 250)).to.equal(true);
    expect(quoteMatches(q, a, b, 100)).to.equal(false);
    expect(quoteMatches({ ...q, to: { ...q.to, units: q.to.units + 1 } }, a, b, 250)).to.equal(false);
    expect(quoteMatches({ ...q, remainderMinor: q.remainderMinor - 1, valueOutMinor: q.valueOutMinor + 1 }, a, b, 250)).to.equal(false);
    expect(quoteMatches(q, a, { ...b, faceValueMinor: 69 }, 250)).to.equal(false);
  });
});
