import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { STATEMENT_TYP } from '../../core/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { loadMallKeys } from '../../mall-sync/config.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import { startTestMall } from '../helpers/mall.ts';
import { freshDatabase } from '../helpers/postgres.ts';
import type { StatementPayload } from '../../mall-sync/statements.ts';
import {
  Batcher,
  forEachStore,
  P_PEN,
  http,
  opKey,
  runMallCli,
  scenarioTokenTypes,
  SCENARIO_FEES,
  seedVendorCatalog,
  sell,
  startVendor,
  tempDir,
  type BatchCut,
  type VendorRig,
} from './helpers.ts';

const today = () => new Date().toISOString().slice(0, 10);

forEachStore('mall-sync CLI', function (store) {
  this.timeout(60_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let v: VendorRig;
  let adminToken: string;
  /** What `init` takes for this backend. */
  let storeArgs: string[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    if (store === 'postgres') storeArgs = ['--store', 'postgres', '--database-url', await freshDatabase()];
    v = await startVendor('acme');
  });

  after(async () => {
    await v?.close();
    await cleanup?.();
  });

  it('prints help for the program and its commands', async () => {
    const top = await runMallCli(['--help']);
    expect(top.code).to.equal(0);
    for (const cmd of ['init', 'serve', 'reconcile', 'vendor', 'allot']) expect(top.stdout).to.include(cmd);
    const sub = await runMallCli(['vendor', 'add', '--help']);
    expect(sub.code).to.equal(0);
    expect(sub.stdout).to.include('--jwk');
  });

  it('says plainly what is wrong when there is no mall, and refuses to init twice', async () => {
    const none = await runMallCli(['serve', '--data-dir', join(dir, 'missing')]);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/no mall in .*missing: run "mall-sync init --data-dir .*" first \[MALL_ERR_CONFIG\]/);
    const init = await runMallCli(['init', '--data-dir', dir, ...storeArgs]);
    expect(init.code, init.stderr).to.equal(0);
    const token = /\n {2}(mma_[A-Za-z0-9_-]+)\n/.exec(init.stdout)?.[1];
    expect(token).to.be.a('string');
    adminToken = token as string;
    const again = await runMallCli(['init', '--data-dir', dir]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('already holds a mall');
  });

  it('registers a vendor, a party, token types, fees and an allotment without a running mall', async () => {
    // The file `vendor-server key` prints.
    const keyFile = join(dir, 'acme-key.json');
    await writeFile(keyFile, JSON.stringify({ vendorId: 'acme', kid: v.keys.kid, jwk: v.keys.publicJwk }));
    const add = await runMallCli(['vendor', 'add', '--data-dir', dir, '--id', 'acme', '--name', 'ACME Market', '--jwk', keyFile]);
    expect(add.code, add.stderr).to.equal(0);
    expect(JSON.parse(add.stdout)).to.deep.include({ id: 'acme', name: 'ACME Market', lastBatchSeq: 0 });
    const dup = await runMallCli(['vendor', 'add', '--data-dir', dir, '--id', 'acme', '--name', 'Another', '--jwk', keyFile]);
    expect(dup.code).to.equal(1);
    expect(dup.stderr).to.include('[MALL_ERR_EXISTS]');
    expect((await runMallCli(['party', '--data-dir', dir, '--id', 'sunny-foods', '--name', 'Sunny Foods'])).code).to.equal(0);
    // Several token types from one file (a JSON array).
    const typesFile = join(dir, 'token-types.json');
    await writeFile(typesFile, JSON.stringify(scenarioTokenTypes().filter((t) => t.code !== 'BOB')));
    const types = await runMallCli(['token-type', '--data-dir', dir, '--file', typesFile]);
    expect(types.code, types.stderr).to.equal(0);
    expect(JSON.parse(types.stdout).map((t: { code: string }) => t.code)).to.deep.equal(['MALL', 'ACME', 'SUNNY']);
    expect((await runMallCli(['fees', '--data-dir', dir, '--file', JSON.stringify(SCENARIO_FEES)])).code).to.equal(0);
    const allot = await runMallCli(['allot', '--data-dir', dir, '--vendor', 'acme', '--token', 'MALL', '--units', '100', '--reference', 'float', '--key', 'cli-allot-0001']);
    expect(allot.code, allot.stderr).to.equal(0);
    expect(JSON.parse(allot.stdout)).to.include({ id: 'alt-000001', units: 100, purchaseMinor: 1000 });
  });

  it('reconciles through a running mall and on its own: exit 0 when complete, 2 on a gap or a fork', async () => {
    let mall: RunningMall | null = await startTestMall(dir);
    const post = (cut: BatchCut) => http(`${mall?.url}/v1/batches`, 'POST', cut.jws);
    try {
      // A running mall owns the directory: CLI commands go through it.
      const list = await runMallCli(['vendor', 'list', '--data-dir', dir]);
      expect(list.code, list.stderr).to.equal(0);
      expect(JSON.parse(list.stdout).map((x: { id: string }) => x.id)).to.deep.equal(['acme']);
      await new MallAdminClient(mall.url, adminToken, mall.caPem).positions();

      await seedVendorCatalog(v);
      const c = await v.ledger.registerCustomer(v.op, { name: 'Eva Lindqvist' });
      await v.ledger.recordAllotment(v.op, opKey(), { token: 'MALL', units: 100, reference: 'alt-000001' });
      await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'MALL', units: 100, reason: 'purchase' });
      await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'MALL' }]);
      const b1 = (await v.batcher.cut()) as BatchCut;
      expect((await post(b1)).status).to.equal(200);
      v.batcher.accept(b1);

      const out = join(dir, 'out');
      const ok = await runMallCli(['reconcile', '--data-dir', dir, '--from', today(), '--to', today(), '--out', out]);
      expect(ok.code, ok.stderr).to.equal(0);
      expect(ok.stdout).to.match(/acme: net -€5\.61 \(1 transactions, 0 refunds, gross €4\.50, royalty €0\.11\); last batch 1/);
      const base = join(out, `acme_${today()}_${today()}`);
      const csv = await readFile(`${base}.csv`, 'utf8');
      const lines = csv.trim().split('\n');
      expect(lines[0]).to.equal('vendor,date,currency,transactions,refunds,tokens_redeemed,tokens_returned,gross_minor,refunded_minor,royalty_minor,toll_minor,reimbursement_receivable_minor,reimbursement_payable_minor,allotment_purchases_minor,net_minor,flagged_events,exchanges,tokens_exchanged,compensation_receivable_minor,compensation_payable_minor,service_charge_minor,data_toll_minor,tokens_issued,issued_cash_minor,instruments_double_spent,double_spend_charged_minor,double_spend_recovered_minor,double_spend_issuer_loss_minor');
      expect(lines[1]).to.equal(`acme,${today()},EUR,1,0,MALL:45,,450,0,11,0,450,0,1000,-561,0,0,,0,0,0,0,MALL:100,1000,0,0,0,0`);
      expect(lines.at(-1)).to.equal('acme,total,EUR,1,0,MALL:45,,450,0,11,0,450,0,1000,-561,0,0,,0,0,0,0,MALL:100,1000,0,0,0,0');
      const json = JSON.parse(await readFile(`${base}.json`, 'utf8')) as StatementPayload;
      expect(json.totals.netMinor).to.equal(-561);
      const jws = JSON.parse(await readFile(`${base}.jws.json`, 'utf8'));
      const keys = await loadMallKeys(dir);
      const snapshotJwk = (await http(`${mall.url}/v1/mall-key`, 'GET')).body.jwk as JWK;
      const signed = await verifyJson<StatementPayload>(jws, (await importJWK(snapshotJwk, 'EdDSA')) as CryptoKey, STATEMENT_TYP);
      expect(signed).to.deep.equal(json);
      expect(snapshotJwk.kid).to.equal(keys.kid);
      const summary = JSON.parse(await readFile(join(out, 'reconcile.json'), 'utf8'));
      expect(summary.problems).to.deep.equal([]);

      // Batch 3 before batch 2: a gap, until batch 2 arrives.
      await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'MALL' }]);
      const b2 = (await v.batcher.cut(1)) as BatchCut;
      const saved = { ...v.batcher };
      v.batcher.accept(b2);
      await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'MALL', units: 1 }]);
      const b3 = (await v.batcher.cut()) as BatchCut;
      Object.assign(v.batcher, saved);
      expect((await post(b3)).body.error.code).to.equal('MALL_ERR_BATCH_GAP');
      const gap = await runMallCli(['reconcile', '--data-dir', dir, '--from', today(), '--to', today(), '--out', out]);
      expect(gap.code).to.equal(2);
      expect(gap.stderr).to.match(/GAP acme: the mall has batches up to 1 but saw batch 3 .*batch 2 onwards is missing/);
      expect(JSON.parse(await readFile(join(out, 'reconcile.json'), 'utf8')).problems).to.have.length(1);
      expect((await post(b2)).status).to.equal(200);
      v.batcher.accept(b2);
      expect((await post(b3)).status).to.equal(200);
      v.batcher.accept(b3);

      // No mall running: reconcile opens the store itself.
      await mall.close();
      mall = null;
      const alone = await runMallCli(['reconcile', '--data-dir', dir, '--from', today(), '--to', today()]);
      expect(alone.code, alone.stderr).to.equal(0);
      expect(alone.stdout).to.include(`statements written to ${join(dir, 'statements', `${today()}_${today()}`)}`);
      expect(alone.stdout).to.match(/acme: net .* \(3 transactions/);

      // A fork of batch 1: a tamper alarm, and reconcile says so.
      mall = await startTestMall(dir);
      const fork = (await new Batcher(v.opened.journal, 'acme', v.keys).cut(b1.payload.toSeq, '2020-02-02T00:00:00.000Z')) as BatchCut;
      expect((await post(fork)).body.error.code).to.equal('MALL_ERR_BATCH_FORK');
      const alarm = await runMallCli(['reconcile', '--data-dir', dir, '--from', today(), '--to', today()]);
      expect(alarm.code).to.equal(2);
      expect(alarm.stderr).to.match(/FORK ALARM acme: vendor acme sent a different batch 1/);
    } finally {
      await mall?.close();
    }
  });

  it('refuses a bad range and a revoked key through the CLI', async () => {
    const range = await runMallCli(['reconcile', '--data-dir', dir, '--from', '2026-02-30', '--to', today()]);
    expect(range.code).to.equal(1);
    expect(range.stderr).to.include('from must be a date as YYYY-MM-DD [MALL_ERR_VALIDATION]');
    const revoke = await runMallCli(['vendor', 'key-revoke', '--data-dir', dir, '--id', 'acme', '--kid', v.keys.kid, '--reason', 'rotated out']);
    expect(revoke.code, revoke.stderr).to.equal(0);
    expect(JSON.parse(revoke.stdout)).to.include({ kid: v.keys.kid, status: 'revoked', revokedReason: 'rotated out' });
  });
});
