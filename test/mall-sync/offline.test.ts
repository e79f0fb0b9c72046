import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ACK_TYP, type AckPayload } from '../../core/index.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import { OFFLINE_DEFAULTS } from '../../vendor-server/config.ts';
import { VendorMetrics } from '../../vendor-server/metrics.ts';
import { OfflineService } from '../../vendor-server/offline.ts';
import { P_BREAD, P_PEN, pushAll, silentLogger, startScenario, type MallRig, type VendorRig } from './helpers.ts';

describe('mall-sync: offline sales reach the mall in the batches', function () {
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

  const mallAck = async (res: { body: { ack: unknown } }) => {
    const mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    return verifyJson<AckPayload>(res.body.ack as never, mallKey, ACK_TYP);
  };

  it('ingests forwarded offline cash sales, priced as the till recorded them, without flags', async () => {
    const offline = new OfflineService(v.ledger, OFFLINE_DEFAULTS, silentLogger(), new VendorMetrics());
    const pen = v.ledger.state.products[P_PEN]?.priceMinor ?? 0;
    for (const [counter, lines] of [
      [1, [{ code: P_PEN, name: 'Pen', qty: 2, unitPriceMinor: pen, totalMinor: 2 * pen }]],
      // A price the till had before the catalog changed: reported, journalled as recorded.
      [2, [{ code: P_BREAD, name: 'Bread', qty: 1, unitPriceMinor: 1, totalMinor: 1 }]],
    ] as const) {
      const totalMinor = lines.reduce((s, l) => s + l.totalMinor, 0);
      await offline.forward('t001', {
        key: `t001:${randomUUID()}`,
        offlineId: `t001-${counter}`,
        counter,
        at: new Date(Date.now() - 60_000).toISOString(),
        catalogVersion: 1,
        cashier: 'ana',
        currency: 'EUR',
        lines,
        totalMinor,
        cashTenderedMinor: totalMinor + 50,
        changeMinor: 50,
      });
    }
    const { res, cut } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    expect((await mallAck(res)).flagged).to.deep.equal([]);
    const sales = cut.payload.events.map((t: string) => JSON.parse(t) as { type: string; data: { offline?: { offlineId: string } } }).filter((e) => e.data.offline !== undefined);
    expect(sales.map((e) => e.data.offline?.offlineId)).to.deep.equal(['t001-1', 't001-2']);
  });

  it('flags an "offline" sale that takes a customer\'s tokens: offline sales are cash only', async () => {
    // Journalled past the ledger's rules, as a dishonest store could.
    const j = v.opened.journal;
    const at = new Date().toISOString();
    const data = {
      saleId: `S${String(j.nextSeq).padStart(10, '0')}`,
      customer: 'cust-000001',
      currency: 'EUR',
      lines: [{ lineNo: 1, gtin: P_PEN, name: 'Pen', qty: 1, unitPriceMinor: 450, totalMinor: 450, unitTokenPrices: {} }],
      allocations: [],
      debits: {},
      totalMinor: 450,
      cash: { dueMinor: 450, tenderedMinor: 450, changeMinor: 0 },
      balancesAfter: null,
      offline: { offlineId: 't001-3', counter: 3, tillAt: at, receivedAt: at, catalogVersion: 1, priceDifferences: [], afterZ: false },
    };
    const seq = j.append({ seq: j.nextSeq, v: 1, vendor: v.vendorId, at, terminal: 't001', cashier: 'ana', key: null, bodyHash: null, type: 'sale', postings: [], data }).seq;
    await j.flushed();
    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const flagged = (await mallAck(res)).flagged;
    expect(flagged.map((f) => f.eventSeq)).to.deep.equal([seq]);
    expect(flagged[0]?.reason).to.include('offline sale is for cash only');
  });
});
