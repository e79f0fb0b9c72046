import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { CORE_ERRORS, ERRORS, MallposError, MALL_ERRORS, POS_ERRORS, VND_ERRORS, assert, fail, isMallposError, type ErrorCode } from '../../core/errors.ts';

const ERRORS_MD = fileURLToPath(new URL('../../docs/ERRORS.md', import.meta.url));

/** docs/ERRORS.md, read fresh for each test so a missing file fails each check with a clear message. */
function readErrorsDoc(): string {
  try {
    return readFileSync(ERRORS_MD, 'utf8');
  } catch (err) {
    throw new Error(`docs/ERRORS.md cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}): every error code must be documented there`);
  }
}

/** Lines of the document that are headings ("## CODE") or table rows ("| `CODE` | ... |"). */
function headingsAndRows(doc: string): string[] {
  return doc.split(/\r?\n/).filter((line) => /^\s{0,3}#{1,6}\s/.test(line) || /^\s*\|.*\|\s*$/.test(line));
}

function documentedIn(lines: readonly string[], code: string): boolean {
  const re = new RegExp(`(^|[^A-Z0-9_])${code}([^A-Z0-9_]|$)`);
  return lines.some((line) => re.test(line));
}

describe('core/errors', () => {
  describe('the catalogue', () => {
    it('keeps one prefix per catalogue and merges them without collisions', () => {
      for (const code of Object.keys(CORE_ERRORS)) expect(code).to.match(/^CORE_ERR_[A-Z][A-Z0-9_]*$/);
      for (const code of Object.keys(VND_ERRORS)) expect(code).to.match(/^VND_ERR_[A-Z][A-Z0-9_]*$/);
      for (const code of Object.keys(POS_ERRORS)) expect(code).to.match(/^POS_ERR_[A-Z][A-Z0-9_]*$/);
      for (const code of Object.keys(MALL_ERRORS)) expect(code).to.match(/^MALL_ERR_[A-Z][A-Z0-9_]*$/);
      const total = [CORE_ERRORS, VND_ERRORS, POS_ERRORS, MALL_ERRORS].reduce((n, c) => n + Object.keys(c).length, 0);
      expect(Object.keys(ERRORS)).to.have.length(total);
      expect(ERRORS).to.deep.include(CORE_ERRORS).and.deep.include(VND_ERRORS).and.deep.include(POS_ERRORS).and.deep.include(MALL_ERRORS);
    });

    it('gives every code an HTTP error status and a plain message', () => {
      for (const [code, spec] of Object.entries(ERRORS)) {
        expect(spec.status, code).to.be.a('number').within(400, 599);
        expect(Number.isInteger(spec.status), code).to.equal(true);
        expect(spec.message, code).to.be.a('string').with.length.above(3);
        expect(spec.message, `${code} reads as a sentence for a person, not a code`).to.not.match(/_ERR_/);
      }
    });

    it('maps refusals a cashier can act on to 4xx and broken state to 5xx', () => {
      const status = (code: ErrorCode) => ERRORS[code].status;
      expect(status('CORE_ERR_VALIDATION')).to.equal(400);
      expect(status('CORE_ERR_AMOUNT')).to.equal(400);
      expect(status('CORE_ERR_INSUFFICIENT_TOKENS')).to.equal(409);
      expect(status('CORE_ERR_TOKEN_UNKNOWN')).to.equal(404);
      expect(status('VND_ERR_UNAUTHENTICATED')).to.equal(401);
      expect(status('VND_ERR_PAYLOAD_TOO_LARGE')).to.equal(413);
      expect(status('VND_ERR_RATE_LIMITED')).to.equal(429);
      expect(status('VND_ERR_SHUTTING_DOWN')).to.equal(503);
      expect(status('CORE_ERR_UNBALANCED')).to.equal(500);
    });
  });

  describe('MallposError', () => {
    it('carries the code, the catalogue status and the default message', () => {
      const e = new MallposError('CORE_ERR_CASH_SHORT');
      expect(e).to.be.instanceOf(Error);
      expect(e.name).to.equal('MallposError');
      expect(e.code).to.equal('CORE_ERR_CASH_SHORT');
      expect(e.status).to.equal(409);
      expect(e.message).to.equal('not enough cash tendered');
      expect(e.details).to.equal(undefined);
      expect(e.toWire()).to.deep.equal({ code: 'CORE_ERR_CASH_SHORT', message: 'not enough cash tendered' });
      expect(Object.keys(e.toWire())).to.not.include('details');
    });

    it('carries a specific message and details onto the wire', () => {
      const e = new MallposError('CORE_ERR_INSUFFICIENT_TOKENS', 'not enough ACME tokens: 120 short', { token: 'ACME', shortUnits: 120 });
      expect(e.message).to.equal('not enough ACME tokens: 120 short');
      expect(e.toWire()).to.deep.equal({
        code: 'CORE_ERR_INSUFFICIENT_TOKENS',
        message: 'not enough ACME tokens: 120 short',
        details: { token: 'ACME', shortUnits: 120 },
      });
      expect(JSON.parse(JSON.stringify(e.toWire()))).to.deep.equal(e.toWire());
    });

    it('fail throws a MallposError; isMallposError tells it from other errors', () => {
      let thrown: unknown = null;
      try {
        fail('VND_ERR_PIN', undefined, { staffId: 'ann' });
      } catch (err) {
        thrown = err;
      }
      expect(isMallposError(thrown)).to.equal(true);
      expect((thrown as MallposError).code).to.equal('VND_ERR_PIN');
      expect((thrown as MallposError).status).to.equal(403);
      expect((thrown as MallposError).details).to.deep.equal({ staffId: 'ann' });
      expect(isMallposError(new Error('x'))).to.equal(false);
      expect(isMallposError({ code: 'VND_ERR_PIN', message: 'x' })).to.equal(false);
      expect(isMallposError(null)).to.equal(false);
    });

    it('assert throws a plain Error for a broken invariant and passes otherwise', () => {
      expect(() => assert(1 + 1 === 2, 'arithmetic')).to.not.throw();
      expect(() => assert(false, 'batch seq follows the last one')).to.throw(Error, 'assertion failed: batch seq follows the last one');
      let thrown: unknown = null;
      try {
        assert(0, 'zero is falsy');
      } catch (err) {
        thrown = err;
      }
      expect(isMallposError(thrown)).to.equal(false);
    });
  });

  describe('the documentation check itself', () => {
    const sample = [
      '# Errors',
      '',
      'Prose mentioning CORE_ERR_AMOUNT does not count.',
      '## `CORE_ERR_VALIDATION`',
      '### CORE_ERR_OVERFLOW (400)',
      '| code | status | message |',
      '| --- | --- | --- |',
      '| `VND_ERR_PIN` | 403 | wrong staff id or PIN |',
      '|VND_ERR_FORBIDDEN|403|not allowed|',
      '| `CORE_ERR_CODE_MALFORMED` | 400 | this code cannot be read |',
      '    ## indented code block, not a heading: CORE_ERR_EMPTY_CART',
    ].join('\n');
    const lines = headingsAndRows(sample);

    it('finds codes in headings and table rows only', () => {
      expect(documentedIn(lines, 'CORE_ERR_VALIDATION')).to.equal(true);
      expect(documentedIn(lines, 'CORE_ERR_OVERFLOW')).to.equal(true);
      expect(documentedIn(lines, 'VND_ERR_PIN')).to.equal(true);
      expect(documentedIn(lines, 'VND_ERR_FORBIDDEN')).to.equal(true);
      expect(documentedIn(lines, 'CORE_ERR_AMOUNT'), 'prose').to.equal(false);
      expect(documentedIn(lines, 'CORE_ERR_EMPTY_CART'), 'code block').to.equal(false);
    });

    it('does not take a longer code for a shorter one', () => {
      expect(documentedIn(lines, 'CORE_ERR_CODE_MALFORMED')).to.equal(true);
      expect(documentedIn(lines, 'CORE_ERR_CODE')).to.equal(false);
      expect(documentedIn(headingsAndRows('## CORE_ERR_CODE'), 'CORE_ERR_CODE_MALFORMED')).to.equal(false);
    });
  });

  // docs/ERRORS.md is written by another part of the project; until it exists these tests fail on purpose.
  describe('docs/ERRORS.md', () => {
    it('exists and is not empty', () => {
      expect(readErrorsDoc().trim()).to.not.equal('');
    });

    for (const [name, catalogue] of [
      ['CORE_ERRORS', CORE_ERRORS],
      ['VND_ERRORS', VND_ERRORS],
      ['POS_ERRORS', POS_ERRORS],
      ['MALL_ERRORS', MALL_ERRORS],
    ] as const) {
      it(`documents every code of ${name} as a heading or a table row`, () => {
        const lines = headingsAndRows(readErrorsDoc());
        const missing = Object.keys(catalogue).filter((code) => !documentedIn(lines, code));
        expect(missing, `codes missing from docs/ERRORS.md headings and table rows: ${missing.join(', ')}`).to.deep.equal([]);
      });
    }

    it('documents no CORE_ERR_*, VND_ERR_*, POS_ERR_* or MALL_ERR_* code that the catalogue does not have', () => {
      const lines = headingsAndRows(readErrorsDoc());
      const mentioned = new Set(lines.flatMap((line) => line.match(/\b(?:CORE|VND|POS|MALL)_ERR_[A-Z][A-Z0-9_]*/g) ?? []));
      const stale = [...mentioned].filter((code) => !(code in ERRORS));
      expect(stale, `codes in docs/ERRORS.md that no longer exist: ${stale.join(', ')}`).to.deep.equal([]);
    });
  });
});
