import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { saleBodyHash, type SaleInput } from '../../vendor-server/ledger/service.ts';

/** The body a sale's idempotency hash covers, as journals written so far hashed it. */
function reference(input: SaleInput): string {
  const body = {
    lines: input.lines.map((l) => ({ code: l.code, qty: l.qty })),
    card: input.card,
    tenders: input.tenders.map((t) => (t.units === undefined ? { token: t.token } : { token: t.token, units: t.units })),
    cash: input.cashTenderedMinor,
  };
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

describe('vendor-server: the hash of a sale request', () => {
  it('is the sha-256 of the JSON of { lines, card, tenders, cash }, so keys journalled before still match their retries', () => {
    // Any text (quotes, backslashes, control and non-BMP characters) and any integer.
    const input = fc.record({
      key: fc.string(),
      lines: fc.array(fc.record({ code: fc.string({ unit: 'binary' }), qty: fc.integer() }), { maxLength: 5 }),
      card: fc.option(fc.string({ unit: 'binary' }), { nil: null }),
      tenders: fc.array(fc.record({ token: fc.string({ unit: 'binary' }), units: fc.option(fc.maxSafeNat(), { nil: undefined }) }), { maxLength: 4 }),
      cashTenderedMinor: fc.maxSafeNat(),
    });
    fc.assert(fc.property(input, (i) => saleBodyHash(i) === reference(i)), { numRuns: 2000 });
  });

  it('tells apart requests that differ in one field, and leaves out a tender count not given', () => {
    const sale: SaleInput = { key: 't1:a', lines: [{ code: '4006381333931', qty: 2 }], card: 'C0000000018', tenders: [{ token: 'ACME' }], cashTenderedMinor: 500 };
    const h = saleBodyHash(sale);
    expect(h).to.equal(reference(sale));
    expect(saleBodyHash({ ...sale, key: 't1:b' })).to.equal(h);
    expect(saleBodyHash({ ...sale, tenders: [{ token: 'ACME', units: undefined }] })).to.equal(h);
    for (const other of [
      { ...sale, lines: [{ code: '4006381333931', qty: 3 }] },
      { ...sale, card: null },
      { ...sale, tenders: [{ token: 'ACME', units: 1 }] },
      { ...sale, tenders: [] },
      { ...sale, cashTenderedMinor: 501 },
    ]) expect(saleBodyHash(other)).to.not.equal(h);
  });
});
