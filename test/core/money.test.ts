import { expect } from 'chai';
import fc from 'fast-check';
import { MallposError } from '../../core/errors.ts';
import {
  AMOUNT_MAX,
  BPS_ONE,
  add,
  bpsOf,
  checkAmount,
  checkSignedAmount,
  formatMinor,
  formatUnits,
  mul,
  mulDivRound,
  sub,
  sum,
} from '../../core/money.ts';
import { codeOf, expectCode, refMulDivRound } from './helpers.ts';

const MAX = Number.MAX_SAFE_INTEGER;
const MAX_N = BigInt(MAX);

/** A safe integer as a BigInt-backed reference result, or null when it leaves the safe range. */
function safeOrNull(v: bigint): number | null {
  return v >= -MAX_N && v <= MAX_N ? Number(v) : null;
}

/** Safe integers biased towards the edges of the safe range, where float arithmetic loses precision. */
const edgySafeInt = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.maxSafeInteger(),
  fc.bigInt({ min: MAX_N - 100_000n, max: MAX_N }).map(Number),
  fc.bigInt({ min: -MAX_N, max: -MAX_N + 100_000n }).map(Number),
  fc.bigInt({ min: 2n ** 26n, max: 2n ** 27n }).map(Number),
);
const edgyPositive = fc.oneof(
  fc.integer({ min: 1, max: 1000 }),
  fc.integer({ min: 1, max: 2 ** 31 }),
  fc.bigInt({ min: MAX_N - 100_000n, max: MAX_N }).map(Number),
  fc.bigInt({ min: 1n, max: MAX_N }).map(Number),
);

describe('core/money', () => {
  describe('constants', () => {
    it('bounds amounts by Number.MAX_SAFE_INTEGER and uses 10 000 basis points for one', () => {
      expect(AMOUNT_MAX).to.equal(9_007_199_254_740_991);
      expect(BPS_ONE).to.equal(10_000);
    });
  });

  describe('checkAmount', () => {
    it('returns non-negative safe integers unchanged', () => {
      for (const v of [0, 1, 42, 9_999, 2 ** 31, 2 ** 52, MAX]) expect(checkAmount(v, 'amount')).to.equal(v);
    });

    it('rejects negative integers with CORE_ERR_AMOUNT and names the field', () => {
      for (const v of [-1, -100, -MAX]) {
        const e = expectCode(() => checkAmount(v, 'price'), 'CORE_ERR_AMOUNT');
        expect(e.message).to.equal('price must not be negative');
        expect(e.details).to.deep.include({ field: 'price', value: v });
      }
    });

    it('rejects fractions, NaN and infinities with CORE_ERR_AMOUNT', () => {
      for (const v of [0.5, 1.5, 0.1, -0.5, 1 + Number.EPSILON, 99.99, NaN, Infinity, -Infinity]) {
        const e = expectCode(() => checkAmount(v, 'qty'), 'CORE_ERR_AMOUNT');
        expect(e.message).to.equal('qty must be a whole number');
        expect(e.details).to.deep.include({ field: 'qty' });
      }
    });

    it('rejects strings, booleans, null, objects and BigInts with CORE_ERR_AMOUNT', () => {
      for (const v of ['1', '', '1e3', ' 5 ', 'abc', true, false, null, undefined, {}, [], [1], 1n, new Number(3)]) {
        expectCode(() => checkAmount(v, 'cash'), 'CORE_ERR_AMOUNT');
      }
    });

    it('quotes a string value in the details, cut to 40 characters', () => {
      const e = expectCode(() => checkAmount('x'.repeat(100), 'cash'), 'CORE_ERR_AMOUNT');
      expect(e.details?.value).to.equal(`"${'x'.repeat(40)}"`);
    });

    it('rejects integers beyond Number.MAX_SAFE_INTEGER with CORE_ERR_OVERFLOW, not CORE_ERR_AMOUNT', () => {
      for (const v of [MAX + 1, 2 ** 53, 2 ** 53 + 2, 2 ** 60, 1e20, Number.MAX_VALUE]) {
        const e = expectCode(() => checkAmount(v, 'units'), 'CORE_ERR_OVERFLOW');
        expect(e.message).to.equal('units is too large');
      }
    });

    it('property: accepts exactly the non-negative safe integers', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), (v) => {
          expect(checkAmount(v, 'a')).to.equal(v);
        }),
      );
      fc.assert(
        fc.property(fc.integer({ min: -MAX, max: -1 }), (v) => {
          expect(codeOf(() => checkAmount(v, 'a'))).to.equal('CORE_ERR_AMOUNT');
        }),
      );
      fc.assert(
        fc.property(
          fc.double({ noNaN: false }).filter((d) => !Number.isInteger(d)),
          (v) => {
            expect(codeOf(() => checkAmount(v, 'a'))).to.equal('CORE_ERR_AMOUNT');
          },
        ),
      );
      fc.assert(
        fc.property(
          fc.double({ min: 2 ** 53, max: Number.MAX_VALUE, noNaN: true }).filter((d) => Number.isFinite(d)),
          (v) => {
            expect(codeOf(() => checkAmount(v, 'a'))).to.equal('CORE_ERR_OVERFLOW');
          },
        ),
      );
    });
  });

  describe('checkSignedAmount', () => {
    it('accepts negative and positive safe integers', () => {
      for (const v of [-MAX, -1, 0, 1, MAX]) expect(checkSignedAmount(v, 'posting')).to.equal(v);
    });

    it('rejects fractions and non-numbers with CORE_ERR_AMOUNT and unsafe integers with CORE_ERR_OVERFLOW', () => {
      for (const v of [-0.5, 2.25, NaN, Infinity, '-3', null]) expectCode(() => checkSignedAmount(v, 'p'), 'CORE_ERR_AMOUNT');
      for (const v of [2 ** 53, -(2 ** 53), -1e20, 1e20]) expectCode(() => checkSignedAmount(v, 'p'), 'CORE_ERR_OVERFLOW');
    });
  });

  describe('add, sub, mul, sum', () => {
    it('are exact where float arithmetic is not', () => {
      expect(add(MAX - 1, 1)).to.equal(MAX);
      expect(sub(-MAX + 1, 1)).to.equal(-MAX);
      expect(mul(94_906_265, 94_906_265)).to.equal(9_007_199_136_250_225); // 94906265^2 < 2^53
      expect(sum([MAX, -MAX, MAX])).to.equal(MAX);
      expect(sum([])).to.equal(0);
    });

    it('throw CORE_ERR_OVERFLOW instead of returning an imprecise result', () => {
      expectCode(() => add(MAX, 1), 'CORE_ERR_OVERFLOW');
      expectCode(() => sub(-MAX, 1), 'CORE_ERR_OVERFLOW');
      expectCode(() => mul(94_906_267, 94_906_267), 'CORE_ERR_OVERFLOW');
      expectCode(() => sum([MAX, 1]), 'CORE_ERR_OVERFLOW');
    });

    it('property: agree with BigInt arithmetic, or overflow exactly when BigInt leaves the safe range', () => {
      fc.assert(
        fc.property(edgySafeInt, edgySafeInt, (a, b) => {
          const cases: [() => number, bigint][] = [
            [() => add(a, b), BigInt(a) + BigInt(b)],
            [() => sub(a, b), BigInt(a) - BigInt(b)],
            [() => mul(a, b), BigInt(a) * BigInt(b)],
          ];
          for (const [run, ref] of cases) {
            const expected = safeOrNull(ref);
            if (expected === null) expect(codeOf(run)).to.equal('CORE_ERR_OVERFLOW');
            else expect(run()).to.equal(expected);
          }
        }),
      );
      fc.assert(
        fc.property(fc.array(edgySafeInt, { maxLength: 20 }), (values) => {
          const expected = safeOrNull(values.reduce((t, v) => t + BigInt(v), 0n));
          if (expected === null) expect(codeOf(() => sum(values))).to.equal('CORE_ERR_OVERFLOW');
          else expect(sum(values)).to.equal(expected);
        }),
      );
    });
  });

  describe('mulDivRound', () => {
    it('rounds exact halves up, away from zero (not to even)', () => {
      expect(mulDivRound(1, 1, 2)).to.equal(1); // 0.5
      expect(mulDivRound(3, 1, 2)).to.equal(2); // 1.5
      expect(mulDivRound(5, 1, 2)).to.equal(3); // 2.5: banker's rounding would give 2
      expect(mulDivRound(25, 1, 10)).to.equal(3); // 2.5
      expect(mulDivRound(45, 1, 10)).to.equal(5); // 4.5: banker's rounding would give 4
      expect(mulDivRound(1, 5, 2)).to.equal(3);
      expect(mulDivRound(-1, 1, 2)).to.equal(-1); // -0.5 goes away from zero
      expect(mulDivRound(-5, 1, 2)).to.equal(-3);
      expect(mulDivRound(5, -1, 2)).to.equal(-3);
    });

    it('rounds to the nearest integer when not on a half', () => {
      expect(mulDivRound(1, 1, 3)).to.equal(0); // 0.333
      expect(mulDivRound(2, 1, 3)).to.equal(1); // 0.667
      expect(mulDivRound(5, 1, 4)).to.equal(1); // 1.25
      expect(mulDivRound(7, 1, 4)).to.equal(2); // 1.75
      expect(mulDivRound(999, 1, 4)).to.equal(250); // 249.75
      expect(mulDivRound(-7, 1, 4)).to.equal(-2);
      expect(mulDivRound(-5, 1, 4)).to.equal(-1);
      expect(mulDivRound(0, 12345, 7)).to.equal(0);
      expect(mulDivRound(6, 7, 3)).to.equal(14);
    });

    it('is exact near 2^53, where a float a*b/c is not', () => {
      // (MAX * MAX) / MAX is MAX exactly; the float product MAX*MAX is not representable.
      expect(mulDivRound(MAX, MAX, MAX)).to.equal(MAX);
      expect(mulDivRound(MAX, 3, 3)).to.equal(MAX);
      expect(mulDivRound(MAX - 1, MAX, MAX - 1)).to.equal(MAX);
      // MAX * (MAX - 1) / MAX = MAX - 1 exactly; the float path rounds MAX*(MAX-1) first.
      expect(mulDivRound(MAX, MAX - 1, MAX)).to.equal(MAX - 1);
      const a = MAX;
      const b = 2 ** 40 + 7;
      const c = 2 ** 40 + 9;
      const expected = Number(refMulDivRound(BigInt(a), BigInt(b), BigInt(c)));
      expect(mulDivRound(a, b, c)).to.equal(expected);
      expect(Math.round((a * b) / c), 'the float path is really imprecise here').to.not.equal(expected);
    });

    it('throws CORE_ERR_OVERFLOW when the rounded result is not a safe integer', () => {
      expectCode(() => mulDivRound(MAX, 2, 1), 'CORE_ERR_OVERFLOW');
      expectCode(() => mulDivRound(MAX, MAX, MAX - 1), 'CORE_ERR_OVERFLOW');
      expectCode(() => mulDivRound(-MAX, 3, 2), 'CORE_ERR_OVERFLOW');
    });

    it('treats a zero or negative divisor and non-integers as programmer errors (plain Error, not MallposError)', () => {
      for (const [a, b, c] of [
        [1, 1, 0],
        [1, 1, -2],
        [1.5, 1, 2],
        [1, NaN, 2],
        [1, 1, 0.5],
        [2 ** 53, 1, 1],
        [1, Infinity, 1],
      ] as const) {
        let thrown: unknown = null;
        try {
          mulDivRound(a, b, c);
        } catch (err) {
          thrown = err;
        }
        expect(thrown, `mulDivRound(${a}, ${b}, ${c})`).to.be.instanceOf(Error);
        expect(thrown).to.not.be.instanceOf(MallposError);
        expect((thrown as Error).message).to.match(/^assertion failed/);
      }
    });

    it('property: equals a BigInt quotient-and-remainder reference (or overflows exactly when it is unsafe)', () => {
      fc.assert(
        fc.property(edgySafeInt, edgySafeInt, edgyPositive, (a, b, c) => {
          const expected = safeOrNull(refMulDivRound(BigInt(a), BigInt(b), BigInt(c)));
          if (expected === null) expect(codeOf(() => mulDivRound(a, b, c))).to.equal('CORE_ERR_OVERFLOW');
          else expect(mulDivRound(a, b, c)).to.equal(expected);
        }),
        { numRuns: 2000 },
      );
    });

    it('property: an exact half q + 1/2 always rounds to q + 1 (and -(q + 1) when negative)', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 0n, max: 2n ** 40n }), fc.bigInt({ min: 1n, max: 2n ** 11n }), (q, m) => {
          const c = 2n * m;
          const n = q * c + m; // n / c = q + 1/2 exactly
          fc.pre(n <= MAX_N);
          expect(mulDivRound(Number(n), 1, Number(c))).to.equal(Number(q + 1n));
          expect(mulDivRound(-Number(n), 1, Number(c))).to.equal(-Number(q + 1n));
          // Just below and just above the half.
          expect(mulDivRound(Number(n - 1n), 1, Number(c))).to.equal(Number(q));
          expect(mulDivRound(Number(n + 1n), 1, Number(c))).to.equal(Number(q + 1n));
        }),
      );
    });

    it('property: the result is within half a unit of the exact quotient', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 1, max: 2 ** 30 }), (a, b, c) => {
          const n = BigInt(a) * BigInt(b);
          fc.pre(n / BigInt(c) < MAX_N);
          const r = BigInt(mulDivRound(a, b, c));
          // |r*c - n| <= c/2, i.e. 2|r*c - n| <= c, with equality only when r is rounded up.
          const diff = r * BigInt(c) - n;
          const twice = 2n * (diff < 0n ? -diff : diff);
          expect(twice <= BigInt(c)).to.equal(true);
          if (twice === BigInt(c)) expect(diff > 0n, 'a half goes up').to.equal(true);
        }),
      );
    });
  });

  describe('bpsOf', () => {
    it('computes basis-point fees with the rounding rule', () => {
      expect(bpsOf(10_000, 250)).to.equal(250); // 2.5 % of 100.00
      expect(bpsOf(12_345, 250)).to.equal(309); // 308.625
      expect(bpsOf(12_345, 100)).to.equal(123); // 123.45
      expect(bpsOf(50, 100)).to.equal(1); // 0.5 rounds up
      expect(bpsOf(49, 100)).to.equal(0); // 0.49
      expect(bpsOf(150, 100)).to.equal(2); // 1.5
      expect(bpsOf(250, 100)).to.equal(3); // 2.5: not to even
      expect(bpsOf(1, 5_000)).to.equal(1); // 0.5
      expect(bpsOf(0, 9_999)).to.equal(0);
      expect(bpsOf(MAX, BPS_ONE)).to.equal(MAX);
      expect(bpsOf(MAX, 0)).to.equal(0);
      expect(bpsOf(MAX, 1)).to.equal(900_719_925_474); // 900719925474.0991
    });

    it('property: equals round-half-up(amount * bps / 10000) computed with BigInt', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), fc.integer({ min: 0, max: BPS_ONE }), (amount, bps) => {
          expect(bpsOf(amount, bps)).to.equal(Number(refMulDivRound(BigInt(amount), BigInt(bps), 10_000n)));
          expect(bpsOf(amount, bps)).to.be.at.most(amount);
        }),
      );
    });
  });

  describe('formatMinor and formatUnits', () => {
    it('formats minor units with two decimals and the currency symbol', () => {
      expect(formatMinor(0, 'EUR')).to.equal('€0.00');
      expect(formatMinor(5, 'EUR')).to.equal('€0.05');
      expect(formatMinor(50, 'EUR')).to.equal('€0.50');
      expect(formatMinor(350, 'EUR')).to.equal('€3.50');
      expect(formatMinor(100, 'USD')).to.equal('$1.00');
      expect(formatMinor(123_456, 'GBP')).to.equal('£1234.56');
      expect(formatMinor(99, 'CHF')).to.equal('CHF 0.99');
      expect(formatMinor(250, 'SEK')).to.equal('SEK 2.50');
      expect(formatMinor(MAX, 'EUR')).to.equal('€90071992547409.91');
    });

    it('puts the minus sign before the symbol', () => {
      expect(formatMinor(-1234, 'EUR')).to.equal('-€12.34');
      expect(formatMinor(-5, 'USD')).to.equal('-$0.05');
      expect(formatMinor(-100, 'NOK')).to.equal('-NOK 1.00');
    });

    it('formats a currency without minor units (JPY) without decimals', () => {
      expect(formatMinor(350, 'JPY')).to.equal('¥350');
      expect(formatMinor(0, 'JPY')).to.equal('¥0');
      expect(formatMinor(-7, 'JPY')).to.equal('-¥7');
    });

    it('property: matches a string-based reference for every safe integer', () => {
      fc.assert(
        fc.property(fc.integer({ min: -MAX, max: MAX }), (minor) => {
          const digits = (minor < 0 ? -BigInt(minor) : BigInt(minor)).toString().padStart(3, '0');
          const expected = `${minor < 0 ? '-' : ''}€${BigInt(digits.slice(0, -2)).toString()}.${digits.slice(-2)}`;
          expect(formatMinor(minor, 'EUR')).to.equal(expected);
        }),
      );
    });

    it('formats token units with the token code', () => {
      expect(formatUnits(120, 'ACME')).to.equal('120 ACME');
      expect(formatUnits(0, 'MALL')).to.equal('0 MALL');
    });
  });
});
