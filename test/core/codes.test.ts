import { expect } from 'chai';
import fc from 'fast-check';
import {
  CODE_LENGTH_MAX,
  gs1CheckDigit,
  luhnCheckDigit,
  makeCardNumber,
  makeSaleId,
  parseCardNumber,
  parseProductCode,
  parseSaleId,
  parseScan,
  plainProductGtin,
  withGs1CheckDigit,
} from '../../core/codes.ts';
import { MallposError } from '../../core/errors.ts';
import { codeOf, expectCode } from './helpers.ts';

/** GS1 validation written independently: weights 1, 3, 1, ... from the right over the whole code. */
function gs1Valid(code: string): boolean {
  let total = 0;
  for (let i = 0; i < code.length; i++) total += Number(code[code.length - 1 - i]) * (i % 2 === 0 ? 1 : 3);
  return total % 10 === 0;
}

/** Luhn validation written independently: double every second digit from the right, check digit included. */
function luhnValid(digits: string): boolean {
  let total = 0;
  [...digits].reverse().forEach((ch, i) => {
    const d = Number(ch) * (i % 2 === 1 ? 2 : 1);
    total += d > 9 ? d - 9 : d;
  });
  return total % 10 === 0;
}

/** Every code that differs from `code` in exactly one digit position. */
function singleDigitChanges(code: string, from = 0): string[] {
  const out: string[] = [];
  for (let i = from; i < code.length; i++) {
    for (let d = 0; d <= 9; d++) {
      if (String(d) === code[i]) continue;
      out.push(`${code.slice(0, i)}${d}${code.slice(i + 1)}`);
    }
  }
  return out;
}

const digitString = (length: number) => fc.array(fc.integer({ min: 0, max: 9 }), { minLength: length, maxLength: length }).map((a) => a.join(''));

// Real codes from GS1 examples and retail packaging.
const REAL_EAN13 = ['4006381333931', '5901234123457', '9780306406157', '4005808262816', '8710398503985', '0012345678905'];
const REAL_EAN8 = ['96385074', '73513537', '40170725'];
const REAL_UPCA = ['036000291452', '012345678905', '042100005264', '614141000036'];

describe('core/codes', () => {
  describe('GS1 product codes', () => {
    it('accepts real EAN-13 codes as they are', () => {
      for (const code of REAL_EAN13) {
        expect(gs1Valid(code), `${code} is a valid GTIN`).to.equal(true);
        expect(parseProductCode(code)).to.deep.equal({ gtin: code, format: 'EAN-13' });
      }
    });

    it('accepts real EAN-8 codes as they are', () => {
      for (const code of REAL_EAN8) {
        expect(gs1Valid(code), `${code} is a valid GTIN`).to.equal(true);
        expect(parseProductCode(code)).to.deep.equal({ gtin: code, format: 'EAN-8' });
      }
    });

    it('normalises UPC-A to EAN-13 with a leading zero', () => {
      expect(parseProductCode('036000291452')).to.deep.equal({ gtin: '0036000291452', format: 'UPC-A' });
      for (const code of REAL_UPCA) {
        expect(gs1Valid(code), `${code} is a valid GTIN`).to.equal(true);
        expect(parseProductCode(code)).to.deep.equal({ gtin: `0${code}`, format: 'UPC-A' });
      }
    });

    it('computes the known check digits', () => {
      expect(gs1CheckDigit('400638133393')).to.equal(1);
      expect(gs1CheckDigit('590123412345')).to.equal(7);
      expect(gs1CheckDigit('9638507')).to.equal(4);
      expect(gs1CheckDigit('03600029145')).to.equal(2);
      expect(gs1CheckDigit('000000000000')).to.equal(0);
      expect(withGs1CheckDigit('400638133393')).to.equal('4006381333931');
      expect(withGs1CheckDigit('9638507')).to.equal('96385074');
    });

    it('trims surrounding whitespace (CR/LF from the scanner)', () => {
      expect(parseProductCode(' 4006381333931\r\n').gtin).to.equal('4006381333931');
    });

    it('rejects a wrong check digit with CORE_ERR_CHECK_DIGIT', () => {
      const e = expectCode(() => parseProductCode('4006381333932'), 'CORE_ERR_CHECK_DIGIT');
      expect(e.message).to.contain('4006381333932').and.contain('scan it again');
      expect(e.details).to.deep.equal({ code: '4006381333932' });
      expectCode(() => parseProductCode('96385075'), 'CORE_ERR_CHECK_DIGIT');
      expectCode(() => parseProductCode('036000291453'), 'CORE_ERR_CHECK_DIGIT');
    });

    it('rejects other lengths, letters and empty input with CORE_ERR_CODE_MALFORMED', () => {
      for (const code of ['', ' ', '1', '1234567', '123456789', '12345678901', '40063813339310', '00012345600012', '4006381A33931', '400638133393X', '-4006381333931', '4006381 333931', '4006381333931.', '٤٠٠٦٣٨١٣٣٣٩٣١']) {
        expectCode(() => parseProductCode(code), 'CORE_ERR_CODE_MALFORMED');
      }
      expect(expectCode(() => parseProductCode('123456789'), 'CORE_ERR_CODE_MALFORMED').message).to.contain('8, 12 or 13 digits');
    });

    it('property: withGs1CheckDigit makes codes that parse and that an independent validator accepts', () => {
      fc.assert(
        fc.property(fc.constantFrom(7, 11, 12), fc.integer({ min: 0, max: 2 ** 31 }), (bodyLength, seed) => {
          const body = String(seed).padStart(bodyLength, '0').slice(-bodyLength);
          const code = withGs1CheckDigit(body);
          expect(code).to.have.length(bodyLength + 1);
          expect(gs1Valid(code)).to.equal(true);
          // Exactly one check digit makes the code valid.
          const valid = [...'0123456789'].filter((d) => gs1Valid(`${body}${d}`));
          expect(valid).to.deep.equal([code.slice(-1)]);
          const parsed = parseProductCode(code);
          expect(parsed.gtin).to.equal(bodyLength === 11 ? `0${code}` : code);
        }),
      );
    });

    it('property: every single-digit change of a valid code is caught', () => {
      fc.assert(
        fc.property(fc.constantFrom(7, 11, 12).chain((n) => digitString(n)), (body) => {
          const code = withGs1CheckDigit(body);
          for (const changed of singleDigitChanges(code)) {
            expect(codeOf(() => parseProductCode(changed)), changed).to.equal('CORE_ERR_CHECK_DIGIT');
          }
        }),
        { numRuns: 200 },
      );
      for (const code of [...REAL_EAN13, ...REAL_EAN8, ...REAL_UPCA]) {
        for (const changed of singleDigitChanges(code)) expect(codeOf(() => parseProductCode(changed)), changed).to.equal('CORE_ERR_CHECK_DIGIT');
      }
    });

    it('property: parseProductCode accepts a code exactly when the independent validator does', () => {
      fc.assert(
        fc.property(fc.constantFrom(8, 12, 13).chain((n) => digitString(n)), (code) => {
          const result = codeOf(() => parseProductCode(code));
          expect(result).to.equal(gs1Valid(code) ? null : 'CORE_ERR_CHECK_DIGIT');
        }),
      );
    });
  });

  describe('customer cards', () => {
    it('makes cards from known serials', () => {
      expect(makeCardNumber(0)).to.equal('C0000000000');
      expect(makeCardNumber(1)).to.equal('C0000000018');
      expect(makeCardNumber(123_456_789)).to.equal('C1234567897');
      expect(luhnCheckDigit('799273987')).to.equal(Number([...'0123456789'].find((d) => luhnValid(`799273987${d}`))));
    });

    it('parses a card, upper-casing and trimming it', () => {
      expect(parseCardNumber('C1234567897')).to.equal('C1234567897');
      expect(parseCardNumber(' c1234567897\n')).to.equal('C1234567897');
    });

    it('rejects malformed cards with CORE_ERR_CODE_MALFORMED and a wrong Luhn digit with CORE_ERR_CHECK_DIGIT', () => {
      for (const raw of ['', 'C', 'C123456789', 'C123456789700', 'X1234567897', '1234567897', 'C12345678A7', 'CC1234567897', 'C 1234567897']) {
        expectCode(() => parseCardNumber(raw), 'CORE_ERR_CODE_MALFORMED');
      }
      const e = expectCode(() => parseCardNumber('C1234567898'), 'CORE_ERR_CHECK_DIGIT');
      expect(e.message).to.contain('C1234567898');
    });

    it('rejects serials outside 0..999 999 999 as programmer errors', () => {
      for (const n of [-1, 1_000_000_000, 1.5, NaN, 2 ** 53]) {
        expect(() => makeCardNumber(n)).to.throw(Error, /assertion failed/);
        let thrown: unknown = null;
        try {
          makeCardNumber(n);
        } catch (err) {
          thrown = err;
        }
        expect(thrown).to.not.be.instanceOf(MallposError);
      }
    });

    it('property: makeCardNumber/parseCardNumber round-trip and the number passes an independent Luhn check', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 999_999_999 }), (n) => {
          const card = makeCardNumber(n);
          expect(card).to.match(/^C[0-9]{10}$/);
          expect(Number(card.slice(1, 10))).to.equal(n);
          expect(luhnValid(card.slice(1))).to.equal(true);
          expect(parseCardNumber(card)).to.equal(card);
          expect(parseCardNumber(card.toLowerCase())).to.equal(card);
          expect(parseScan(card)).to.deep.equal({ kind: 'customer', card });
        }),
      );
    });

    it('property: any single-digit change of a card is caught', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 999_999_999 }), (n) => {
          const card = makeCardNumber(n);
          for (const changed of singleDigitChanges(card, 1)) {
            expect(codeOf(() => parseCardNumber(changed)), changed).to.equal('CORE_ERR_CHECK_DIGIT');
          }
        }),
        { numRuns: 300 },
      );
    });

    it('property: parseCardNumber accepts C + 10 digits exactly when the independent Luhn check does', () => {
      fc.assert(
        fc.property(digitString(10), (digits) => {
          expect(codeOf(() => parseCardNumber(`C${digits}`))).to.equal(luhnValid(digits) ? null : 'CORE_ERR_CHECK_DIGIT');
        }),
      );
    });
  });

  describe('sale ids', () => {
    it('makes and parses known sale ids', () => {
      expect(makeSaleId(1)).to.equal('S0000000001');
      expect(makeSaleId(9_999_999_999)).to.equal('S9999999999');
      expect(parseSaleId('S0000000042')).to.deep.equal({ saleId: 'S0000000042', seq: 42 });
      expect(parseSaleId(' s0000000042\r')).to.deep.equal({ saleId: 'S0000000042', seq: 42 });
    });

    it('rejects seq 0, other lengths and letters with CORE_ERR_CODE_MALFORMED', () => {
      for (const raw of ['S0000000000', 'S000000001', 'S00000000001', 'S000000000A', 'X0000000001', '', 'S']) {
        expectCode(() => parseSaleId(raw), 'CORE_ERR_CODE_MALFORMED');
      }
    });

    it('rejects seqs outside 1..9 999 999 999 as programmer errors', () => {
      for (const n of [0, -1, 10_000_000_000, 2.5]) expect(() => makeSaleId(n)).to.throw(Error, /assertion failed/);
    });

    it('property: round-trips through makeSaleId, parseSaleId and parseScan', () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 9_999_999_999 }), (seq) => {
          const saleId = makeSaleId(seq);
          expect(saleId).to.match(/^S[0-9]{10}$/);
          expect(parseSaleId(saleId)).to.deep.equal({ saleId, seq });
          expect(parseScan(saleId)).to.deep.equal({ kind: 'sale', saleId });
        }),
      );
    });
  });

  describe('parseScan', () => {
    it('classifies products, customer cards and receipts', () => {
      expect(parseScan('4006381333931')).to.deep.equal({ kind: 'product', gtin: '4006381333931', format: 'EAN-13' });
      expect(parseScan('96385074')).to.deep.equal({ kind: 'product', gtin: '96385074', format: 'EAN-8' });
      expect(parseScan('036000291452')).to.deep.equal({ kind: 'product', gtin: '0036000291452', format: 'UPC-A' });
      expect(parseScan('C0000000018')).to.deep.equal({ kind: 'customer', card: 'C0000000018' });
      expect(parseScan('c0000000018')).to.deep.equal({ kind: 'customer', card: 'C0000000018' });
      expect(parseScan('S0000000007')).to.deep.equal({ kind: 'sale', saleId: 'S0000000007' });
      expect(parseScan('4006381333931\r\n')).to.deep.equal({ kind: 'product', gtin: '4006381333931', format: 'EAN-13' });
    });

    it('passes on the typed error of the kind it recognised', () => {
      expectCode(() => parseScan('4006381333932'), 'CORE_ERR_CHECK_DIGIT');
      expectCode(() => parseScan('C0000000019'), 'CORE_ERR_CHECK_DIGIT');
      expectCode(() => parseScan('4006'), 'CORE_ERR_CODE_MALFORMED');
      expectCode(() => parseScan('C00'), 'CORE_ERR_CODE_MALFORMED');
      expectCode(() => parseScan('S0000000000'), 'CORE_ERR_CODE_MALFORMED');
    });

    it('rejects an unknown prefix with CORE_ERR_CODE_UNKNOWN_KIND', () => {
      for (const raw of ['X123', 'Q0000000018', '#4006381333931', ']E04006381333931', 'hello', '-1']) {
        const e = expectCode(() => parseScan(raw), 'CORE_ERR_CODE_UNKNOWN_KIND');
        expect(e.message).to.contain('neither a product, a customer card nor a receipt');
      }
    });

    it('rejects empty, over-long and non-string input with CORE_ERR_CODE_MALFORMED', () => {
      expectCode(() => parseScan(''), 'CORE_ERR_CODE_MALFORMED');
      expectCode(() => parseScan('4'.repeat(CODE_LENGTH_MAX + 1)), 'CORE_ERR_CODE_MALFORMED');
      expectCode(() => parseScan('X'.repeat(CODE_LENGTH_MAX + 1)), 'CORE_ERR_CODE_MALFORMED');
      for (const raw of [null, undefined, 4006381333931, {}, ['4006381333931']]) {
        expectCode(() => parseScan(raw as unknown as string), 'CORE_ERR_CODE_MALFORMED');
      }
    });

    it('property: any string gives a scan code or one of the scan error codes, never another exception', () => {
      fc.assert(
        fc.property(fc.string({ maxLength: 80 }), (raw) => {
          const code = codeOf(() => parseScan(raw));
          expect([null, 'CORE_ERR_CODE_MALFORMED', 'CORE_ERR_CHECK_DIGIT', 'CORE_ERR_CODE_UNKNOWN_KIND']).to.include(code);
        }),
      );
    });
  });

  describe('plainProductGtin', () => {
    /** What parseScan makes of a code when it reads it as a product, or null. */
    const viaParseScan = (code: string): string | null => {
      try {
        const scan = parseScan(code);
        return scan.kind === 'product' ? scan.gtin : null;
      } catch {
        return null;
      }
    };

    it('gives the GTIN parseScan gives wherever it answers, and never for a code parseScan refuses', () => {
      const digits = (n: number) => fc.array(fc.constantFrom(...'0123456789'), { minLength: n, maxLength: n }).map((a) => a.join(''));
      const valid = fc.constantFrom(7, 11, 12).chain(digits).map((body) => `${body}${gs1CheckDigit(body)}`);
      const near = fc.oneof(fc.constantFrom(8, 12, 13).chain(digits), valid.map((c) => ` ${c}`), valid.map((c) => `${c}\n`), valid.map((c) => `${c.slice(0, -1)}x`));
      fc.assert(
        fc.property(fc.oneof(valid, near, fc.string(), fc.string({ unit: 'binary', maxLength: 14 })), (code) => {
          const fast = plainProductGtin(code);
          if (fast !== null) expect(fast).to.equal(viaParseScan(code));
        }),
        { numRuns: 3000 },
      );
      fc.assert(fc.property(valid, (code) => plainProductGtin(code) === viaParseScan(code)));
    });

    it('reads EAN-13, EAN-8 and UPC-A, and leaves wrong check digits, spaces and other kinds to parseScan', () => {
      expect(plainProductGtin('4006381333931')).to.equal('4006381333931');
      expect(plainProductGtin('96385074')).to.equal('96385074');
      expect(plainProductGtin('036000291452')).to.equal('0036000291452');
      for (const code of ['4006381333932', ' 4006381333931', '4006381333931 ', 'C0000000018', 'S0000000001', '40063813339', '', '400638133393\u0661']) {
        expect(plainProductGtin(code)).to.equal(null);
      }
    });
  });
});
