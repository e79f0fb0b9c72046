import { expect } from 'chai';
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
});
