import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ACK_TYP, type AckPayload, type ZReport } from '../../core/index.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import { CashierDayService } from '../../vendor-server/cashier-day/service.ts';
import { opKey, P_BREAD, pushAll, startScenario, type MallRig, type VendorRig } from './helpers.ts';

describe('mall-sync: the cashier\'s day reaches the mall in the batches', function () {
  this.timeout(60_000);
  let mall: MallRig;
  let v: VendorRig;

  before(async () => {
    ({ mall, v } = await startScenario());
  });
  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('accepts shifts, cash moves, a no-sale, a reprint and the signed Z without flagging them', async () => {
    const day = new CashierDayService(v.ledger, v.keys, { shiftsRequired: true, utcOffsetMinutes: 0, zPerTerminal: false });
    const till = { terminal: 't001', cashier: 'ana' };
    await day.openShift({ terminal: 't001', cashier: 'ana' }, 'Ana', `t001:${opKey('open')}`, { totalMinor: 2000 });
    const sale = await v.ledger.commitSale(till, { key: `t001:${opKey('sale')}`, lines: [{ code: P_BREAD, qty: 2 }], card: null, tenders: [], cashTenderedMinor: 600 }, { precondition: () => day.requireShift('t001', 'ana') });
    await day.moveCash(till, `t001:${opKey('in')}`, { kind: 'paid-in', amountMinor: 1000, reason: 'change' });
    await day.noSale(till, `t001:${opKey('nosale')}`, 'change for a customer', 'sam');
    const store = { vendorId: 'acme', name: 'acme store', address: [] };
    await day.reprint(till, { store, sale: await v.ledger.saleBySaleId(sale.saleId), refund: null });
    const closed = await day.closeShift(till, `t001:${opKey('close')}`, { totalMinor: 3578 }, false);
    expect(closed.expectedMinor).to.equal(2000 + 600 - 22 + 1000);
    expect(closed.overShortMinor).to.equal(0);
    const z: ZReport = await day.closeDay({ terminal: 't001', cashier: 'sam' }, `t001:${opKey('z')}`);
    expect(z.totals.salesCount).to.equal(1);
    expect(z.totals.noSalesCount).to.equal(1);

    const { res, cut } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    expect(ack.flagged).to.deep.equal([]);
    // Every event of the day went in the batch, the Z last.
    const types = cut.payload.events.map((t: string) => (JSON.parse(t) as { type: string }).type);
    expect(types.slice(-7)).to.deep.equal(['shift.opened', 'sale', 'cash.moved', 'drawer.no-sale', 'receipt.reprinted', 'shift.closed', 'period.closed']);
  });

  it('flags a cashier\'s-day event that carries postings: cash in a drawer never moves tokens', async () => {
    // Journalled past the ledger's rules, as a dishonest store could: a "no-sale" that
    // takes a customer's tokens into the float, and a Z that does the same.
    const j = v.opened.journal;
    const seqs: number[] = [];
    const postings = [{ account: 'customer:cust-000001', token: 'MALL', units: -5 }, { account: 'float', token: 'MALL', units: 5 }];
    for (const [type, data] of [['drawer.no-sale', { shiftId: null, reason: 'x', supervisor: 'sam' }], ['period.closed', { kind: 'Z', zNumber: 99 }]] as const) {
      const fields = { v: 1, vendor: v.vendorId, at: new Date().toISOString(), terminal: 't001', cashier: 'sam', key: null, bodyHash: null, type, postings, data };
      seqs.push(j.append({ seq: j.nextSeq, ...fields }).seq);
    }
    await j.flushed();
    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    expect(ack.flagged.map((f) => [f.eventSeq, f.reason])).to.deep.equal(seqs.map((seq, i) => [seq, `a ${i === 0 ? 'drawer.no-sale' : 'period.closed'} may not post to account customer:cust-000001`]));
  });
});
