import { expect } from 'chai';
import { postgresBatchBodies } from '../../mall-sync/receipt-verify.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import type { PostgresMallStore } from '../../mall-sync/store/postgres.ts';
import { startTestMall } from '../helpers/mall.ts';
import { http, initMallOn, newKey, RawVendor, scenarioTokenTypes, SCENARIO_FEES, tempDir, type Json } from './helpers.ts';

/**
 * On PostgreSQL a worker judges a batch and signs its ack before it takes the mall's
 * write lock, and uses that judgement under the lock only if nothing it depends on
 * changed in between. Here another worker changes the mall at exactly that moment: the
 * first worker's store is made to run the change just before its section starts.
 *
 * Worker A's clock only moves forward, and the test reads it once the change is in:
 * an ack's `ingestedAt` earlier than that reading was judged before the lock, a later one
 * under it.
 */
describe('mall-sync on PostgreSQL: a batch judged before the write lock', function () {
  this.timeout(120_000);
  let cleanup: () => Promise<void>;
  let a: RunningMall;
  let b: RunningMall;
  let acme: RawVendor;
  let bobs: RawVendor;
  let last = 0;
  const clock = () => {
    last = Math.max(Date.now(), last + 1);
    return new Date(last);
  };

  /** Runs `meanwhile` once, when worker A's next change is about to enter its section; resolves to A's clock just after it. */
  function beforeNextSection(meanwhile: () => Promise<void>): Promise<string> {
    const store = a.store as PostgresMallStore;
    const exclusive = store.exclusive.bind(store);
    return new Promise((resolve, reject) => {
      store.exclusive = async <T>(fn: () => Promise<T>): Promise<T> => {
        store.exclusive = exclusive;
        try {
          await meanwhile();
        } catch (err) {
          reject(err as Error);
          throw err;
        }
        resolve(clock().toISOString());
        return exclusive(fn);
      };
    });
  }

  async function pushTo(worker: RunningMall, v: RawVendor): Promise<Json> {
    const res = await v.push(worker.url);
    expect(res.status, res.text).to.equal(200);
    return res.ack;
  }

  before(async () => {
    let dir: string;
    ({ dir, cleanup } = await tempDir());
    await initMallOn(dir, 'postgres');
    acme = new RawVendor('acme', await newKey());
    bobs = new RawVendor('bobs', await newKey());
    a = await startTestMall(dir, 0, { clock });
    b = await startTestMall(dir);
    await a.service.registerVendor({ id: 'acme', name: 'ACME Market', jwk: acme.keys.publicJwk });
    await a.service.registerVendor({ id: 'bobs', name: 'Bob\'s Books', jwk: bobs.keys.publicJwk });
    await a.service.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
    for (const tt of scenarioTokenTypes()) await a.service.upsertTokenType(tt.code, tt);
    await a.service.setFees(SCENARIO_FEES);
    // Customers and their tokens: registrations change what other vendors' batches are judged against.
    acme.register('c1', 'C1');
    acme.issue('c1', 'ACME', 1_000, 5);
    await pushTo(a, acme);
    bobs.register('b1', 'B1');
    bobs.issue('b1', 'BOB', 1_000, 20);
    await pushTo(b, bobs);
  });
  // Worker A's state takes in what B committed before each test (as it would on its next change).
  beforeEach(() => a.store.flushed());
  after(async () => {
    await a?.close();
    await b?.close();
    await cleanup?.();
  });

  it('is used when only other vendors\' own sales were committed meanwhile', async () => {
    acme.sale('c1', 'ACME', 90);
    bobs.sale('b1', 'BOB', 23);
    const seqBefore = a.store.state.seq;
    expect(seqBefore).to.equal((b.store as PostgresMallStore).state.seq);
    const mark = beforeNextSection(async () => {
      await pushTo(b, bobs);
    });
    const ack = await pushTo(a, acme);
    expect(ack.flagged).to.deep.equal([]);
    expect(ack.ingestedAt < (await mark), `${String(ack.ingestedAt)} before ${await mark}`).to.equal(true);
    // Both batches are in, bobs' first.
    const state = a.store.state;
    expect(state.seq).to.equal(seqBefore + 2);
    expect(state.vendors['bobs']?.batchMallSeqs.at(-1)).to.equal(seqBefore + 1);
    expect(state.vendors['acme']?.batchMallSeqs.at(-1)).to.equal(seqBefore + 2);
  });

  it('is judged again under the lock after a registry change, and the ack says what the change means', async () => {
    acme.sale('c1', 'ACME', 90);
    const acmeType = scenarioTokenTypes().find((t) => t.code === 'ACME');
    expect(acmeType).to.not.equal(undefined);
    const mark = beforeNextSection(async () => {
      // ACME tokens stop being accepted at acme: before this change the sale was clean.
      await b.service.upsertTokenType('ACME', { ...acmeType!, acceptedBy: ['bobs'] });
    });
    const ack = await pushTo(a, acme);
    expect(ack.ingestedAt > (await mark), `${String(ack.ingestedAt)} after ${await mark}`).to.equal(true);
    expect(ack.flagged).to.have.length(1);
    expect(ack.flagged[0].reason).to.match(/ACME tokens are not accepted at acme/);
    expect(ack.registrySeq).to.equal(a.store.state.registrySeq);
    await b.service.upsertTokenType('ACME', acmeType!);
  });

  it('is judged again when another vendor\'s batch changed customers meanwhile', async () => {
    acme.sale('c1', 'ACME', 90);
    bobs.register('b2', 'B2');
    const mark = beforeNextSection(async () => {
      await pushTo(b, bobs);
    });
    const ack = await pushTo(a, acme);
    expect(ack.flagged).to.deep.equal([]);
    expect(ack.ingestedAt > (await mark), `${String(ack.ingestedAt)} after ${await mark}`).to.equal(true);
  });

  it('gives way to the same batch ingested by the other worker meanwhile: both answer with the one stored ack', async () => {
    acme.sale('c1', 'ACME', 90);
    const cut = await acme.cut();
    let first: Json = null;
    const mark = beforeNextSection(async () => {
      const res = await http(`${b.url}/v1/batches`, 'POST', cut.jws);
      expect(res.status, res.text).to.equal(200);
      first = res.body;
    });
    const res = await http(`${a.url}/v1/batches`, 'POST', cut.jws);
    await mark;
    expect(res.status, res.text).to.equal(200);
    expect(res.body.ack).to.deep.equal((first as Json).ack);
    expect(res.body.replayed).to.equal(true);
    expect(a.store.state.vendors['acme']?.lastSeq).to.equal(cut.payload.seq);
  });

  it('attack: a fork sent to both workers at once: one version is committed, the other refused with an alarm, and the archive serves the committed one', async () => {
    bobs.sale('b1', 'BOB', 23);
    // Two versions of the same batch: the same events, another creation time, so other bytes under one seq.
    // The losing version x sorts first by hash, so a reader that took the first body of the seq would serve it.
    const y = await bobs.cut(new Date(Date.now() + 1_000).toISOString());
    let x = await bobs.cut(new Date(Date.now() - 1_000).toISOString());
    for (let ms = 2_000; x.hash >= y.hash; ms += 1_000) x = await bobs.cut(new Date(Date.now() - ms).toISOString());
    expect(x.payload.seq).to.equal(y.payload.seq);
    const mark = beforeNextSection(async () => {
      const res = await http(`${b.url}/v1/batches`, 'POST', y.jws);
      expect(res.status, res.text).to.equal(200);
    });
    const res = await http(`${a.url}/v1/batches`, 'POST', x.jws);
    await mark;
    expect(res.status, res.text).to.equal(409);
    expect(res.body.error.code).to.equal('MALL_ERR_BATCH_FORK');
    expect(a.store.state.alarms.some((al) => al.vendor === 'bobs' && al.batchSeq === x.payload.seq && al.receivedHash === x.hash)).to.equal(true);
    const store = a.store as PostgresMallStore;
    // Worker A kept the losing version before its section, as evidence beside the committed one.
    const kept = await store.pool.query<{ hash: string }>('SELECT hash FROM mall_batch_bodies WHERE vendor = $1 AND seq = $2 ORDER BY hash', ['bobs', x.payload.seq]);
    expect(kept.rows.map((r) => r.hash).sort()).to.deep.equal([x.hash, y.hash].sort());
    // What the receipt check and the exported archive read is the committed version.
    const body = await postgresBatchBodies(store.pool)('bobs', y.payload.seq);
    expect(JSON.parse(String(body))).to.deep.equal(y.jws);
    const archived = [];
    for await (const row of store.archiveRows()) if (row.kind === 'batch' && row.vendor === 'bobs' && row.seq === y.payload.seq) archived.push(row);
    expect(archived).to.have.length(1);
    expect(JSON.parse(String(archived[0]?.body))).to.deep.equal(y.jws);
  });
});
