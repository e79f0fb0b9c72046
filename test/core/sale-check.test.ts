import { expect } from 'chai';
import fc from 'fast-check';
import { MallposError } from '../../core/errors.ts';
import { redemptionPostings, type Posting } from '../../core/ledger.ts';
import { priceCart, settleCash, type PricedCart, type Product } from '../../core/pricing.ts';
import { checkBuiltSale, checkSale, saleDataSchema, salePostingsSchema, saleProblem } from '../../core/sale-check.ts';
import type { SaleData } from '../../core/events.ts';
import type { TokenType } from '../../core/token-types.ts';

const VENDOR = 'store-1';
const NOW = new Date('2026-06-01T12:00:00Z');
const TYPES = new Map<string, TokenType>([
  ['ACME', { code: 'ACME', name: 'Acme', kind: 'vendor', issuer: VENDOR, faceValueMinor: 10, currency: 'EUR', acceptedBy: [VENDOR] }],
  ['MALL', { code: 'MALL', name: 'Mall', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' }],
  ['MFR', { code: 'MFR', name: 'Coupon', kind: 'manufacturer', issuer: 'choco-co', faceValueMinor: 100, currency: 'EUR', acceptedBy: '*', products: ['5901234123457'] }],
]);
const PRODUCTS: Product[] = [
  { gtin: '4006381333931', name: 'Coffee', priceMinor: 350, tokenPrices: { ACME: 35, MALL: 40 } },
  { gtin: '5901234123457', name: 'Chocolate', priceMinor: 199, tokenPrices: { ACME: 20, MFR: 2, MALL: 22 } },
  { gtin: '96385074', name: 'Milk', priceMinor: 125, tokenPrices: { MALL: 13 } },
  { gtin: '0036000291452', name: 'Batteries', priceMinor: 999, tokenPrices: {} },
  { gtin: '9780306406157', name: 'Gum', priceMinor: 5, tokenPrices: { ACME: 3 } },
];

/** A sale exactly as the vendor server journals it (vendor-server/ledger/service.ts). */
function saleOf(cart: PricedCart, customer: string | null, tenderedMinor: number): { postings: Posting[]; data: SaleData } {
  const { changeMinor } = settleCash(cart.cashDueMinor, tenderedMinor, String);
  return {
    postings: customer === null ? [] : redemptionPostings(customer, cart.debits),
    data: {
      saleId: 'S0000000042',
      customer,
      currency: cart.currency,
      lines: cart.lines,
      allocations: cart.allocations,
      debits: cart.debits,
      totalMinor: cart.totalMinor,
      cash: { dueMinor: cart.cashDueMinor, tenderedMinor, changeMinor },
      balancesAfter: customer === null ? null : { MALL: 0 },
    },
  };
}

const scenario = fc.record({
  lines: fc.array(fc.record({ product: fc.constantFrom(...PRODUCTS), qty: fc.integer({ min: 1, max: 40 }) }), { minLength: 1, maxLength: 8 }),
  tenders: fc.uniqueArray(fc.record({ token: fc.constantFrom('ACME', 'MALL', 'MFR'), units: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: undefined }) }), { selector: (t) => t.token, maxLength: 3 }),
  extraCash: fc.integer({ min: 0, max: 5000 }),
});

/** Priced sales the vendor's own rules produce (carts the pricing refuses are skipped). */
function pricedSale(s: { lines: { product: Product; qty: number }[]; tenders: { token: string; units: number | undefined }[]; extraCash: number }) {
  let cart: PricedCart;
  try {
    cart = priceCart({ vendorId: VENDOR, currency: 'EUR', now: NOW, lines: s.lines, tokenTypes: TYPES, tenders: s.tenders, balances: { ACME: 100_000, MALL: 100_000, MFR: 100_000 } });
  } catch (err) {
    if (err instanceof MallposError) return null;
    throw err;
  }
  return saleOf(cart, 'cust-000001', cart.cashDueMinor + s.extraCash);
}

type Mutation = [string, (sale: { postings: Posting[]; data: SaleData }) => boolean];

/** Each mutation breaks one field; it returns false when the sale has nothing it could break there. */
const MUTATIONS: Mutation[] = [
  ['saleId', (s) => ((s.data.saleId = 'S42'), true)],
  ['customer', (s) => (s.data.customer === null || Object.keys(s.data.debits).length === 0 ? false : ((s.data.customer = 'cust-000002'), true))],
  ['customer removed', (s) => (Object.keys(s.data.debits).length === 0 ? false : ((s.data.customer = null), true))],
  ['currency', (s) => ((s.data.currency = 'eur'), true)],
  ['lines[0].lineNo', (s) => (((s.data.lines[0] as { lineNo: number }).lineNo = 2), true)],
  ['a line duplicated', (s) => (s.data.lines.push({ ...(s.data.lines[0] as SaleData['lines'][number]) }), true)],
  ['lines[0].gtin', (s) => (((s.data.lines[0] as { gtin: string }).gtin = '__proto__'), true)],
  ['lines[0].qty', (s) => (((s.data.lines[0] as { qty: number }).qty += 1), true)],
  ['lines[0].unitPriceMinor', (s) => (((s.data.lines[0] as { unitPriceMinor: number }).unitPriceMinor += 1), true)],
  ['lines[0].totalMinor', (s) => (((s.data.lines[0] as { totalMinor: number }).totalMinor += 1), true)],
  ['lines[0].name', (s) => (((s.data.lines[0] as unknown as { name: unknown }).name = 7), true)],
  ['lines[0].unitTokenPrices', (s) => (((s.data.lines[0] as { unitTokenPrices: Record<string, number> }).unitTokenPrices = JSON.parse('{"__proto__":1}') as Record<string, number>), true)],
  ['a line removed', (s) => (s.data.lines.length < 2 ? false : (s.data.lines.pop(), true))],
  ['allocations[0].lineNo', (s) => (s.data.allocations.length === 0 ? false : (((s.data.allocations[0] as { lineNo: number }).lineNo = s.data.lines.length + 1), true))],
  ['allocations[0].token', (s) => (s.data.allocations.length === 0 ? false : (((s.data.allocations[0] as { token: string }).token = 'GHOST'), true))],
  ['allocations[0].units', (s) => (s.data.allocations.length === 0 ? false : (((s.data.allocations[0] as { units: number }).units += 1), true))],
  ['allocations[0].coversMinor', (s) => (s.data.allocations.length === 0 ? false : (((s.data.allocations[0] as { coversMinor: number }).coversMinor += 1), true))],
  ['an allocation duplicated', (s) => (s.data.allocations.length === 0 ? false : (s.data.allocations.push({ ...(s.data.allocations[0] as SaleData['allocations'][number]) }), true))],
  ['debits raised', (s) => {
    const t = Object.keys(s.data.debits)[0];
    if (t === undefined) return false;
    s.data.debits[t] = (s.data.debits[t] as number) + 1;
    return true;
  }],
  ['debits emptied', (s) => (Object.keys(s.data.debits).length === 0 ? false : ((s.data.debits = {}), true))],
  ['debits: a token added', (s) => ((s.data.debits = { ...s.data.debits, GHOST: 1 }), true)],
  ['totalMinor', (s) => ((s.data.totalMinor += 1), true)],
  ['cash.dueMinor', (s) => ((s.data.cash.dueMinor += 1), true)],
  ['cash.tenderedMinor', (s) => ((s.data.cash.tenderedMinor += 1), true)],
  ['cash.changeMinor', (s) => ((s.data.cash.changeMinor += 1), true)],
  ['balancesAfter', (s) => (((s.data as unknown as { balancesAfter: unknown }).balancesAfter = 'lots'), true)],
  ['an unknown field', (s) => (((s.data as unknown as Record<string, unknown>)['bonus'] = 1), true)],
  ['a posting\'s units', (s) => (s.postings.length === 0 ? false : (((s.postings[1] as Posting).units += 1), true))],
  ['a posting\'s account', (s) => (s.postings.length === 0 ? false : (((s.postings[0] as Posting).account = 'float'), true))],
  ['a posting\'s token', (s) => (s.postings.length === 0 ? false : (((s.postings[0] as Posting).token = 'constructor'), true))],
  ['a posting removed', (s) => (s.postings.length === 0 ? false : (s.postings.pop(), true))],
  // Postings are compared net per account and token: a wash in a token the sale does not debit is caught.
  ['a wash added', (s) => {
    const token = ['ACME', 'MALL', 'MFR'].find((t) => s.data.debits[t] === undefined);
    if (token === undefined) return false;
    s.postings.push({ account: 'redeemed', token, units: 45 }, { account: 'redeemed', token, units: -45 });
    return true;
  }],
  ['postings moved to another customer', (s) => (s.postings.length === 0 ? false : ((s.postings = s.postings.map((p) => (p.account.startsWith('customer:') ? { ...p, account: 'customer:cust-000009' } : p))), true))],
];

describe('core/sale-check: one validator of a sale', () => {
  it('property: every sale the vendor\'s pricing produces passes', () => {
    let checked = 0;
    fc.assert(
      fc.property(scenario, (s) => {
        const sale = pricedSale(s);
        if (sale === null) return;
        checked += 1;
        expect(saleProblem(sale.postings, sale.data)).to.equal(null);
        expect(() => checkSale(sale.postings, sale.data)).to.not.throw();
        expect(() => checkBuiltSale(sale.postings, sale.data)).to.not.throw();
        // A cash-only sale without a customer passes too.
        const cashOnly = pricedSale({ ...s, tenders: [] });
        if (cashOnly !== null) expect(saleProblem([], { ...cashOnly.data, customer: null, balancesAfter: null })).to.equal(null);
      }),
      // About a third of the random scenarios price to a sale; 600 make more than 100 of them
      // certain in practice (300 fell short once, at 93).
      { numRuns: 600 },
    );
    expect(checked).to.be.greaterThan(100);
  });

  it('mutation: breaking any one field of a valid sale is caught, with a typed error', () => {
    const hit = new Map<string, number>();
    fc.assert(
      fc.property(scenario, fc.integer({ min: 0, max: MUTATIONS.length - 1 }), (s, i) => {
        const sale = pricedSale(s);
        if (sale === null) return;
        const [name, mutate] = MUTATIONS[i] as Mutation;
        const copy = structuredClone(sale);
        if (!mutate(copy)) return;
        hit.set(name, (hit.get(name) ?? 0) + 1);
        const problem = saleProblem(copy.postings, copy.data);
        expect(problem, name).to.be.a('string');
        let code: string | null = null;
        try {
          checkSale(copy.postings, copy.data);
        } catch (err) {
          code = (err as MallposError).code;
        }
        expect(code, name).to.equal('CORE_ERR_SALE_INCONSISTENT');
        // The vendor's own check skips the schema: every break that keeps the shape is still caught.
        let built: string | null = null;
        try {
          checkBuiltSale(copy.postings, copy.data);
        } catch (err) {
          built = (err as MallposError).code;
        }
        if (saleDataSchema.safeParse(copy.data).success && salePostingsSchema.safeParse(copy.postings).success) expect(built, name).to.equal('CORE_ERR_SALE_INCONSISTENT');
      }),
      { numRuns: 3000 },
    );
    // Every mutation was tried on a sale it could break.
    for (const [name] of MUTATIONS) expect(hit.get(name) ?? 0, name).to.be.greaterThan(0);
  });

  it('refuses the washes and duplicates a dishonest store could sign', () => {
    const cart = priceCart({ vendorId: VENDOR, currency: 'EUR', now: NOW, lines: [{ product: PRODUCTS[0] as Product, qty: 1 }], tokenTypes: TYPES, tenders: [], balances: {} });
    const cash = saleOf(cart, 'cust-000001', 350);
    // +45 and -45 to redeemed, no customer debited.
    expect(saleProblem([{ account: 'redeemed', token: 'MALL', units: 45 }, { account: 'redeemed', token: 'MALL', units: -45 }], cash.data)).to.match(/which the sale does not debit/);
    // Debits {} while 45 MALL move to redeemed.
    expect(saleProblem([{ account: 'customer:cust-000001', token: 'MALL', units: -45 }, { account: 'redeemed', token: 'MALL', units: 45 }], cash.data)).to.match(/does not debit/);
    // A coupon allocated to a second line with the first line's number.
    const two = priceCart({
      vendorId: VENDOR, currency: 'EUR', now: NOW, lines: [{ product: PRODUCTS[1] as Product, qty: 1 }, { product: PRODUCTS[0] as Product, qty: 1 }], tokenTypes: TYPES, tenders: [{ token: 'MFR', units: 2 }], balances: { MFR: 10 },
    });
    const sale = saleOf(two, 'cust-000001', two.cashDueMinor);
    expect(saleProblem(sale.postings, sale.data)).to.equal(null);
    (sale.data.lines[1] as { lineNo: number }).lineNo = 1;
    expect(saleProblem(sale.postings, sale.data)).to.match(/numbered 1..n, each once/);
  });
});
