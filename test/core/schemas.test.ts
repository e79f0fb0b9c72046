import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import type { z } from 'zod';
import { MallposError, type ErrorCode } from '../../core/errors.ts';
import { CART_LINES_MAX, LINE_QTY_MAX } from '../../core/pricing.ts';
import {
  TENDERS_MAX,
  allotmentRequest,
  bodyHash,
  cartLine,
  cartPriceRequest,
  cashierLoginRequest,
  customerLookupRequest,
  customerRegister,
  issuanceRequest,
  pairRequest,
  parse,
  parseSaleCommitRequest,
  productLookupRequest,
  productUpsert,
  receiptRequest,
  saleCommitFast,
  saleCommitRequest,
  saleRefundRequest,
  saleStatusRequest,
  staffUpsert,
  terminalCreate,
  tokenTender,
  tokenTypeSchema,
} from '../../core/schemas.ts';
import { codeOf, expectCode } from './helpers.ts';

const KEY = 'term-1:0f6c2d9e-7f0a-4a43-9b1e-3c2d1e0f9a8b';
const COMMIT = { key: KEY, lines: [{ code: '4006381333931', qty: 2 }], card: 'C0000000018', tenders: [{ token: 'ACME', units: 10 }, { token: 'MALL' }], cashTenderedMinor: 500 };
const REFUND = { key: KEY, saleId: 'S0000000001', reason: 'wrong size', supervisor: { staffId: 'sup-1', pin: '1234' } };
const PRODUCT = { code: '4006381333931', name: 'Coffee', priceMinor: 350, tokenPrices: { ACME: 35 } };
const TOKEN_TYPE = {
  code: 'MFR',
  name: 'Choco coupon',
  kind: 'manufacturer',
  issuer: 'choco-co',
  faceValueMinor: 100,
  currency: 'EUR',
  acceptedBy: ['store-1'],
  products: ['5901234123457'],
  expiresAt: '2026-01-01T00:00:00Z',
};
const ISSUANCE = { customerId: 'cust-1', token: 'ACME', units: 50, reason: 'purchase', cashMinor: 500 };
const ALLOTMENT = { token: 'MALL', units: 1000, reference: 'allotment 2025-06' };

/** Sets the value at a dotted path of a deep copy (array indexes as numbers). */
function withValue(body: unknown, path: string, value: unknown): unknown {
  const copy = structuredClone(body) as Record<string, unknown>;
  const parts = path.split('.');
  let node: Record<string, unknown> = copy;
  for (const part of parts.slice(0, -1)) node = node[part] as Record<string, unknown>;
  node[parts[parts.length - 1] as string] = value;
  return copy;
}

/** Removes the value at a dotted path of a deep copy. */
function without(body: unknown, path: string): unknown {
  const copy = structuredClone(body) as Record<string, unknown>;
  const parts = path.split('.');
  let node: Record<string, unknown> = copy;
  for (const part of parts.slice(0, -1)) node = node[part] as Record<string, unknown>;
  delete node[parts[parts.length - 1] as string];
  return copy;
}

function expectParseError(schema: z.ZodType, body: unknown, code: ErrorCode, path?: string): MallposError {
  const e = expectCode(() => parse(schema, body), code);
  const issues = e.details?.issues as { path: string; message: string }[];
  expect(issues).to.be.an('array').with.length.within(1, 5);
  if (path !== undefined) {
    expect(issues[0]?.path).to.equal(path);
    expect(e.message.startsWith(`${path}: `), e.message).to.equal(true);
  }
  return e;
}

// Bad amounts and the code each must produce.
const BAD_AMOUNTS: [unknown, ErrorCode][] = [
  [-1, 'CORE_ERR_AMOUNT'],
  [-0.5, 'CORE_ERR_AMOUNT'],
  [1.5, 'CORE_ERR_AMOUNT'],
  [NaN, 'CORE_ERR_AMOUNT'],
  [Infinity, 'CORE_ERR_AMOUNT'],
  ['3', 'CORE_ERR_AMOUNT'],
  ['', 'CORE_ERR_AMOUNT'],
  [null, 'CORE_ERR_AMOUNT'],
  [true, 'CORE_ERR_AMOUNT'],
  [[5], 'CORE_ERR_AMOUNT'],
  [{ value: 5 }, 'CORE_ERR_AMOUNT'],
  [2 ** 53, 'CORE_ERR_OVERFLOW'],
  [1e20, 'CORE_ERR_OVERFLOW'],
  [Number.MAX_VALUE, 'CORE_ERR_OVERFLOW'],
];

// Every amount field of every payload: [name, schema, valid body, path].
const AMOUNT_FIELDS: [string, z.ZodType, unknown, string][] = [
  ['sale:commit qty', saleCommitRequest, COMMIT, 'lines.0.qty'],
  ['sale:commit tender units', saleCommitRequest, COMMIT, 'tenders.0.units'],
  ['sale:commit cashTenderedMinor', saleCommitRequest, COMMIT, 'cashTenderedMinor'],
  ['cart:price qty', cartPriceRequest, { lines: [{ code: '96385074', qty: 1 }] }, 'lines.0.qty'],
  ['product priceMinor', productUpsert, PRODUCT, 'priceMinor'],
  ['product token price', productUpsert, PRODUCT, 'tokenPrices.ACME'],
  ['allotment units', allotmentRequest, ALLOTMENT, 'units'],
  ['issuance units', issuanceRequest, ISSUANCE, 'units'],
  ['issuance cashMinor', issuanceRequest, ISSUANCE, 'cashMinor'],
  ['token type faceValueMinor', tokenTypeSchema, TOKEN_TYPE, 'faceValueMinor'],
];

describe('core/schemas', () => {
  describe('valid payloads', () => {
    it('parse to the same data (names trimmed)', () => {
      expect(parse(saleCommitRequest, COMMIT)).to.deep.equal(COMMIT);
      expect(parse(saleRefundRequest, { ...REFUND, reason: '  wrong size ' })).to.deep.equal(REFUND);
      expect(parse(productUpsert, { ...PRODUCT, name: '  Coffee\n' })).to.deep.equal(PRODUCT);
      expect(parse(tokenTypeSchema, TOKEN_TYPE)).to.deep.equal(TOKEN_TYPE);
      expect(parse(tokenTypeSchema, { ...TOKEN_TYPE, acceptedBy: '*' }).acceptedBy).to.equal('*');
      expect(parse(issuanceRequest, ISSUANCE)).to.deep.equal(ISSUANCE);
      expect(parse(allotmentRequest, ALLOTMENT)).to.deep.equal(ALLOTMENT);
      expect(parse(cartPriceRequest, { lines: [{ code: '96385074', qty: 1 }] })).to.deep.equal({ lines: [{ code: '96385074', qty: 1 }] });
      expect(parse(cartPriceRequest, { lines: [{ code: '96385074', qty: 1 }], card: null, tenders: [] })).to.deep.equal({ lines: [{ code: '96385074', qty: 1 }], card: null, tenders: [] });
      expect(parse(productLookupRequest, { code: '96385074' })).to.deep.equal({ code: '96385074' });
      expect(parse(customerLookupRequest, { card: 'C0000000018' })).to.deep.equal({ card: 'C0000000018' });
      expect(parse(saleStatusRequest, { key: KEY })).to.deep.equal({ key: KEY });
      expect(parse(receiptRequest, { saleId: 'S0000000001' })).to.deep.equal({ saleId: 'S0000000001' });
      expect(parse(cashierLoginRequest, { staffId: 'ann', pin: '0000' })).to.deep.equal({ staffId: 'ann', pin: '0000' });
      expect(parse(customerRegister, { name: 'Ann' })).to.deep.equal({ name: 'Ann' });
      expect(parse(terminalCreate, { name: 'Till 1' })).to.deep.equal({ name: 'Till 1' });
      expect(parse(pairRequest, { code: '1234' })).to.deep.equal({ code: '1234' });
      expect(parse(staffUpsert, { id: 'ann', name: 'Ann', role: 'supervisor', pin: '123456' })).to.deep.equal({ id: 'ann', name: 'Ann', role: 'supervisor', pin: '123456' });
      expect(parse(tokenTender, { token: 'ACME' })).to.deep.equal({ token: 'ACME' });
    });

    it('accept amounts at their bounds', () => {
      expect(parse(cartLine, { code: '1', qty: 1 }).qty).to.equal(1);
      expect(parse(cartLine, { code: '1', qty: LINE_QTY_MAX }).qty).to.equal(LINE_QTY_MAX);
      expect(parse(saleCommitRequest, { ...COMMIT, cashTenderedMinor: 0 }).cashTenderedMinor).to.equal(0);
      expect(parse(saleCommitRequest, { ...COMMIT, cashTenderedMinor: Number.MAX_SAFE_INTEGER }).cashTenderedMinor).to.equal(Number.MAX_SAFE_INTEGER);
      expect(parse(tokenTender, { token: 'ACME', units: 0 }).units).to.equal(0);
    });
  });

  describe('amounts', () => {
    for (const [name, schema, body, path] of AMOUNT_FIELDS) {
      it(`${name}: negative, fractional, non-number and huge values get CORE_ERR_AMOUNT or CORE_ERR_OVERFLOW at ${path}`, () => {
        expect(() => parse(schema, body), 'the base body is valid').to.not.throw();
        for (const [value, code] of BAD_AMOUNTS) {
          const e = expectParseError(schema, withValue(body, path, value), code, path);
          expect(e.message).to.match(code === 'CORE_ERR_OVERFLOW' ? /is too large$/ : /must (be a whole number|not be negative)$/);
        }
      });
    }

    it('a missing required amount is refused', () => {
      expectParseError(saleCommitRequest, without(COMMIT, 'cashTenderedMinor'), 'CORE_ERR_AMOUNT', 'cashTenderedMinor');
      expectParseError(saleCommitRequest, without(COMMIT, 'lines.0.qty'), 'CORE_ERR_AMOUNT', 'lines.0.qty');
    });

    it('quantities outside 1..9999 and zero allotment or issuance units get CORE_ERR_VALIDATION', () => {
      expectParseError(saleCommitRequest, withValue(COMMIT, 'lines.0.qty', 0), 'CORE_ERR_VALIDATION', 'lines.0.qty');
      expectParseError(saleCommitRequest, withValue(COMMIT, 'lines.0.qty', LINE_QTY_MAX + 1), 'CORE_ERR_VALIDATION', 'lines.0.qty');
      expectParseError(allotmentRequest, { ...ALLOTMENT, units: 0 }, 'CORE_ERR_VALIDATION', 'units');
      expectParseError(issuanceRequest, { ...ISSUANCE, units: 0 }, 'CORE_ERR_VALIDATION', 'units');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, faceValueMinor: 0 }, 'CORE_ERR_VALIDATION', 'faceValueMinor');
    });

    it('property: any non-integer or negative cashTenderedMinor is refused with CORE_ERR_AMOUNT, unsafe integers with CORE_ERR_OVERFLOW', () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.double().filter((d) => !Number.isInteger(d)),
            fc.integer({ max: -1 }),
            fc.string(),
            fc.constant(null),
            fc.double({ min: 2 ** 53, noNaN: true }).filter(Number.isFinite),
          ),
          (value) => {
            const expected = typeof value === 'number' && Number.isInteger(value) && value >= 2 ** 53 ? 'CORE_ERR_OVERFLOW' : 'CORE_ERR_AMOUNT';
            expect(codeOf(() => parse(saleCommitRequest, { ...COMMIT, cashTenderedMinor: value }))).to.equal(expected);
          },
        ),
      );
    });
  });

  describe('unknown fields', () => {
    const cases: [string, z.ZodType, unknown, string][] = [
      ['sale:commit', saleCommitRequest, { ...COMMIT, totalMinor: 1 }, ''],
      ['sale:commit line', saleCommitRequest, withValue(COMMIT, 'lines.0.price', 1), 'lines.0'],
      ['sale:commit tender', saleCommitRequest, withValue(COMMIT, 'tenders.0.coversMinor', 1), 'tenders.0'],
      ['sale:refund', saleRefundRequest, { ...REFUND, amountMinor: 1 }, ''],
      ['sale:refund supervisor', saleRefundRequest, withValue(REFUND, 'supervisor.role', 'supervisor'), 'supervisor'],
      ['cart:price', cartPriceRequest, { lines: [{ code: '1', qty: 1 }], discount: 10 }, ''],
      ['product', productUpsert, { ...PRODUCT, cost: 1 }, ''],
      ['token type', tokenTypeSchema, { ...TOKEN_TYPE, royaltyBps: 1 }, ''],
      ['issuance', issuanceRequest, { ...ISSUANCE, balance: 1 }, ''],
      ['allotment', allotmentRequest, { ...ALLOTMENT, issuer: 'mall' }, ''],
      ['staff', staffUpsert, { id: 'ann', name: 'Ann', role: 'cashier', pin: '1234', admin: true }, ''],
      ['sale:status', saleStatusRequest, { key: KEY, force: true }, ''],
    ];
    for (const [name, schema, body, path] of cases) {
      it(`${name}: an unknown field gets CORE_ERR_VALIDATION`, () => {
        const e = expectParseError(schema, body, 'CORE_ERR_VALIDATION', path === '' ? undefined : path);
        expect(e.message).to.match(/Unrecognized key/);
      });
    }

    it('non-object bodies get CORE_ERR_VALIDATION', () => {
      for (const body of [null, undefined, 'sale', 42, [], [COMMIT], true]) expectParseError(saleCommitRequest, body, 'CORE_ERR_VALIDATION');
    });
  });

  describe('sizes', () => {
    const line = { code: '4006381333931', qty: 1 };

    it('bounds the number of lines and tenders', () => {
      const full = Array.from({ length: CART_LINES_MAX }, () => line);
      expect(parse(saleCommitRequest, { ...COMMIT, lines: full }).lines).to.have.length(CART_LINES_MAX);
      expectParseError(saleCommitRequest, { ...COMMIT, lines: [...full, line] }, 'CORE_ERR_VALIDATION', 'lines');
      expectParseError(cartPriceRequest, { lines: [...full, line] }, 'CORE_ERR_VALIDATION', 'lines');
      expectParseError(saleCommitRequest, { ...COMMIT, lines: [] }, 'CORE_ERR_VALIDATION', 'lines');
      const tenders = Array.from({ length: TENDERS_MAX }, (_, i) => ({ token: `T${i}X` }));
      expect(parse(saleCommitRequest, { ...COMMIT, tenders }).tenders).to.have.length(TENDERS_MAX);
      expectParseError(saleCommitRequest, { ...COMMIT, tenders: [...tenders, { token: 'EXTRA' }] }, 'CORE_ERR_VALIDATION', 'tenders');
      expectParseError(cartPriceRequest, { lines: [line], tenders: [...tenders, { token: 'EXTRA' }] }, 'CORE_ERR_VALIDATION', 'tenders');
    });

    it('bounds token prices, acceptance lists and product lists', () => {
      const prices = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`T${i}X`, 1]));
      expect(Object.keys(parse(productUpsert, { ...PRODUCT, tokenPrices: prices(16) }).tokenPrices)).to.have.length(16);
      expectParseError(productUpsert, { ...PRODUCT, tokenPrices: prices(17) }, 'CORE_ERR_VALIDATION', 'tokenPrices');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, acceptedBy: Array.from({ length: 1001 }, (_, i) => `s${i}`) }, 'CORE_ERR_VALIDATION', 'acceptedBy');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, products: Array.from({ length: 10_001 }, () => '96385074') }, 'CORE_ERR_VALIDATION', 'products');
    });

    it('bounds strings: scan codes, names, reasons', () => {
      expect(parse(productLookupRequest, { code: 'x'.repeat(64) }).code).to.have.length(64);
      expectParseError(productLookupRequest, { code: 'x'.repeat(65) }, 'CORE_ERR_VALIDATION', 'code');
      expectParseError(productLookupRequest, { code: '' }, 'CORE_ERR_VALIDATION', 'code');
      expectParseError(terminalCreate, { name: 'x'.repeat(81) }, 'CORE_ERR_VALIDATION', 'name');
      expectParseError(terminalCreate, { name: '   ' }, 'CORE_ERR_VALIDATION', 'name');
      expectParseError(saleRefundRequest, { ...REFUND, reason: 'x'.repeat(201) }, 'CORE_ERR_VALIDATION', 'reason');
      expectParseError(saleRefundRequest, { ...REFUND, reason: ' \t ' }, 'CORE_ERR_VALIDATION', 'reason');
      expectParseError(pairRequest, { code: '123' }, 'CORE_ERR_VALIDATION', 'code');
      expectParseError(pairRequest, { code: 'x'.repeat(33) }, 'CORE_ERR_VALIDATION', 'code');
    });

    it('reports at most five issues', () => {
      const e = expectParseError(saleCommitRequest, { key: 'x', lines: [], card: 5, tenders: 'a', cashTenderedMinor: -1, a: 1, b: 2 }, 'CORE_ERR_VALIDATION');
      expect(e.details?.issues).to.have.length(5);
    });
  });

  describe('malformed keys, codes and ids', () => {
    it('idempotency keys are 8-128 letters, digits or . _ : - starting with a letter or digit', () => {
      for (const key of ['abcdefgh', 'a'.repeat(128), 'T1:1234-abcd', 'x.y_z:0-9']) expect(parse(saleStatusRequest, { key }).key).to.equal(key);
      for (const key of ['', 'abcdefg', 'a'.repeat(129), '-abcdefgh', ':abcdefgh', 'abc defgh', 'abc/defgh', 'abcdefgh\n', 'ключ-123456', 'abcd€fgh', 12345678, null]) {
        expectParseError(saleStatusRequest, { key }, 'CORE_ERR_VALIDATION', 'key');
        expectParseError(saleCommitRequest, { ...COMMIT, key }, 'CORE_ERR_VALIDATION', 'key');
      }
      expectParseError(saleCommitRequest, without(COMMIT, 'key'), 'CORE_ERR_VALIDATION', 'key');
      expectParseError(saleRefundRequest, { ...REFUND, key: 'short' }, 'CORE_ERR_VALIDATION', 'key');
    });

    it('token codes are 2-12 capitals or digits starting with a capital', () => {
      for (const token of ['A1', 'ACME', 'ABCDEFGHIJKL']) expect(parse(tokenTender, { token }).token).to.equal(token);
      for (const token of ['acme', 'A', 'ABCDEFGHIJKLM', 'AC-ME', '1ACME', 'AC ME', '', 'ÄCME']) {
        expectParseError(tokenTender, { token }, 'CORE_ERR_VALIDATION', 'token');
      }
      expectParseError(productUpsert, { ...PRODUCT, tokenPrices: { acme: 1 } }, 'CORE_ERR_VALIDATION', 'tokenPrices.acme');
    });

    it('a __proto__ key from JSON is refused in a strict object and never reaches a prototype through a record', () => {
      const body = JSON.parse(`{"key":"${KEY}","lines":[{"code":"1","qty":1}],"card":null,"tenders":[],"cashTenderedMinor":0,"__proto__":{"admin":true}}`) as unknown;
      expectParseError(saleCommitRequest, body, 'CORE_ERR_VALIDATION');
      // A record key that is not a token code is refused, __proto__ included, rather than dropped.
      expectParseError(productUpsert, { ...PRODUCT, tokenPrices: JSON.parse('{"__proto__":{"ACME":1},"ACME":2}') as unknown }, 'CORE_ERR_VALIDATION', 'tokenPrices.__proto__');
      const product = parse(productUpsert, { ...PRODUCT, tokenPrices: JSON.parse('{"ACME":2}') as unknown });
      expect({ ...product.tokenPrices }).to.deep.equal({ ACME: 2 });
      expect(Object.getPrototypeOf(product.tokenPrices)).to.equal(null);
      expect(({} as Record<string, unknown>).ACME).to.equal(undefined);
    });

    it('no identifier may be a built-in property name, and no string may hold a lone surrogate', () => {
      for (const name of ['constructor', 'prototype', '__proto__', 'toString', 'valueOf', 'hasOwnProperty']) {
        expect(() => parse(issuanceRequest, { ...ISSUANCE, customerId: name })).to.throw(MallposError);
        expect(() => parse(cashierLoginRequest, { staffId: name, pin: '1234' })).to.throw(MallposError);
      }
      for (const broken of ['\ud800', 'a\udfffb', 'x\ud83d']) {
        expectParseError(customerRegister, { name: broken }, 'CORE_ERR_VALIDATION', 'name');
        expectParseError(saleRefundRequest, { ...REFUND, reason: broken }, 'CORE_ERR_VALIDATION', 'reason');
        expectParseError(allotmentRequest, { ...ALLOTMENT, reference: broken }, 'CORE_ERR_VALIDATION', 'reference');
        expectParseError(productLookupRequest, { code: broken }, 'CORE_ERR_VALIDATION', 'code');
      }
      // A pair of surrogates is one ordinary character and stays welcome.
      expect(parse(customerRegister, { name: 'Zoë 😀' }).name).to.equal('Zoë 😀');
      expectParseError(customerRegister, { name: 'Zoë\u0000' }, 'CORE_ERR_VALIDATION', 'name');
    });

    it('entity ids are 1-40 lower-case letters, digits or -', () => {
      for (const customerId of ['a', 'cust-1', 'a'.repeat(40)]) expect(parse(issuanceRequest, { ...ISSUANCE, customerId }).customerId).to.equal(customerId);
      for (const customerId of ['', 'Cust-1', '-cust', 'cust_1', 'a'.repeat(41), 'cust 1', '../etc']) {
        expectParseError(issuanceRequest, { ...ISSUANCE, customerId }, 'CORE_ERR_VALIDATION', 'customerId');
      }
      expectParseError(saleRefundRequest, withValue(REFUND, 'supervisor.staffId', 'Boss'), 'CORE_ERR_VALIDATION', 'supervisor.staffId');
    });

    it('PINs are 4-12 digits; roles, reasons and kinds are enumerations', () => {
      for (const pin of ['123', 'abcd', '1234567890123', '12 34', '']) {
        expectParseError(cashierLoginRequest, { staffId: 'ann', pin }, 'CORE_ERR_VALIDATION', 'pin');
      }
      expectParseError(staffUpsert, { id: 'ann', name: 'Ann', role: 'owner', pin: '1234' }, 'CORE_ERR_VALIDATION', 'role');
      expectParseError(issuanceRequest, { ...ISSUANCE, reason: 'gift' }, 'CORE_ERR_VALIDATION', 'reason');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, kind: 'coupon' }, 'CORE_ERR_VALIDATION', 'kind');
    });

    it('token types: currency, acceptance list, GTIN list and expiry date are checked', () => {
      for (const currency of ['eur', 'EURO', 'EU', '']) expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, currency }, 'CORE_ERR_VALIDATION', 'currency');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, acceptedBy: 'all' }, 'CORE_ERR_VALIDATION', 'acceptedBy');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, products: ['1234567'] }, 'CORE_ERR_VALIDATION', 'products.0');
      expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, products: ['12345678901234X'] }, 'CORE_ERR_VALIDATION', 'products.0');
      for (const expiresAt of ['2026-01-01', '2026-01-01T00:00:00', 'tomorrow', '2026-13-01T00:00:00Z', 1767225600000]) {
        expectParseError(tokenTypeSchema, { ...TOKEN_TYPE, expiresAt }, 'CORE_ERR_VALIDATION', 'expiresAt');
      }
      expect(parse(tokenTypeSchema, { ...TOKEN_TYPE, expiresAt: '2026-01-01T00:00:00+02:00' }).expiresAt).to.equal('2026-01-01T00:00:00+02:00');
    });

    it('property: arbitrary input to sale:commit gives data or a typed error, never another exception', () => {
      fc.assert(
        fc.property(fc.oneof(fc.anything(), fc.record({ key: fc.string(), lines: fc.anything(), card: fc.anything(), tenders: fc.anything(), cashTenderedMinor: fc.anything() })), (body) => {
          let thrown: unknown = null;
          try {
            parse(saleCommitRequest, body);
          } catch (err) {
            thrown = err;
          }
          if (thrown !== null) {
            expect(thrown).to.be.instanceOf(MallposError);
            expect(['CORE_ERR_VALIDATION', 'CORE_ERR_AMOUNT', 'CORE_ERR_OVERFLOW']).to.include((thrown as MallposError).code);
          }
        }),
      );
    });
  });

  describe('bodyHash', () => {
    const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

    /** A canonical JSON written here (sorted keys, no spaces) to decide when two bodies are the same. */
    function canonical(v: unknown): string {
      if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
      if (v !== null && typeof v === 'object') {
        const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
        entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
      }
      return JSON.stringify(v);
    }

    /** The same value with the keys of every object in reverse order. */
    function reversedKeys(v: unknown): unknown {
      if (Array.isArray(v)) return v.map(reversedKeys);
      if (v !== null && typeof v === 'object') {
        return Object.fromEntries(Object.entries(v as Record<string, unknown>).reverse().map(([k, x]) => [k, reversedKeys(x)]));
      }
      return v;
    }

    it('is the SHA-256 of the canonical JSON (RFC 8785) of the body, in hex', () => {
      expect(bodyHash({ b: 1, a: 'x' })).to.equal(sha256('{"a":"x","b":1}'));
      expect(bodyHash({ z: [3, { y: true, x: null }], a: 1.5 })).to.equal(sha256('{"a":1.5,"z":[3,{"x":null,"y":true}]}'));
      expect(bodyHash(null)).to.equal(sha256('null'));
      expect(bodyHash(COMMIT)).to.match(/^[0-9a-f]{64}$/);
    });

    it('does not depend on key order', () => {
      const a = { key: KEY, lines: [{ code: '1', qty: 2 }], card: null, tenders: [], cashTenderedMinor: 100 };
      const b = { cashTenderedMinor: 100, tenders: [], card: null, lines: [{ qty: 2, code: '1' }], key: KEY };
      expect(bodyHash(a)).to.equal(bodyHash(b));
    });

    it('differs for different bodies', () => {
      const base = bodyHash(COMMIT);
      expect(bodyHash({ ...COMMIT, cashTenderedMinor: 501 })).to.not.equal(base);
      expect(bodyHash(withValue(COMMIT, 'lines.0.qty', 3))).to.not.equal(base);
      expect(bodyHash({ ...COMMIT, tenders: [...COMMIT.tenders].reverse() }), 'array order matters').to.not.equal(base);
      expect(bodyHash({ ...COMMIT, card: null })).to.not.equal(base);
      expect(bodyHash({ a: 1 })).to.not.equal(bodyHash({ a: '1' }));
      expect(bodyHash({ a: 1 })).to.not.equal(bodyHash({ a: 1, b: null }));
      expect(bodyHash([1, 2])).to.not.equal(bodyHash([2, 1]));
    });

    it('property: equal for the same body in any key order, different for bodies that differ', () => {
      const json = fc.jsonValue({ maxDepth: 3 });
      fc.assert(
        fc.property(json, (v) => {
          expect(bodyHash(reversedKeys(v))).to.equal(bodyHash(v));
          expect(bodyHash(v)).to.equal(sha256(canonical(v)));
        }),
      );
      fc.assert(
        fc.property(json, json, (a, b) => {
          fc.pre(canonical(a) !== canonical(b));
          expect(bodyHash(a)).to.not.equal(bodyHash(b));
        }),
      );
    });
  });

  describe('parseSaleCommitRequest (the sale request without zod when it has the usual shape)', () => {
    /** The outcome of a parse: the value with its key order, or the error's code and message. */
    function outcome(run: () => unknown): string {
      try {
        return `ok ${JSON.stringify(run(), (_k, v: unknown) => (v === undefined ? '(undefined)' : v))}`;
      } catch (err) {
        if (!(err instanceof MallposError)) throw err;
        return `error ${err.code} ${err.message} ${JSON.stringify(err.details)}`;
      }
    }

    const valid = fc.record(
      {
        key: fc.constantFrom(KEY, 't001:abcdefgh', 'A.b_c:d-e0123456'),
        lines: fc.array(fc.record({ code: fc.constantFrom('4006381333931', 'x', ' C0000000018 ', 'é'.repeat(64)), qty: fc.integer({ min: 1, max: LINE_QTY_MAX }) }), { minLength: 1, maxLength: 4 }),
        card: fc.constantFrom(null, 'C0000000018', 'S0000000001'),
        tenders: fc.array(fc.oneof(fc.record({ token: fc.constantFrom('ACME', 'MALL', 'A1') }), fc.record({ token: fc.constantFrom('ACME', 'MALL'), units: fc.integer({ min: 0, max: 2 ** 40 }) })), { maxLength: TENDERS_MAX }),
        cashTenderedMinor: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.constant(Number.MAX_SAFE_INTEGER)),
        customerPin: fc.constantFrom('1234', '000000000000'),
      },
      { requiredKeys: ['key', 'lines', 'card', 'tenders', 'cashTenderedMinor'] },
    );

    /** Values that break one rule or another, or that zod alone may accept. */
    const odd = fc.oneof(
      fc.constantFrom(undefined, null, '', ' ', 'constructor', '__proto__', 'acme', 'ACME', 'x'.repeat(65), 'a\u0007b', '\ud800', 'C0000000018', '12', '1234'),
      fc.constantFrom(0, -0, -1, 1.5, 1, LINE_QTY_MAX, LINE_QTY_MAX + 1, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Infinity),
      fc.constantFrom(true, [], {}, [{}], [{ code: 'x', qty: 1 }], [{ token: 'ACME' }], { code: 'x', qty: 1 }),
      fc.constantFrom(
        Array.from({ length: TENDERS_MAX + 1 }, (_, i) => ({ token: `T${i}A` })),
        Array.from({ length: TENDERS_MAX }, (_, i) => ({ token: `T${i}A` })),
        Array.from({ length: CART_LINES_MAX + 1 }, () => ({ code: 'x', qty: 1 })),
        Array.from({ length: CART_LINES_MAX }, () => ({ code: 'x', qty: 1 })),
      ),
      fc.anything({ maxDepth: 2 }),
    );

    /** A valid request with one field, or one field of a line or tender, replaced or added. */
    const mutated = fc.tuple(valid, fc.constantFrom('key', 'lines', 'card', 'tenders', 'cashTenderedMinor', 'customerPin', 'extra', 'line.code', 'line.qty', 'line.extra', 'tender.token', 'tender.units', 'tender.extra', 'drop'), odd).map(([req, where, value]) => {
      const r = JSON.parse(JSON.stringify(req)) as Record<string, unknown> & { lines: Record<string, unknown>[]; tenders: Record<string, unknown>[] };
      const [head, field] = where.split('.') as [string, string | undefined];
      if (where === 'drop') delete r[value === 'card' ? 'card' : 'key'];
      else if (field === undefined) r[head] = value;
      else if (head === 'line') (r.lines[0] as Record<string, unknown>)[field] = value;
      else if (r.tenders[0] !== undefined) r.tenders[0][field] = value;
      return r;
    });

    it('takes the usual requests without zod, with the result zod gives', () => {
      const fast = saleCommitFast(COMMIT);
      expect(fast).to.not.equal(null);
      expect(fast).to.deep.equal(parse(saleCommitRequest, COMMIT));
      fc.assert(
        fc.property(valid, (req) => {
          const got = saleCommitFast(req);
          expect(got, JSON.stringify(req)).to.not.equal(null);
          expect(outcome(() => got)).to.equal(outcome(() => parse(saleCommitRequest, req)));
        }),
      );
    });

    it('property: gives exactly what zod gives (value and key order, or error code, message and details) for any input', () => {
      fc.assert(
        fc.property(fc.oneof(mutated, odd), (input) => {
          const fast = saleCommitFast(input);
          const zod = outcome(() => parse(saleCommitRequest, input));
          if (fast !== null) expect(outcome(() => fast), 'accepted without zod').to.equal(zod);
          expect(outcome(() => parseSaleCommitRequest(input))).to.equal(zod);
        }),
        { numRuns: 2000 },
      );
    });

    it('refuses through zod what it does not take whole: undefined optional fields, odd prototypes, unknown keys', () => {
      const withUndefinedPin = { ...COMMIT, customerPin: undefined };
      expect(saleCommitFast(withUndefinedPin)).to.equal(null);
      expect(parseSaleCommitRequest(withUndefinedPin)).to.deep.equal(parse(saleCommitRequest, withUndefinedPin));
      class Sneaky {
        key = KEY;
      }
      expect(saleCommitFast(Object.assign(new Sneaky(), COMMIT))).to.equal(null);
      expect(saleCommitFast(JSON.parse(`{"__proto__":{"x":1},${JSON.stringify(COMMIT).slice(1)}`))).to.equal(null);
      expectCode(() => parseSaleCommitRequest({ ...COMMIT, extra: 1 }), 'CORE_ERR_VALIDATION');
      expectCode(() => parseSaleCommitRequest({ ...COMMIT, cashTenderedMinor: -1 }), 'CORE_ERR_AMOUNT');
    });
  });
});
