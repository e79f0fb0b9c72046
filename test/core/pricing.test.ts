import { expect } from 'chai';
import fc from 'fast-check';
import { MallposError } from '../../core/errors.ts';
import { formatMinor } from '../../core/money.ts';
import { CART_LINES_MAX, LINE_QTY_MAX, priceCart, settleCash, type PricedCart, type PricingInput, type Product, type TokenTender } from '../../core/pricing.ts';
import { cartLine, cartPriceRequest, parse, saleCommitRequest } from '../../core/schemas.ts';
import type { TokenType } from '../../core/token-types.ts';
import { codeOf, expectCode, refMulDivRound } from './helpers.ts';

const VENDOR = 'store-1';
const NOW = new Date('2025-06-01T12:00:00Z');

const TT: Record<string, TokenType> = {
  ACME: { code: 'ACME', name: 'Acme points', kind: 'vendor', issuer: VENDOR, faceValueMinor: 10, currency: 'EUR', acceptedBy: [VENDOR] },
  MALL: { code: 'MALL', name: 'Mall tokens', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' },
  MFR: {
    code: 'MFR',
    name: 'Choco coupon',
    kind: 'manufacturer',
    issuer: 'choco-co',
    faceValueMinor: 100,
    currency: 'EUR',
    acceptedBy: '*',
    products: ['5901234123457'],
  },
  OTHER: { code: 'OTHER', name: 'Elsewhere', kind: 'vendor', issuer: 'store-2', faceValueMinor: 10, currency: 'EUR', acceptedBy: ['store-2', 'store-3'] },
  OLD: { code: 'OLD', name: 'Old promo', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', expiresAt: '2025-01-01T00:00:00Z' },
  GIFT: { code: 'GIFT', name: 'Gift card', kind: 'gift', issuer: 'mall', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' },
};
const TOKEN_TYPES: ReadonlyMap<string, TokenType> = new Map(Object.entries(TT));

const COFFEE: Product = { gtin: '4006381333931', name: 'Coffee', priceMinor: 350, tokenPrices: { ACME: 35, MALL: 40 } };
const CHOC: Product = { gtin: '5901234123457', name: 'Chocolate', priceMinor: 199, tokenPrices: { ACME: 20, MFR: 2, MALL: 22 } };
const MILK: Product = { gtin: '96385074', name: 'Milk', priceMinor: 125, tokenPrices: { MALL: 13 } };
const CASH_ONLY: Product = { gtin: '0036000291452', name: 'Batteries', priceMinor: 999, tokenPrices: {} };
const GUM: Product = { gtin: '9780306406157', name: 'Gum', priceMinor: 5, tokenPrices: { ACME: 2 } };
const MINTS: Product = { gtin: '73513537', name: 'Mints', priceMinor: 45, tokenPrices: { ACME: 10 } };
// Priced in MFR tokens by mistake but not on the manufacturer's list.
const FAKE_CHOC: Product = { gtin: '40170725', name: 'Other chocolate', priceMinor: 150, tokenPrices: { MFR: 2 } };

function input(lines: [Product, number][], tenders: TokenTender[] = [], balances: Record<string, number> | null = null, now = NOW): PricingInput {
  return {
    vendorId: VENDOR,
    currency: 'EUR',
    now,
    lines: lines.map(([product, qty]) => ({ product, qty })),
    tokenTypes: TOKEN_TYPES,
    tenders,
    balances,
  };
}

function coveredMinor(cart: PricedCart): number {
  return cart.allocations.reduce((t, a) => t + a.coversMinor, 0);
}

describe('core/pricing', () => {
  describe('totals from the catalog only', () => {
    it('prices lines and the total from catalog prices times quantities', () => {
      const cart = priceCart(input([
        [COFFEE, 2],
        [MILK, 1],
      ]));
      expect(cart.currency).to.equal('EUR');
      expect(cart.lines).to.deep.equal([
        { lineNo: 1, gtin: COFFEE.gtin, name: 'Coffee', qty: 2, unitPriceMinor: 350, totalMinor: 700, unitTokenPrices: { ACME: 35, MALL: 40 } },
        { lineNo: 2, gtin: MILK.gtin, name: 'Milk', qty: 1, unitPriceMinor: 125, totalMinor: 125, unitTokenPrices: { MALL: 13 } },
      ]);
      expect(cart.totalMinor).to.equal(825);
      expect(cart.cashDueMinor).to.equal(825);
      expect(cart.allocations).to.deep.equal([]);
      expect(cart.debits).to.deep.equal({});
      // ACME does not price the milk, so only MALL has a whole-cart token total: 2*40 + 13.
      expect(cart.totalsByToken).to.deep.equal({ MALL: 93 });
    });

    it('follows the catalog: another catalog price gives another total', () => {
      const dearer = { ...COFFEE, priceMinor: 420 };
      expect(priceCart(input([[dearer, 3]])).totalMinor).to.equal(1260);
      expect(priceCart(input([[COFFEE, 3]])).totalMinor).to.equal(1050);
    });

    it('copies token prices so later catalog edits do not change a priced line', () => {
      const product: Product = { ...COFFEE, tokenPrices: { ...COFFEE.tokenPrices } };
      const cart = priceCart(input([[product, 1]]));
      product.tokenPrices.ACME = 1;
      expect(cart.lines[0]?.unitTokenPrices.ACME).to.equal(35);
    });

    it('takes no price or total from the request: the request schemas have no such field and refuse one', () => {
      expect(Object.keys(saleCommitRequest.shape).sort()).to.deep.equal(['card', 'cashTenderedMinor', 'customerPin', 'instruments', 'key', 'lines', 'tenders', 'walletPin']);
      expect(Object.keys(cartLine.shape).sort()).to.deep.equal(['code', 'qty']);
      const valid = { key: 'term-1:0f6c2d9e-7f0a-4a43-9b1e-3c2d1e0f9a8b', lines: [{ code: COFFEE.gtin, qty: 2 }], card: null, tenders: [], cashTenderedMinor: 1000 };
      expect(parse(saleCommitRequest, valid)).to.deep.equal(valid);
      for (const injected of [
        { ...valid, totalMinor: 1 },
        { ...valid, total: 1 },
        { ...valid, price: 1 },
        { ...valid, cashDueMinor: 0 },
        { ...valid, lines: [{ code: COFFEE.gtin, qty: 2, priceMinor: 1 }] },
        { ...valid, lines: [{ code: COFFEE.gtin, qty: 2, price: 1 }] },
        { ...valid, tenders: [{ token: 'ACME', units: 1, coversMinor: 350 }] },
      ]) {
        expectCode(() => parse(saleCommitRequest, injected), 'CORE_ERR_VALIDATION');
      }
      expectCode(() => parse(cartPriceRequest, { lines: [{ code: COFFEE.gtin, qty: 1 }], totalMinor: 0 }), 'CORE_ERR_VALIDATION');
    });

    it('property: an injected field of any name is refused by saleCommitRequest', () => {
      const allowed = new Set(['key', 'lines', 'card', 'tenders', 'cashTenderedMinor']);
      fc.assert(
        fc.property(
          fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !allowed.has(k) && k !== '__proto__'),
          fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
          (name, value) => {
            const body: Record<string, unknown> = { key: 'term-1:abcdefgh', lines: [{ code: COFFEE.gtin, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 0 };
            body[name] = value;
            expect(codeOf(() => parse(saleCommitRequest, body))).to.equal('CORE_ERR_VALIDATION');
          },
        ),
      );
    });
  });

  describe('paying with tokens', () => {
    it('pays the whole cart with one token type when units are omitted', () => {
      const cart = priceCart(input([
        [COFFEE, 2],
        [CHOC, 1],
      ], [{ token: 'ACME' }], { ACME: 100 }));
      expect(cart.allocations).to.deep.equal([
        { lineNo: 1, token: 'ACME', units: 70, coversMinor: 700 },
        { lineNo: 2, token: 'ACME', units: 20, coversMinor: 199 },
      ]);
      expect(cart.debits).to.deep.equal({ ACME: 90 });
      expect(cart.totalsByToken).to.deep.equal({ ACME: 90, MALL: 102 });
      expect(cart.cashDueMinor).to.equal(0);
    });

    it('pays part with tokens and the rest in cash, covering round-half-up(total * k / n)', () => {
      // 10 of 35 units on a 350 line: exactly 100.
      let cart = priceCart(input([[COFFEE, 1]], [{ token: 'ACME', units: 10 }], { ACME: 10 }));
      expect(cart.allocations).to.deep.equal([{ lineNo: 1, token: 'ACME', units: 10, coversMinor: 100 }]);
      expect(cart.cashDueMinor).to.equal(250);
      // 3 of 20 units on a 199 line: 29.85 rounds to 30.
      cart = priceCart(input([[CHOC, 1]], [{ token: 'ACME', units: 3 }], { ACME: 50 }));
      expect(cart.allocations[0]?.coversMinor).to.equal(30);
      expect(cart.cashDueMinor).to.equal(169);
      // 1 of 2 units on a 5 line: an exact half, 2.5, rounds up to 3.
      cart = priceCart(input([[GUM, 1]], [{ token: 'ACME', units: 1 }], { ACME: 50 }));
      expect(cart.allocations[0]?.coversMinor).to.equal(3);
      expect(cart.cashDueMinor).to.equal(2);
      // 1 of 10 units on a 45 line: 4.5 rounds up to 5, not to the even 4.
      cart = priceCart(input([[MINTS, 1]], [{ token: 'ACME', units: 1 }], { ACME: 50 }));
      expect(cart.allocations[0]?.coversMinor).to.equal(5);
      expect(cart.cashDueMinor).to.equal(40);
      // 1 of 20 units on a 199 line: 9.95 rounds to 10.
      cart = priceCart(input([[CHOC, 1]], [{ token: 'ACME', units: 1 }], { ACME: 50 }));
      expect(cart.cashDueMinor).to.equal(189);
    });

    it('fills lines in cart order and leaves only the last one part paid', () => {
      const cart = priceCart(input([
        [COFFEE, 1],
        [CHOC, 1],
        [GUM, 1],
      ], [{ token: 'ACME', units: 45 }], { ACME: 45 }));
      // 35 pay the coffee in full; 10 of the chocolate's 20 cover 99.5 -> 100; the gum is untouched.
      expect(cart.allocations).to.deep.equal([
        { lineNo: 1, token: 'ACME', units: 35, coversMinor: 350 },
        { lineNo: 2, token: 'ACME', units: 10, coversMinor: 100 },
      ]);
      expect(cart.totalMinor).to.equal(554);
      expect(cart.cashDueMinor).to.equal(104);
    });

    it('pays a line with one token type only: the next tender skips a line the first one touched', () => {
      const cart = priceCart(input([
        [COFFEE, 1],
        [CHOC, 1],
      ], [{ token: 'ACME', units: 10 }, { token: 'MALL' }], { ACME: 10, MALL: 500 }));
      expect(cart.allocations).to.deep.equal([
        { lineNo: 1, token: 'ACME', units: 10, coversMinor: 100 },
        { lineNo: 2, token: 'MALL', units: 22, coversMinor: 199 },
      ]);
      expect(cart.debits).to.deep.equal({ ACME: 10, MALL: 22 });
      expect(cart.cashDueMinor).to.equal(250);
      // The order of tenders decides: MALL first takes both lines, ACME has nothing left.
      const e = expectCode(
        () => priceCart(input([
          [COFFEE, 1],
          [CHOC, 1],
        ], [{ token: 'MALL' }, { token: 'ACME', units: 10 }], { ACME: 10, MALL: 500 })),
        'CORE_ERR_PRODUCT_NOT_ELIGIBLE',
      );
      expect(e.message).to.contain('no item left in this cart can be paid with ACME tokens');
    });

    it('accepts a tender of zero units as no payment', () => {
      const cart = priceCart(input([[COFFEE, 1]], [{ token: 'ACME', units: 0 }], { ACME: 0 }));
      expect(cart.allocations).to.deep.equal([]);
      expect(cart.debits).to.deep.equal({});
      expect(cart.cashDueMinor).to.equal(350);
    });
  });

  describe('refusals', () => {
    it('lets a manufacturer token pay only its listed products', () => {
      const cart = priceCart(input([
        [COFFEE, 1],
        [CHOC, 2],
        [FAKE_CHOC, 1],
      ], [{ token: 'MFR' }], { MFR: 10 }));
      expect(cart.allocations).to.deep.equal([{ lineNo: 2, token: 'MFR', units: 4, coversMinor: 398 }]);
      expect(cart.debits).to.deep.equal({ MFR: 4 });
      expect(cart.cashDueMinor).to.equal(350 + 150);
    });

    it('refuses a manufacturer token for a cart without its listed products: CORE_ERR_PRODUCT_NOT_ELIGIBLE, "only buys listed products"', () => {
      for (const lines of [[[COFFEE, 1]], [[FAKE_CHOC, 1]], [[COFFEE, 1], [FAKE_CHOC, 3]]] as [Product, number][][]) {
        const e = expectCode(() => priceCart(input(lines, [{ token: 'MFR' }], { MFR: 10 })), 'CORE_ERR_PRODUCT_NOT_ELIGIBLE');
        expect(e.message).to.contain('only buys listed products');
        expect(e.details).to.deep.equal({ token: 'MFR' });
      }
    });

    it('refuses tokens that no line is priced in', () => {
      const e = expectCode(() => priceCart(input([[CASH_ONLY, 1]], [{ token: 'ACME' }], { ACME: 100 })), 'CORE_ERR_PRODUCT_NOT_ELIGIBLE');
      expect(e.message).to.contain('ACME');
    });

    it('refuses a token not accepted at this vendor with CORE_ERR_TOKEN_NOT_ACCEPTED', () => {
      const e = expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'OTHER' }], { OTHER: 100 })), 'CORE_ERR_TOKEN_NOT_ACCEPTED');
      expect(e.message).to.equal('OTHER tokens are not accepted in this store');
      expect(e.details).to.deep.equal({ token: 'OTHER' });
    });

    it('refuses expired tokens with CORE_ERR_TOKEN_EXPIRED, from the instant of expiry', () => {
      const lines: [Product, number][] = [[COFFEE, 1]];
      const tenders = [{ token: 'OLD' }];
      const e = expectCode(() => priceCart(input(lines, tenders, { OLD: 100 })), 'CORE_ERR_TOKEN_EXPIRED');
      expect(e.message).to.equal('OLD tokens expired on 2025-01-01');
      expectCode(() => priceCart(input(lines, tenders, { OLD: 100 }, new Date('2025-01-01T00:00:00Z'))), 'CORE_ERR_TOKEN_EXPIRED');
      // Not priced in OLD, so the first refusal after the expiry check is the eligibility one.
      expectCode(() => priceCart(input(lines, tenders, { OLD: 100 }, new Date('2024-12-31T23:59:59.999Z'))), 'CORE_ERR_PRODUCT_NOT_ELIGIBLE');
      const priced: Product = { ...COFFEE, tokenPrices: { OLD: 30 } };
      const cart = priceCart(input([[priced, 1]], tenders, { OLD: 100 }, new Date('2024-12-31T23:59:59.999Z')));
      expect(cart.debits).to.deep.equal({ OLD: 30 });
    });

    it('refuses an unknown token type with CORE_ERR_TOKEN_UNKNOWN', () => {
      expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'NOPE' }], { NOPE: 100 })), 'CORE_ERR_TOKEN_UNKNOWN');
    });

    it('names the shortfall when the balance is too small: "not enough ACME tokens: 120 short"', () => {
      const lines: [Product, number][] = [
        [COFFEE, 2],
        [CHOC, 5],
      ]; // 70 + 100 = 170 ACME
      {
        const e = expectCode(() => priceCart(input(lines, [{ token: 'ACME', units: 170 }], { ACME: 50 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
        expect(e.message).to.equal('not enough ACME tokens: 120 short');
        expect(e.details).to.deep.equal({ token: 'ACME', shortUnits: 120 });
      }
      // Without a count the tender takes what is held, and the rest is cash.
      const held = priceCart(input(lines, [{ token: 'ACME' }], { ACME: 50 }));
      expect(held.debits).to.deep.equal({ ACME: 50 });
      expect(held.cashDueMinor).to.be.above(0);
      // With nothing held, the shortfall is everything the cart could take.
      const empty = expectCode(() => priceCart(input(lines, [{ token: 'ACME' }], { ACME: 0 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
      expect(empty.message).to.equal('not enough ACME tokens: 170 short');
      const e = expectCode(() => priceCart(input(lines, [{ token: 'ACME', units: 60 }], { ACME: 50 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
      expect(e.details?.shortUnits).to.equal(10);
      // At the boundary: a balance of exactly what is wanted pays; one unit less is 1 short.
      expect(priceCart(input(lines, [{ token: 'ACME' }], { ACME: 170 })).debits).to.deep.equal({ ACME: 170 });
      expect(priceCart(input(lines, [{ token: 'ACME', units: 60 }], { ACME: 60 })).debits).to.deep.equal({ ACME: 60 });
      {
        const one = expectCode(() => priceCart(input(lines, [{ token: 'ACME', units: 170 }], { ACME: 169 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
        expect(one.message).to.equal('not enough ACME tokens: 1 short');
        expect(one.details).to.deep.equal({ token: 'ACME', shortUnits: 1 });
        expect(priceCart(input(lines, [{ token: 'ACME' }], { ACME: 169 })).debits).to.deep.equal({ ACME: 169 });
      }
      // No balance at all in that token.
      const none = expectCode(() => priceCart(input(lines, [{ token: 'MALL', units: 7 }], { ACME: 50 })), 'CORE_ERR_INSUFFICIENT_TOKENS');
      expect(none.message).to.equal('not enough MALL tokens: 7 short');
    });

    it('refuses more units than the cart can take with CORE_ERR_TENDER_EXCESS, even from a rich customer', () => {
      const lines: [Product, number][] = [
        [COFFEE, 2],
        [CHOC, 5],
      ];
      const e = expectCode(() => priceCart(input(lines, [{ token: 'ACME', units: 171 }], { ACME: 10_000 })), 'CORE_ERR_TENDER_EXCESS');
      expect(e.details).to.deep.equal({ token: 'ACME', maxUnits: 170 });
      expect(e.message).to.contain('170');
      // The excess is reported before the shortfall.
      expectCode(() => priceCart(input(lines, [{ token: 'ACME', units: 500 }], { ACME: 1 })), 'CORE_ERR_TENDER_EXCESS');
      // Manufacturer tokens can take only their listed lines.
      const m = expectCode(() => priceCart(input([[COFFEE, 1], [CHOC, 1]], [{ token: 'MFR', units: 3 }], { MFR: 10 })), 'CORE_ERR_TENDER_EXCESS');
      expect(m.details).to.deep.equal({ token: 'MFR', maxUnits: 2 });
    });

    it('refuses tokens without a customer, the same token twice, and bad tender units', () => {
      expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'ACME' }], null)), 'CORE_ERR_TENDER_WITHOUT_CUSTOMER');
      expectCode(() => priceCart(input([[COFFEE, 2]], [{ token: 'ACME', units: 5 }, { token: 'ACME', units: 5 }], { ACME: 100 })), 'CORE_ERR_VALIDATION');
      expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'ACME', units: -5 }], { ACME: 100 })), 'CORE_ERR_AMOUNT');
      expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'ACME', units: 2.5 }], { ACME: 100 })), 'CORE_ERR_AMOUNT');
      expectCode(() => priceCart(input([[COFFEE, 1]], [{ token: 'ACME', units: 2 ** 53 }], { ACME: 100 })), 'CORE_ERR_OVERFLOW');
    });

    it('refuses an empty cart, too many lines and bad quantities', () => {
      expectCode(() => priceCart(input([])), 'CORE_ERR_EMPTY_CART');
      const full = Array.from({ length: CART_LINES_MAX }, (): [Product, number] => [GUM, 1]);
      expect(priceCart(input(full)).totalMinor).to.equal(CART_LINES_MAX * 5);
      expectCode(() => priceCart(input([...full, [GUM, 1]])), 'CORE_ERR_VALIDATION');
      expect(priceCart(input([[GUM, LINE_QTY_MAX]])).totalMinor).to.equal(LINE_QTY_MAX * 5);
      expectCode(() => priceCart(input([[GUM, 0]])), 'CORE_ERR_VALIDATION');
      expectCode(() => priceCart(input([[GUM, LINE_QTY_MAX + 1]])), 'CORE_ERR_VALIDATION');
      expectCode(() => priceCart(input([[GUM, -1]])), 'CORE_ERR_AMOUNT');
      expectCode(() => priceCart(input([[GUM, 1.5]])), 'CORE_ERR_AMOUNT');
      expectCode(() => priceCart(input([[GUM, '2' as unknown as number]])), 'CORE_ERR_AMOUNT');
    });

    it('throws CORE_ERR_OVERFLOW instead of an imprecise total', () => {
      const huge: Product = { ...GUM, priceMinor: Math.floor(Number.MAX_SAFE_INTEGER / 2) };
      expectCode(() => priceCart(input([[huge, 3]])), 'CORE_ERR_OVERFLOW');
      expectCode(() => priceCart(input([[huge, 1], [huge, 1], [huge, 1]])), 'CORE_ERR_OVERFLOW');
    });
  });

  describe('settleCash', () => {
    const eur = (m: number) => formatMinor(m, 'EUR');

    it('returns the change', () => {
      expect(settleCash(825, 1000, eur)).to.deep.equal({ changeMinor: 175 });
      expect(settleCash(825, 825, eur)).to.deep.equal({ changeMinor: 0 });
      expect(settleCash(0, 0, eur)).to.deep.equal({ changeMinor: 0 });
      expect(settleCash(0, 500, eur)).to.deep.equal({ changeMinor: 500 });
    });

    it('refuses too little cash with CORE_ERR_CASH_SHORT naming the amount missing', () => {
      const e = expectCode(() => settleCash(825, 800, eur), 'CORE_ERR_CASH_SHORT');
      expect(e.message).to.equal('not enough cash: €0.25 more needed');
      expect(e.details).to.deep.equal({ shortMinor: 25 });
      expect(expectCode(() => settleCash(1, 0, eur), 'CORE_ERR_CASH_SHORT').details).to.deep.equal({ shortMinor: 1 });
    });

    it('checks the tendered amount', () => {
      expectCode(() => settleCash(100, -1, eur), 'CORE_ERR_AMOUNT');
      expectCode(() => settleCash(100, 150.5, eur), 'CORE_ERR_AMOUNT');
      expectCode(() => settleCash(100, NaN, eur), 'CORE_ERR_AMOUNT');
      expectCode(() => settleCash(100, 2 ** 53, eur), 'CORE_ERR_OVERFLOW');
    });

    it('property: change = tendered - due when enough, else the shortfall is due - tendered', () => {
      fc.assert(
        fc.property(fc.maxSafeNat(), fc.maxSafeNat(), (due, tendered) => {
          if (tendered >= due) {
            expect(settleCash(due, tendered, eur).changeMinor).to.equal(Number(BigInt(tendered) - BigInt(due)));
          } else {
            let thrown: unknown = null;
            try {
              settleCash(due, tendered, eur);
            } catch (err) {
              thrown = err;
            }
            expect(thrown).to.be.instanceOf(MallposError);
            expect((thrown as MallposError).code).to.equal('CORE_ERR_CASH_SHORT');
            expect((thrown as MallposError).details).to.deep.equal({ shortMinor: Number(BigInt(due) - BigInt(tendered)) });
          }
        }),
      );
    });
  });

  describe('properties over random carts and tenders', () => {
    const SPENDABLE = ['ACME', 'MALL', 'MFR', 'GIFT'] as const;
    const GTINS = ['4006381333931', '5901234123457', '96385074', '0036000291452', '9780306406157', '73513537', '40170725', '4005808262816'];

    const product: fc.Arbitrary<Product> = fc.record({
      gtin: fc.constantFrom(...GTINS),
      name: fc.constant('item'),
      priceMinor: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100_000 })),
      tokenPrices: fc.dictionary(fc.constantFrom(...SPENDABLE), fc.integer({ min: 1, max: 1000 }), { maxKeys: 4 }),
    });

    const scenario = fc.record({
      lines: fc.array(fc.record({ product, qty: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: LINE_QTY_MAX })) }), { minLength: 1, maxLength: 12 }),
      mfrProducts: fc.subarray(GTINS),
      tenders: fc
        .shuffledSubarray([...SPENDABLE], { minLength: 0, maxLength: 4 })
        .chain((tokens) =>
          fc.tuple(...tokens.map((token) => fc.record({ token: fc.constant(token), units: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: undefined }) }))),
        ),
      balances: fc.record({
        ACME: fc.integer({ min: 0, max: 2_000_000 }),
        MALL: fc.integer({ min: 0, max: 2_000_000 }),
        MFR: fc.integer({ min: 0, max: 2_000_000 }),
        GIFT: fc.integer({ min: 0, max: 2_000_000 }),
      }),
    });

    type ScenarioValue = {
      lines: { product: Product; qty: number }[];
      mfrProducts: string[];
      tenders: TokenTender[];
      balances: Record<string, number>;
    };

    function build(s: ScenarioValue): PricingInput {
      const types = new Map(TOKEN_TYPES);
      types.set('MFR', { ...(TT.MFR as TokenType), products: s.mfrProducts });
      return {
        vendorId: VENDOR,
        currency: 'EUR',
        now: NOW,
        lines: s.lines,
        tokenTypes: types,
        tenders: s.tenders,
        balances: s.balances,
      };
    }
    it('property: cash due + covers = total, every debit fits the balance and the allocations, and no line has two token types', () => {
      let priced = 0;
      let withTokens = 0;
      let partial = 0;
      fc.assert(
        fc.property(scenario, (s) => {
          const pricing = build(s);
          const balances: Record<string, number> = s.balances;
          let cart: PricedCart;
          try {
            cart = priceCart(pricing);
          } catch (err) {
            expect(err).to.be.instanceOf(MallposError);
            const e = err as MallposError;
            expect(['CORE_ERR_PRODUCT_NOT_ELIGIBLE', 'CORE_ERR_TENDER_EXCESS', 'CORE_ERR_INSUFFICIENT_TOKENS']).to.include(e.code);
            const token = e.details?.token as string;
            const tender = s.tenders.find((t) => t.token === token);
            expect(tender, 'the error names a tendered token').to.not.equal(undefined);
            if (e.code === 'CORE_ERR_INSUFFICIENT_TOKENS') {
              const shortUnits = e.details?.shortUnits as number;
              expect(shortUnits).to.be.above(0);
              if (tender?.units !== undefined) expect(shortUnits).to.equal(tender.units - (balances[token] ?? 0));
              else expect(balances[token] ?? 0, 'a tender without a count fails only when nothing is held').to.equal(0);
              expect(e.message).to.equal(`not enough ${token} tokens: ${shortUnits} short`);
            }
            if (e.code === 'CORE_ERR_TENDER_EXCESS') expect(tender?.units).to.be.above(e.details?.maxUnits as number);
            return;
          }
          priced++;

          // Lines and total come from the catalog, computed here with BigInt.
          const expectedTotal = s.lines.reduce((t, l) => t + BigInt(l.product.priceMinor) * BigInt(l.qty), 0n);
          expect(BigInt(cart.totalMinor)).to.equal(expectedTotal);
          cart.lines.forEach((line, i) => {
            const src = s.lines[i] as { product: Product; qty: number };
            expect(line.lineNo).to.equal(i + 1);
            expect(line.unitPriceMinor).to.equal(src.product.priceMinor);
            expect(line.totalMinor).to.equal(src.product.priceMinor * src.qty);
          });
          expect(cart.lines).to.have.length(s.lines.length);

          // Whole-cart totals exist exactly for the tokens every line is priced in.
          const everywhere = SPENDABLE.filter((t) => s.lines.every((l) => l.product.tokenPrices[t] !== undefined));
          expect(Object.keys(cart.totalsByToken).sort()).to.deep.equal([...everywhere].sort());
          for (const t of everywhere) expect(cart.totalsByToken[t]).to.equal(s.lines.reduce((n, l) => n + (l.product.tokenPrices[t] ?? 0) * l.qty, 0));

          // Cash due + covers = total, 0 <= cash due <= total.
          expect(cart.cashDueMinor + coveredMinor(cart)).to.equal(cart.totalMinor);
          expect(cart.cashDueMinor).to.be.within(0, cart.totalMinor);

          // No line gets two token types; each allocation is valid for its line.
          const tokenOfLine = new Map<number, string>();
          for (const a of cart.allocations) {
            expect(tokenOfLine.has(a.lineNo), `line ${a.lineNo} paid twice`).to.equal(false);
            tokenOfLine.set(a.lineNo, a.token);
            const line = cart.lines[a.lineNo - 1];
            const src = s.lines[a.lineNo - 1];
            if (line === undefined || src === undefined) throw new Error(`allocation to a line that does not exist: ${a.lineNo}`);
            const unitPrice = src.product.tokenPrices[a.token];
            expect(unitPrice, `line ${a.lineNo} is priced in ${a.token}`).to.not.equal(undefined);
            if (a.token === 'MFR') expect(s.mfrProducts).to.include(line.gtin);
            const lineUnits = (unitPrice ?? 0) * line.qty;
            expect(a.units).to.be.within(1, lineUnits);
            const expectedCover = a.units === lineUnits ? line.totalMinor : Number(refMulDivRound(BigInt(line.totalMinor), BigInt(a.units), BigInt(lineUnits)));
            expect(a.coversMinor).to.equal(expectedCover);
            expect(a.coversMinor).to.be.within(0, line.totalMinor);
          }

          // Debits: per token the sum of its allocation units, never above the balance, and exactly what was tendered.
          const unitsByToken: Record<string, number> = {};
          for (const a of cart.allocations) unitsByToken[a.token] = (unitsByToken[a.token] ?? 0) + a.units;
          expect(cart.debits).to.deep.equal(unitsByToken);
          for (const [token, units] of Object.entries(cart.debits)) {
            expect(units).to.be.at.most(balances[token] ?? 0);
            expect(s.tenders.map((t) => t.token)).to.include(token);
          }
          for (const t of s.tenders) {
            if (t.units !== undefined) expect(cart.debits[t.token] ?? 0).to.equal(t.units);
          }

          // Tenders in order, lines in cart order: a token's allocations go up the cart and only its last can be partial.
          const byToken = new Map<string, typeof cart.allocations>();
          for (const a of cart.allocations) byToken.set(a.token, [...(byToken.get(a.token) ?? []), a]);
          for (const [token, list] of byToken) {
            list.forEach((a, i) => {
              if (i > 0) expect(a.lineNo).to.be.above((list[i - 1] as (typeof list)[number]).lineNo);
              const full = (s.lines[a.lineNo - 1]?.product.tokenPrices[token] ?? 0) * (s.lines[a.lineNo - 1]?.qty ?? 0);
              if (i < list.length - 1) expect(a.units, 'only the last line of a tender is part paid').to.equal(full);
              else if (a.units < full) partial++;
            });
          }
          // A tender with units omitted takes every line it may pay that no earlier tender
          // touched, unless the customer's balance runs out first: then it takes all of it.
          const before = new Set<number>();
          for (const t of s.tenders) {
            if (t.units === undefined && cart.debits[t.token] !== undefined && cart.debits[t.token] === (balances[t.token] ?? 0)) {
              for (const a of cart.allocations) if (a.token === t.token) before.add(a.lineNo);
              continue;
            }
            if (t.units === undefined) {
              s.lines.forEach((l, i) => {
                const mayPay = l.product.tokenPrices[t.token] !== undefined && (t.token !== 'MFR' || s.mfrProducts.includes(l.product.gtin));
                if (mayPay && !before.has(i + 1)) expect(tokenOfLine.get(i + 1), `line ${i + 1} left unpaid by ${t.token}`).to.equal(t.token);
              });
            }
            for (const a of cart.allocations) if (a.token === t.token) before.add(a.lineNo);
          }
          if (cart.allocations.length > 0) withTokens++;

          // The price of the cart does not depend on how it is paid.
          const plain = priceCart({ ...pricing, tenders: [], balances: null });
          expect(plain.lines).to.deep.equal(cart.lines);
          expect(plain.totalMinor).to.equal(cart.totalMinor);
          expect(plain.totalsByToken).to.deep.equal(cart.totalsByToken);
          expect(plain.cashDueMinor).to.equal(cart.totalMinor);
        }),
        { numRuns: 1500 },
      );
      // Guard against a vacuous property.
      expect(priced).to.be.above(300);
      expect(withTokens).to.be.above(150);
      expect(partial).to.be.above(20);
    });
  });
});
