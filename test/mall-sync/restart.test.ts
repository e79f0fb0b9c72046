import { access, rm } from 'node:fs/promises';
import { expect } from 'chai';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { mallPaths } from '../../mall-sync/config.ts';
import { initMall } from '../../mall-sync/init.ts';
import { storePaths } from '../../mall-sync/store/index.ts';
import { startMallServer } from '../../mall-sync/server.ts';
import pg from 'pg';
import {
  P_PEN,
  http,
  killHard,
  newKey,
  opKey,
  pushAll,
  registerScenario,
  seedVendorCatalog,
  sell,
  silentLogger,
  spawnMall,
  forEachStore,
  initMallOn,
  startMall,
  startVendor,
  tempDir,
  type BatchCut,
  type MallRig,
  type VendorRig,
  vendorAuth,
} from './helpers.ts';

/** Removes the store's checkpoints, so that the next start replays the whole log. */
async function dropCheckpoints(mall: MallRig): Promise<void> {
  const store = mall.mall.store;
  if (store.kind === 'embedded') {
    await rm(storePaths(mallPaths(mall.dir).storeDir).checkpointFile);
    return;
  }
  const db = new pg.Client({ connectionString: mall.mall.config.store.kind === 'postgres' ? mall.mall.config.store.databaseUrl : '' });
  await db.connect();
  try {
    await db.query('DELETE FROM mall_checkpoints');
  } finally {
    await db.end();
  }
}

async function busyVendor(v: VendorRig): Promise<string[]> {
  const saleIds: string[] = [];
  await seedVendorCatalog(v);
  const c = await v.ledger.registerCustomer(v.op, { name: 'David Novák' });
  await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 5000, reference: 'own' });
  await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 2000, reason: 'reward' });
  for (let i = 0; i < 5; i++) saleIds.push((await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }])).saleId);
  const s = await sell(v, c.card, [{ code: P_PEN, qty: 2 }], [{ token: 'ACME' }]);
  await v.ledger.refundSale(v.op, { key: `t001:${opKey('refund')}`, saleId: s.saleId, reason: 'test', supervisorId: 'sam' });
  return saleIds;
}

forEachStore('mall-sync: restarts keep cursors, acks and clearing', function (store) {
  this.timeout(60_000);

  describe('in process', () => {
    let mall: MallRig;
    let v: VendorRig;
    let saleIds: string[];

    before(async () => {
      mall = await startMall({ store });
      v = await startVendor('acme');
      await registerScenario(mall, v, (await newKey()).publicJwk);
      saleIds = await busyVendor(v);
    });

    after(async () => {
      await mall?.close();
      await v?.close();
    });

    it('recovers the same state from the checkpoint and from a full journal replay', async () => {
      const first = (await v.batcher.cut(8)) as BatchCut;
      const r1 = await mall.postBatch(first.jws);
      expect(r1.status, r1.text).to.equal(200);
      v.batcher.accept(first);
      const { res: r2, cut: second } = await pushAll(mall, v);
      expect(r2.status, r2.text).to.equal(200);
      const state = JSON.stringify(mall.mall.store.state);
      const cursor = (await mall.get('/v1/vendors/acme/cursor', await vendorAuth(v.keys, 'acme'))).body;
      expect(cursor.lastSeq).to.equal(2);

      // A clean restart: from the checkpoint written at close.
      await mall.restart();
      expect(mall.mall.store.report.checkpointSeq).to.equal(mall.mall.store.state.seq);
      expect(JSON.stringify(mall.mall.store.state)).to.equal(state);
      expect((await mall.get('/v1/vendors/acme/cursor', await vendorAuth(v.keys, 'acme'))).body).to.deep.equal(cursor);
      const replay = await mall.postBatch(second.jws);
      expect(replay.body.replayed).to.equal(true);
      expect(replay.text).to.equal(r2.text.replace('"replayed":false', '"replayed":true'));

      // Without the checkpoint: everything from the journal, the chain verified.
      await mall.mall.close();
      await dropCheckpoints(mall);
      await mall.restart();
      expect(mall.mall.store.report.checkpointSeq).to.equal(0);
      expect(mall.mall.store.report.replayed).to.equal(mall.mall.store.state.seq);
      expect(JSON.stringify(mall.mall.store.state)).to.equal(state);
      const replay1 = await mall.postBatch(first.jws);
      expect(replay1.text).to.equal(r1.text.replace('"replayed":false', '"replayed":true'));
      expect((await mall.admin.positions()).sumMinor).to.equal(0);
    });

    it('goes on ingesting after the restart, including a reversal of a sale ingested before it', async () => {
      // The first sale went to the mall in batch 2 (events 9 onwards), before the restarts.
      const earlier = await v.ledger.saleBySaleId(saleIds[0] as string);
      expect(earlier.seq).to.be.above(8).and.at.most(v.batcher.eventSeq);
      await v.ledger.refundSale(v.op, { key: `t001:${opKey('refund')}`, saleId: earlier.saleId, reason: 'after restart', supervisorId: 'sam' });
      const before = (await mall.admin.positions()).positions;
      const { res } = await pushAll(mall, v);
      expect(res.status, res.text).to.equal(200);
      expect(res.body.ack).to.be.an('object');
      const after = (await mall.admin.positions()).positions;
      // SCENARIO_FEES: 2.5 % royalty on 90 ACME x 5 = 450 -> 11.25 -> 11, returned by the reversal.
      expect(after['vendor:acme']).to.equal((before['vendor:acme'] as number) + 11);
      expect(after['mall']).to.equal((before['mall'] as number) - 11);
    });

    it(store === 'embedded' ? 'refuses to start a second mall on a data directory in use, and on a port in use' : 'runs a second mall process on the same database, and refuses a port in use', async () => {
      if (store === 'postgres') {
        const second = await startMallServer({ dataDir: mall.dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
        try {
          expect(second.store.state.seq).to.equal(mall.mall.store.state.seq);
          const busy = await startMallServer({ dataDir: mall.dir, port: mall.mall.port, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false }).catch((e: unknown) => e as { code: string });
          expect(busy).to.include({ code: 'MALL_ERR_PORT_IN_USE' });
        } finally {
          await second.close();
        }
        return;
      }
      const err = await startMallServer({ dataDir: mall.dir, port: 0, host: '127.0.0.1', logger: silentLogger() }).catch((e: unknown) => e as { code: string; message: string });
      expect(err).to.include({ code: 'MALL_ERR_STORE' });
      expect((err as { message: string }).message).to.match(/another mall-sync process \(pid \d+, https:\/\/127\.0\.0\.1:\d+\) is using/);
      const other = await tempDir();
      try {
        await initMall({ dataDir: other.dir });
        const busy = await startMallServer({ dataDir: other.dir, port: mall.mall.port, host: '127.0.0.1', logger: silentLogger() }).catch((e: unknown) => e as { code: string });
        expect(busy).to.include({ code: 'MALL_ERR_PORT_IN_USE' });
        // The failed start released the directory.
        expect(await access(mallPaths(other.dir).owner).then(() => true, () => false)).to.equal(false);
      } finally {
        await other.cleanup();
      }
    });
  });

  describe('a child process killed with SIGKILL', () => {
    it('keeps every acknowledged batch: the cursor survives and a replay returns the byte-identical ack', async () => {
      const { dir, cleanup } = await tempDir();
      const v = await startVendor('acme');
      let child = null as Awaited<ReturnType<typeof spawnMall>> | null;
      try {
        const init = await initMallOn(dir, store);
        child = await spawnMall(dir);
        const admin = new MallAdminClient(child.url, init.adminToken, child.caPem);
        const rig = { admin, postBatch: (body: unknown) => http(`${child?.url}/v1/batches`, 'POST', body) } as unknown as MallRig;
        await registerScenario(rig, v, (await newKey()).publicJwk);
        await busyVendor(v);
        const acks: string[] = [];
        const cuts: BatchCut[] = [];
        for (let i = 0; i < 3; i++) {
          const cut = (await v.batcher.cut(5)) as BatchCut;
          const res = await rig.postBatch(cut.jws);
          expect(res.status, res.text).to.equal(200);
          v.batcher.accept(cut);
          acks.push(JSON.stringify(res.body.ack));
          cuts.push(cut);
        }
        const cursor = await admin.cursor('acme');
        const positions = await admin.positions();
        await killHard(child.child);
        // The owner file of the killed process is stale: the next start takes over.
        if (store === 'embedded') await access(mallPaths(dir).owner);
        child = await spawnMall(dir);
        const admin2 = new MallAdminClient(child.url, init.adminToken, child.caPem);
        expect(await admin2.cursor('acme')).to.deep.equal(cursor);
        expect(await admin2.positions()).to.deep.equal(positions);
        for (const [i, cut] of cuts.entries()) {
          const res = await http(`${child.url}/v1/batches`, 'POST', cut.jws);
          expect(res.body.replayed, `batch ${i + 1}`).to.equal(true);
          expect(JSON.stringify(res.body.ack)).to.equal(acks[i]);
        }
        const next = (await v.batcher.cut(5)) as BatchCut;
        const res = await http(`${child.url}/v1/batches`, 'POST', next.jws);
        expect(res.status, res.text).to.equal(200);
        expect(JSON.parse(Buffer.from(res.body.ack.payload, 'base64url').toString()).seq).to.equal(4);
      } finally {
        if (child !== null) await killHard(child.child);
        await v.close();
        await cleanup();
      }
    });
  });
});
