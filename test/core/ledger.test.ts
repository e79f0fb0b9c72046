import { expect } from 'chai';
import fc from 'fast-check';
import { MallposError } from '../../core/errors.ts';
import {
  FLOAT_ACCOUNT,
  REDEEMED_ACCOUNT,
  RecordBook,
  allotmentPostings,
  applyPostings,
  checkBalanced,
  customerAccount,
  issuancePostings,
  issuerAccount,
  mustStayNonNegative,
  planBalances,
  planPostings,
  redemptionPostings,
  reversePostings,
  type Posting,
} from '../../core/ledger.ts';
import { codeOf, expectCode } from './helpers.ts';

const TOKENS = ['ACME', 'MALL', 'GIFT'] as const;
const CUSTOMERS = ['c1', 'c2', 'c3'] as const;
const ISSUERS = ['mall', 'acme-corp'] as const;
const MAX = Number.MAX_SAFE_INTEGER;

type Balances = Record<string, Record<string, number>>;

/** Balances without the empty rows RecordBook leaves behind when a balance returns to zero. */
function normalised(balances: Balances): Balances {
  const out: Balances = {};
  for (const [account, row] of Object.entries(balances)) {
    const kept = Object.entries(row).filter(([, units]) => units !== 0);
    if (kept.length > 0) out[account] = Object.fromEntries(kept);
  }
  return out;
}

function sumPerToken(balances: Balances): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const row of Object.values(balances)) {
    for (const [token, units] of Object.entries(row)) totals.set(token, (totals.get(token) ?? 0n) + BigInt(units));
  }
  return totals;
}

function expectNoNegativeGuardedAccount(balances: Balances): void {
  for (const [account, row] of Object.entries(balances)) {
    if (account !== FLOAT_ACCOUNT && !account.startsWith('customer:')) continue;
    for (const [token, units] of Object.entries(row)) expect(units, `${account}/${token}`).to.be.at.least(0);
  }
}

/** A balanced transaction: random nonzero legs per token, each token closed by one more posting. */
const balancedPostings: fc.Arbitrary<Posting[]> = fc
  .array(
    fc.record({
      token: fc.constantFrom(...TOKENS),
      legs: fc.array(
        fc.record({
          account: fc.constantFrom(FLOAT_ACCOUNT, REDEEMED_ACCOUNT, 'customer:c1', 'customer:c2', 'issuer:mall'),
          units: fc.integer({ min: -1_000_000, max: 1_000_000 }).filter((u) => u !== 0),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      closing: fc.constantFrom('issuer:mall', REDEEMED_ACCOUNT, FLOAT_ACCOUNT),
    }),
    { minLength: 1, maxLength: 3 },
  )
  .chain((groups) => {
    const postings: Posting[] = [];
    for (const g of groups) {
      let total = 0;
      for (const leg of g.legs) {
        postings.push({ account: leg.account, token: g.token, units: leg.units });
        total += leg.units;
      }
      if (total !== 0) postings.push({ account: g.closing, token: g.token, units: -total });
    }
    return fc.shuffledSubarray(postings, { minLength: postings.length, maxLength: postings.length });
  });

describe('core/ledger', () => {
  describe('accounts', () => {
    it('names accounts and guards customers and the float against going negative', () => {
      expect(customerAccount('c1')).to.equal('customer:c1');
      expect(issuerAccount('mall')).to.equal('issuer:mall');
      expect(mustStayNonNegative(FLOAT_ACCOUNT)).to.equal(true);
      expect(mustStayNonNegative(customerAccount('c1'))).to.equal(true);
      expect(mustStayNonNegative(REDEEMED_ACCOUNT)).to.equal(false);
      expect(mustStayNonNegative(issuerAccount('mall'))).to.equal(false);
    });
  });

  describe('checkBalanced', () => {
    it('accepts postings that sum to zero per token type', () => {
      checkBalanced([
        { account: 'customer:c1', token: 'ACME', units: -30 },
        { account: REDEEMED_ACCOUNT, token: 'ACME', units: 30 },
        { account: 'customer:c1', token: 'MALL', units: -5 },
        { account: REDEEMED_ACCOUNT, token: 'MALL', units: 2 },
        { account: REDEEMED_ACCOUNT, token: 'MALL', units: 3 },
      ]);
    });

    it('rejects an empty transaction, a zero posting and a per-token imbalance with CORE_ERR_UNBALANCED', () => {
      expectCode(() => checkBalanced([]), 'CORE_ERR_UNBALANCED');
      expectCode(
        () =>
          checkBalanced([
            { account: 'a', token: 'ACME', units: 0 },
            { account: 'b', token: 'ACME', units: 0 },
          ]),
        'CORE_ERR_UNBALANCED',
      );
      // Sums to zero overall but not per token type.
      const e = expectCode(
        () =>
          checkBalanced([
            { account: 'customer:c1', token: 'ACME', units: -10 },
            { account: REDEEMED_ACCOUNT, token: 'MALL', units: 10 },
          ]),
        'CORE_ERR_UNBALANCED',
      );
      expect(e.message).to.match(/ACME sum to -10|MALL sum to 10/);
    });

    it('accepts exactly the transactions whose postings sum to zero in every token, short or long (property)', () => {
      const posting = fc.record({ account: fc.constantFrom('a', 'b', 'c'), token: fc.constantFrom('ACME', 'MALL', 'SUNNY'), units: fc.integer({ min: -3, max: 3 }).filter((u) => u !== 0) });
      fc.assert(
        // Half of them balanced by construction: each posting and its opposite, in another order.
        fc.property(fc.array(posting, { minLength: 1, maxLength: 20 }), fc.boolean(), (some, mirrored) => {
          const postings = mirrored ? [...some, ...some.map((p) => ({ ...p, units: -p.units })).reverse()] : some;
          const totals = new Map<string, number>();
          for (const p of postings) totals.set(p.token, (totals.get(p.token) ?? 0) + p.units);
          const balanced = [...totals.values()].every((t) => t === 0);
          if (balanced) checkBalanced(postings);
          else expectCode(() => checkBalanced(postings), 'CORE_ERR_UNBALANCED');
        }),
        { numRuns: 500 },
      );
    });

    it('rejects fractional units with CORE_ERR_AMOUNT and unsafe units with CORE_ERR_OVERFLOW', () => {
      expectCode(
        () =>
          checkBalanced([
            { account: 'a', token: 'ACME', units: 0.5 },
            { account: 'b', token: 'ACME', units: -0.5 },
          ]),
        'CORE_ERR_AMOUNT',
      );
      expectCode(
        () =>
          checkBalanced([
            { account: 'a', token: 'ACME', units: 2 ** 53 },
            { account: 'b', token: 'ACME', units: -(2 ** 53) },
          ]),
        'CORE_ERR_OVERFLOW',
      );
      expectCode(
        () =>
          checkBalanced([
            { account: 'a', token: 'ACME', units: '5' as unknown as number },
            { account: 'b', token: 'ACME', units: -5 },
          ]),
        'CORE_ERR_AMOUNT',
      );
    });

    it('property: generated balanced transactions pass', () => {
      fc.assert(
        fc.property(balancedPostings, (postings) => {
          checkBalanced(postings);
        }),
      );
    });

    it('property: any perturbation of a balanced transaction is caught', () => {
      fc.assert(
        fc.property(
          balancedPostings,
          fc.nat(),
          fc.integer({ min: -1000, max: 1000 }).filter((d) => d !== 0),
          fc.constantFrom('change', 'drop', 'retoken', 'duplicate'),
          (postings, at, delta, how) => {
            const i = at % postings.length;
            const target = postings[i] as Posting;
            const copy = postings.map((p) => ({ ...p }));
            if (how === 'change') {
              fc.pre(target.units + delta !== 0);
              copy[i] = { ...target, units: target.units + delta };
            } else if (how === 'drop') {
              copy.splice(i, 1);
            } else if (how === 'retoken') {
              copy[i] = { ...target, token: target.token === 'ACME' ? 'MALL' : 'ACME' };
            } else {
              copy.push({ ...target });
            }
            expect(codeOf(() => checkBalanced(copy))).to.equal('CORE_ERR_UNBALANCED');
          },
        ),
      );
    });
  });

  describe('posting builders', () => {
    it('builds allotment, issuance and redemption postings that balance', () => {
      expect(allotmentPostings('mall', 'MALL', 500)).to.deep.equal([
        { account: 'issuer:mall', token: 'MALL', units: -500 },
        { account: FLOAT_ACCOUNT, token: 'MALL', units: 500 },
      ]);
      expect(issuancePostings('c1', 'MALL', 20)).to.deep.equal([
        { account: FLOAT_ACCOUNT, token: 'MALL', units: -20 },
        { account: 'customer:c1', token: 'MALL', units: 20 },
      ]);
      expect(redemptionPostings('c1', { MALL: 7, ACME: 0, GIFT: 3 })).to.deep.equal([
        { account: 'customer:c1', token: 'MALL', units: -7 },
        { account: REDEEMED_ACCOUNT, token: 'MALL', units: 7 },
        { account: 'customer:c1', token: 'GIFT', units: -3 },
        { account: REDEEMED_ACCOUNT, token: 'GIFT', units: 3 },
      ]);
      expect(redemptionPostings('c1', {})).to.deep.equal([]);
    });

    it('treats non-positive or non-integer units as programmer errors', () => {
      const bad: (() => unknown)[] = [
        () => allotmentPostings('mall', 'MALL', 0),
        () => allotmentPostings('mall', 'MALL', -1),
        () => allotmentPostings('mall', 'MALL', 1.5),
        () => issuancePostings('c1', 'MALL', 0),
        () => issuancePostings('c1', 'MALL', 2 ** 53),
        () => redemptionPostings('c1', { MALL: -1 }),
        () => redemptionPostings('c1', { MALL: 0.5 }),
      ];
      for (const run of bad) {
        let thrown: unknown = null;
        try {
          run();
        } catch (err) {
          thrown = err;
        }
        expect(thrown).to.be.instanceOf(Error);
        expect(thrown).to.not.be.instanceOf(MallposError);
        expect((thrown as Error).message).to.match(/^assertion failed/);
      }
    });

    it('reversePostings negates every posting and names the same accounts', () => {
      const t = redemptionPostings('c1', { MALL: 7 });
      expect(reversePostings(t)).to.deep.equal([
        { account: 'customer:c1', token: 'MALL', units: 7 },
        { account: REDEEMED_ACCOUNT, token: 'MALL', units: -7 },
      ]);
      expect(t[0]?.units, 'the original is not modified').to.equal(-7);
    });
  });

  describe('RecordBook', () => {
    it('reads zero for unknown accounts and drops a balance that returns to zero', () => {
      const book = new RecordBook();
      expect(book.get('customer:c1', 'ACME')).to.equal(0);
      book.set('customer:c1', 'ACME', 5);
      book.set('customer:c1', 'MALL', 2);
      expect(book.get('customer:c1', 'ACME')).to.equal(5);
      book.set('customer:c1', 'ACME', 0);
      expect(book.balances).to.deep.equal({ 'customer:c1': { MALL: 2 } });
    });
  });

  describe('planPostings and applyPostings', () => {
    it('plans the balances after a transaction without writing them', () => {
      const book = new RecordBook({ 'customer:c1': { ACME: 100 } });
      const plan = planPostings(book, redemptionPostings('c1', { ACME: 30 }));
      expect(plan.get('customer:c1\u0000ACME')).to.equal(70);
      expect(plan.get('redeemed\u0000ACME')).to.equal(30);
      expect(book.balances).to.deep.equal({ 'customer:c1': { ACME: 100 } });
    });

    it('plans each account and token once, in the order first named, short lists and long ones alike', () => {
      const accounts = ['customer:c1', 'customer:c2', FLOAT_ACCOUNT, REDEEMED_ACCOUNT, 'issuer:mall'];
      const leg = fc.record({ account: fc.constantFrom(...accounts), token: fc.constantFrom('ACME', 'MALL'), units: fc.integer({ min: -50, max: 50 }).filter((u) => u !== 0) });
      fc.assert(
        fc.property(fc.array(leg, { minLength: 1, maxLength: 30 }), fc.boolean(), (legs, covered) => {
          // Each leg with its counterpart in redeemed: balanced, whatever the accounts.
          const postings: Posting[] = legs.flatMap((l) => [l, { account: REDEEMED_ACCOUNT, token: l.token, units: -l.units }]);
          const start = covered ? 1_000 : 0;
          const book = new RecordBook();
          for (const a of accounts) for (const t of ['ACME', 'MALL']) book.set(a, t, start);
          // The reference: a running total per account and token, in a Map in the order first named.
          const expected = new Map<string, { account: string; token: string; units: number }>();
          for (const p of postings) {
            const k = `${p.account} ${p.token}`;
            const e = expected.get(k) ?? { account: p.account, token: p.token, units: start };
            e.units += p.units;
            expected.set(k, e);
          }
          const short = [...expected.values()].find((e) => e.units < 0 && mustStayNonNegative(e.account));
          if (short !== undefined) {
            expect(codeOf(() => planBalances(book, postings))).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
            expect(() => planBalances(book, postings)).to.throw(`not enough ${short.token} tokens: ${-short.units} short`);
            return;
          }
          expect(planBalances(book, postings)).to.deep.equal([...expected.values()]);
          expect([...planPostings(book, postings)]).to.deep.equal([...expected.values()].map((e) => [`${e.account}\u0000${e.token}`, e.units]));
        }),
      );
    });

    it('refuses to take a customer below zero and names the shortfall', () => {
      const book = new RecordBook({ 'customer:c1': { ACME: 50 } });
      const before = structuredClone(book.balances);
      const e = expectCode(() => applyPostings(book, redemptionPostings('c1', { ACME: 170 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
      expect(e.message).to.equal('not enough ACME tokens: 120 short');
      expect(e.details).to.deep.equal({ account: 'customer:c1', token: 'ACME', shortUnits: 120 });
      expect(book.balances).to.deep.equal(before);
    });

    it('refuses to take the float below zero with a message about the store float', () => {
      const book = new RecordBook({ float: { MALL: 10 } });
      const e = expectCode(() => applyPostings(book, issuancePostings('c1', 'MALL', 25)), 'CORE_ERR_INSUFFICIENT_TOKENS');
      expect(e.message).to.equal('the store float has not enough MALL tokens: 15 short');
      expect(e.details).to.deep.equal({ account: FLOAT_ACCOUNT, token: 'MALL', shortUnits: 15 });
      expect(book.balances).to.deep.equal({ float: { MALL: 10 } });
    });

    it('lets issuer and redeemed accounts go negative', () => {
      const book = new RecordBook();
      applyPostings(book, allotmentPostings('mall', 'MALL', 100));
      applyPostings(book, reversePostings(redemptionPostings('c1', { MALL: 5 })));
      expect(book.balances).to.deep.equal({
        'issuer:mall': { MALL: -100 },
        float: { MALL: 100 },
        'customer:c1': { MALL: 5 },
        redeemed: { MALL: -5 },
      });
    });

    it('judges the net effect of a transaction on each account, and leaves everything unchanged when any leg fails', () => {
      const book = new RecordBook({ 'customer:c1': { ACME: 10, MALL: 1 } });
      // Net -5 on customer:c1/ACME although one leg alone is -15.
      applyPostings(book, [
        { account: 'customer:c1', token: 'ACME', units: -15 },
        { account: 'customer:c1', token: 'ACME', units: 10 },
        { account: REDEEMED_ACCOUNT, token: 'ACME', units: 5 },
      ]);
      expect(book.get('customer:c1', 'ACME')).to.equal(5);
      // Two legs on the same account add up to a shortfall; the ACME leg that would succeed is not applied either.
      const before = structuredClone(book.balances);
      const e = expectCode(
        () =>
          applyPostings(book, [
            { account: 'customer:c1', token: 'ACME', units: -5 },
            { account: REDEEMED_ACCOUNT, token: 'ACME', units: 5 },
            { account: 'customer:c1', token: 'MALL', units: -2 },
            { account: 'customer:c1', token: 'MALL', units: -2 },
            { account: REDEEMED_ACCOUNT, token: 'MALL', units: 4 },
          ]),
        'CORE_ERR_INSUFFICIENT_TOKENS',
      );
      expect(e.details).to.deep.include({ token: 'MALL', shortUnits: 3 });
      expect(book.balances).to.deep.equal(before);
    });

    it('rejects unbalanced postings before touching the book', () => {
      const book = new RecordBook({ 'customer:c1': { ACME: 10 } });
      expectCode(() => applyPostings(book, [{ account: 'customer:c1', token: 'ACME', units: 5 }]), 'CORE_ERR_UNBALANCED');
      expect(book.balances).to.deep.equal({ 'customer:c1': { ACME: 10 } });
    });

    it('throws CORE_ERR_OVERFLOW rather than storing an unsafe balance', () => {
      const book = new RecordBook({ 'issuer:mall': { MALL: -MAX }, float: { MALL: MAX } });
      expectCode(() => applyPostings(book, allotmentPostings('mall', 'MALL', 1)), 'CORE_ERR_OVERFLOW');
      expect(book.balances).to.deep.equal({ 'issuer:mall': { MALL: -MAX }, float: { MALL: MAX } });
    });
  });

  describe('properties of a running book', () => {
    type Op =
      | { kind: 'allot'; issuer: string; token: string; units: number }
      | { kind: 'issue'; customer: string; token: string; units: number }
      | { kind: 'redeem'; customer: string; debits: Record<string, number> }
      | { kind: 'reverse'; pick: number };

    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('allot' as const), issuer: fc.constantFrom(...ISSUERS), token: fc.constantFrom(...TOKENS), units: fc.integer({ min: 1, max: 1000 }) }),
      fc.record({ kind: fc.constant('issue' as const), customer: fc.constantFrom(...CUSTOMERS), token: fc.constantFrom(...TOKENS), units: fc.integer({ min: 1, max: 1000 }) }),
      fc.record({
        kind: fc.constant('redeem' as const),
        customer: fc.constantFrom(...CUSTOMERS),
        debits: fc
          .dictionary(fc.constantFrom(...TOKENS), fc.integer({ min: 0, max: 600 }), { minKeys: 1 })
          .filter((d) => Object.values(d).some((u) => u > 0)),
      }),
      fc.record({ kind: fc.constant('reverse' as const), pick: fc.nat() }),
    );

    /** An independent model of the book: net change per account and token, then the guard. */
    function predictShortfall(model: Map<string, number>, postings: readonly Posting[]): { account: string; token: string; shortUnits: number } | null {
      const next = new Map<string, number>();
      const order: string[] = [];
      for (const p of postings) {
        const k = `${p.account}|${p.token}`;
        if (!next.has(k)) order.push(k);
        next.set(k, (next.get(k) ?? model.get(k) ?? 0) + p.units);
      }
      for (const k of order) {
        const [account, token] = k.split('|') as [string, string];
        const units = next.get(k) ?? 0;
        if (units < 0 && (account === 'float' || account.startsWith('customer:'))) return { account, token, shortUnits: -units };
      }
      return null;
    }

    function applyToModel(model: Map<string, number>, postings: readonly Posting[]): void {
      for (const p of postings) model.set(`${p.account}|${p.token}`, (model.get(`${p.account}|${p.token}`) ?? 0) + p.units);
    }

    function modelAsBalances(model: Map<string, number>): Balances {
      const out: Balances = {};
      for (const [k, units] of model) {
        if (units === 0) continue;
        const [account, token] = k.split('|') as [string, string];
        (out[account] ??= {})[token] = units;
      }
      return out;
    }

    it('property: random allotments, issuances, redemptions and reversals never leave a customer or the float negative; refused ones change nothing', () => {
      let applied = 0;
      let refused = 0;
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
          const book = new RecordBook();
          const model = new Map<string, number>();
          const committed: Posting[][] = [];
          for (const o of ops) {
            let postings: Posting[];
            if (o.kind === 'allot') postings = allotmentPostings(o.issuer, o.token, o.units);
            else if (o.kind === 'issue') postings = issuancePostings(o.customer, o.token, o.units);
            else if (o.kind === 'redeem') postings = redemptionPostings(o.customer, o.debits);
            else {
              if (committed.length === 0) continue;
              postings = reversePostings(committed[o.pick % committed.length] as Posting[]);
            }
            const predicted = predictShortfall(model, postings);
            const before = structuredClone(book.balances);
            let thrown: unknown = null;
            try {
              applyPostings(book, postings);
            } catch (err) {
              thrown = err;
            }
            if (predicted === null) {
              expect(thrown, `${o.kind} should be applied`).to.equal(null);
              applied++;
              applyToModel(model, postings);
              committed.push(postings);
            } else {
              refused++;
              expect(thrown).to.be.instanceOf(MallposError);
              const e = thrown as MallposError;
              expect(e.code).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
              expect(e.details).to.deep.equal(predicted);
              expect(e.message).to.contain(`${predicted.token} tokens: ${predicted.shortUnits} short`);
              expect(book.balances, 'a refused transaction changes nothing').to.deep.equal(before);
            }
            expect(normalised(book.balances)).to.deep.equal(modelAsBalances(model));
            expectNoNegativeGuardedAccount(book.balances);
            for (const [token, total] of sumPerToken(book.balances)) expect(total, `sum of ${token}`).to.equal(0n);
          }
        }),
        { numRuns: 300 },
      );
      // Guard against a vacuous property: both outcomes must have been exercised many times.
      expect(applied).to.be.above(100);
      expect(refused).to.be.above(100);
    });

    it('property: a transaction followed by its reversal restores every balance exactly', () => {
      fc.assert(
        fc.property(
          fc.dictionary(fc.constantFrom(...TOKENS), fc.integer({ min: 0, max: 5000 })),
          fc.dictionary(fc.constantFrom(...TOKENS), fc.integer({ min: 0, max: 5000 })),
          fc.constantFrom(...CUSTOMERS),
          fc.dictionary(fc.constantFrom(...TOKENS), fc.integer({ min: 0, max: 5000 }), { minKeys: 1 }),
          fc.constantFrom('redeem', 'issue'),
          (float, customerStart, customer, amounts, kind) => {
            const book = new RecordBook();
            for (const [token, units] of Object.entries(float)) if (units > 0) applyPostings(book, allotmentPostings('mall', token, units));
            for (const [token, units] of Object.entries(customerStart)) {
              if (units > 0) {
                applyPostings(book, allotmentPostings('mall', token, units));
                applyPostings(book, issuancePostings(customer, token, units));
              }
            }
            const before = structuredClone(book.balances);
            const postings =
              kind === 'redeem'
                ? redemptionPostings(customer, amounts)
                : Object.entries(amounts).flatMap(([token, units]) => (units > 0 ? issuancePostings(customer, token, units) : []));
            fc.pre(postings.length > 0);
            if (codeOf(() => applyPostings(book, postings)) !== null) {
              expect(book.balances).to.deep.equal(before);
              return;
            }
            expect(normalised(book.balances)).to.not.deep.equal(normalised(before));
            applyPostings(book, reversePostings(postings));
            expect(normalised(book.balances)).to.deep.equal(normalised(before));
            for (const [account, row] of Object.entries(before)) {
              for (const [token, units] of Object.entries(row)) expect(book.get(account, token)).to.equal(units);
            }
          },
        ),
      );
    });

    it('property: reversing an issuance after the customer spent the tokens is refused and changes nothing', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 1000 }), (issued, spentSeed) => {
          const spent = 1 + (spentSeed % issued);
          const book = new RecordBook();
          applyPostings(book, allotmentPostings('mall', 'ACME', issued));
          const issuance = issuancePostings('c1', 'ACME', issued);
          applyPostings(book, issuance);
          applyPostings(book, redemptionPostings('c1', { ACME: spent }));
          const before = structuredClone(book.balances);
          const e = expectCode(() => applyPostings(book, reversePostings(issuance)), 'CORE_ERR_INSUFFICIENT_TOKENS');
          expect(e.details).to.deep.equal({ account: 'customer:c1', token: 'ACME', shortUnits: spent });
          expect(book.balances).to.deep.equal(before);
        }),
      );
    });
  });
});
