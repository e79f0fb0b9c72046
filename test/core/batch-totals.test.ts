import { expect } from 'chai';
import { batchTotals, sha256Hex, verifyBatchEvents, type BatchPayload } from '../../core/index.ts';

/** Two events of vendor acme moving MALL and ACME, chained from the first hash. */
function payload(): BatchPayload {
  const e1 = JSON.stringify({ seq: 1, prev: null, vendor: 'acme', postings: [{ account: 'customer:c1', token: 'MALL', units: -5 }, { account: 'redeemed', token: 'MALL', units: 5 }] });
  const e2 = JSON.stringify({ seq: 2, prev: sha256Hex(e1), vendor: 'acme', postings: [{ account: 'customer:c1', token: 'ACME', units: -3 }, { account: 'redeemed', token: 'ACME', units: 3 }] });
  const events = [e1, e2];
  const totals = batchTotals(events.map((t) => JSON.parse(t)));
  return { vendor: 'acme', fromSeq: 1, toSeq: 2, events, totals } as unknown as BatchPayload;
}

describe('core/batch totals', () => {
  it('agree whatever the key order of a parsed canonical payload', () => {
    const p = payload();
    // RFC 8785 sorts keys: {"events":..,"units":..} is how a canonical payload parses.
    const reordered = Object.fromEntries(Object.entries(p.totals).reverse().map(([k, v]) => [k, { events: v.events, units: v.units }]));
    expect(() => verifyBatchEvents({ ...p, totals: reordered }, null)).to.not.throw();
  });

  it('refuses totals one unit or one event off', () => {
    const p = payload();
    const offUnits = { ...p.totals, MALL: { units: 6, events: 1 } };
    const offEvents = { ...p.totals, ACME: { units: 3, events: 2 } };
    for (const totals of [offUnits, offEvents]) {
      expect(() => verifyBatchEvents({ ...p, totals }, null)).to.throw().with.property('code', 'MALL_ERR_TOTALS');
    }
  });
});
