import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { keyPrint, sealCheckpoint, unsealCheckpoint } from '../../platform/storage/index.ts';
import { initMall } from '../../mall-sync/init.ts';
import { initVendor } from '../../vendor-server/init.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { runCli, until } from '../helpers/process.ts';
import { http } from '../helpers/http.ts';
import { pinMall } from '../helpers/mall.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { capturedLogger, treeSnapshot } from './helpers-files.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const CUSTOMER_ACME = /("customer:cust-000001":\{"ACME":)(\d+)/;

async function checkpointFile(store: string): Promise<string> {
  return join(store, 'ledger', 'state', 'checkpoint.json');
}

/** Where the stores in these tests find their mall: nothing listens there. */
const UNREACHABLE_MALL = 'https://127.0.0.1:9';

/** Starts in-process, synced with an unreachable mall, with its log kept. */
async function start(store: string): Promise<{ server: RunningVendorServer; log: () => string }> {
  const { logger, text } = capturedLogger();
  // The tests wait for the audit's verdict: at normal priority, so that a saturated machine does not starve it.
  const server = await startTestVendor(store, { logger, mallUrl: UNREACHABLE_MALL, auditNice: 0 });
  return { server, log: text };
}

async function expectAlarm(server: RunningVendorServer, log: () => string, detail: RegExp): Promise<void> {
  const state = await until('the integrity audit', () => (server.audit.status.state === 'checking' ? undefined : server.audit.status.state));
  expect(state).to.equal('damaged');
  expect(server.audit.status.detail).to.match(detail);
  const health = await http(`${server.url}/health`, 'GET');
  expect(health.body).to.include({ ok: false, status: 'degraded' });
  expect(health.body.integrity.detail).to.match(detail);
  const metrics = await http(`${server.url}/metrics`, 'GET');
  expect(metrics.text).to.match(/^mallpos_ledger_integrity_ok 0$/m).and.match(/^mallpos_ledger_integrity_alarms_total 1$/m);
  expect(log()).to.include('ledger integrity alarm');
  expect(server.sync?.haltedReason).to.match(detail);
}

describe('vendor-server: checkpoint and journal integrity', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let store: string;
  // One mall for every test: each store is linked to it the way link-mall does, its key and authority pinned.
  let mallDir: string;
  let mallCleanup: () => Promise<void>;

  before(async () => {
    ({ dir: mallDir, cleanup: mallCleanup } = await tempDir('mallpos-integrity-mall-'));
    await initMall({ dataDir: mallDir });
  });
  after(async () => mallCleanup());

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-integrity-'));
    store = join(dir, 'store');
    await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    await pinMall(store, mallDir, UNREACHABLE_MALL);
  });
  afterEach(async () => cleanup());

  it('a clean store passes the background audit: /health ok, metric 1, shipping not stopped', async () => {
    const { server, log } = await start(store);
    try {
      await until('the integrity audit', () => (server.audit.status.state === 'ok' ? true : undefined));
      const health = await http(`${server.url}/health`, 'GET');
      expect(health.body).to.include({ ok: true, status: 'ok' });
      expect((await http(`${server.url}/metrics`, 'GET')).text).to.match(/^mallpos_ledger_integrity_ok 1$/m);
      expect(server.sync?.haltedReason).to.equal(null);
      expect(log()).to.include('ledger integrity confirmed');
    } finally {
      await server.close();
    }
  });

  it('refuses to start on a checkpoint whose balance was edited, naming the file and the hash, and verify says the same', async () => {
    const file = await checkpointFile(store);
    const text = await readFile(file, 'utf8');
    expect(text).to.match(CUSTOMER_ACME);
    await writeFile(file, text.replace(CUSTOMER_ACME, (_m, head: string) => `${head}999999`));
    const before = await treeSnapshot(store);
    const started = await runCli(['start', '--data-dir', store, '--port', '0']);
    expect(started.code).to.equal(1);
    expect(started.stderr).to.include('[VND_ERR_STATE_CORRUPT]').and.include(file).and.include('changed after it was written').and.match(/sha256 [0-9a-f]{64}/);
    const verify = await runCli(['verify', '--data-dir', store]);
    expect(verify.code).to.equal(1);
    expect(verify.stderr).to.include('[VND_ERR_STATE_CORRUPT]').and.include('changed after it was written');
    // Neither the refused start nor verify changed anything (the refused start left no lock behind).
    const after = await treeSnapshot(store);
    expect(after).to.deep.equal(before);
  });

  it('refuses a resealed checkpoint whose chain hash is not the journal\'s at its seq', async () => {
    const file = await checkpointFile(store);
    const { header, stateText } = unsealCheckpoint(file, await readFile(file, 'utf8'));
    const forged = 'f'.repeat(64);
    await writeFile(file, sealCheckpoint(header.seq, forged, stateText.replace(`"hash":"${header.hash}"`, `"hash":"${forged}"`)));
    const started = await runCli(['start', '--data-dir', store, '--port', '0']);
    expect(started.code).to.equal(1);
    expect(started.stderr).to.include('[VND_ERR_STATE_CORRUPT]').and.include(`chain hash at seq ${header.seq} is ${forged}`).and.include(header.hash);
  });

  it('an edited balance with a recomputed seal starts, then raises the alarm and stops shipping; verify names the balance', async () => {
    const file = await checkpointFile(store);
    const { header, stateText } = unsealCheckpoint(file, await readFile(file, 'utf8'));
    const real = Number(CUSTOMER_ACME.exec(stateText)?.[2]);
    await writeFile(file, sealCheckpoint(header.seq, header.hash, stateText.replace(CUSTOMER_ACME, (_m, head: string) => `${head}999999`)));

    const verify = await runCli(['verify', '--data-dir', store]);
    expect(verify.code).to.equal(1);
    expect(verify.stderr).to.include(`the checkpoint says customer:cust-000001 holds 999999 ACME, the journal gives ${real}`);

    const { server, log } = await start(store);
    try {
      await expectAlarm(server, log, /customer:cust-000001 holds 999999 ACME/);
      // The server keeps serving the store (sales go on); only shipping to the mall stops.
      expect((await http(`${server.url}/health`, 'GET')).status).to.equal(200);
    } finally {
      await server.close();
    }
  });

  it('a resealed checkpoint whose key window names the wrong event raises the alarm, checked against digests, not a second copy', async () => {
    const file = await checkpointFile(store);
    const { header, stateText } = unsealCheckpoint(file, await readFile(file, 'utf8'));
    // The window keeps each key's fingerprint: the first one is changed to another key's.
    const column = /("window":\{"count":(\d+),"lo":")([A-Za-z0-9+/=]+)"/;
    const found = column.exec(stateText);
    expect(Number(found?.[2])).to.be.greaterThan(0);
    const lo = Buffer.from(found?.[3] ?? '', 'base64');
    lo.writeUInt32LE(keyPrint('t999:another-key').lo, 0);
    await writeFile(file, sealCheckpoint(header.seq, header.hash, stateText.replace(column, (_m, head: string) => `${head}${lo.toString('base64')}"`)));

    const verify = await runCli(['verify', '--data-dir', store]);
    expect(verify.code).to.equal(1);
    expect(verify.stderr).to.include('[VND_ERR_STATE_CORRUPT]').and.include('maps a request key to');

    const { server, log } = await start(store);
    try {
      // The opened ledger keeps digests of the checkpoint for the audit, not its text.
      expect(Object.keys(server.opened)).to.not.include('checkpointState');
      await expectAlarm(server, log, /maps a request key to/);
    } finally {
      await server.close();
    }
  });

  it('a byte flipped in a journal line the checkpoint covers is found in the background without slowing start, and by verify', async () => {
    // Smaller segments, and one more event: the demo's segment is closed, so start checks
    // only its first and last lines and leaves the rest to the audit.
    const configPath = join(store, 'config.json');
    await writeFile(configPath, JSON.stringify({ ...JSON.parse(await readFile(configPath, 'utf8')), segmentBytesMax: 4096 }));
    const first = await start(store);
    await first.server.ledger.issueTokens({ terminal: null, cashier: null }, 'op:one-more', { customerId: 'cust-000001', token: 'ACME', units: 1, reason: 'reward' });
    await first.server.close();
    const journalDir = join(store, 'ledger', 'journal');
    const [segment, next] = (await readdir(journalDir)).sort();
    expect(next, 'a second segment').to.be.a('string');
    if (segment === undefined) throw new Error('a segment');
    const path = join(journalDir, segment);
    const text = await readFile(path, 'utf8');
    // A product name early in the journal, long before the checkpoint's seq.
    const at = text.indexOf('Stabilo');
    expect(at).to.be.greaterThan(0);
    expect(text.indexOf('\n', at)).to.be.lessThan(text.length - 1);
    await writeFile(path, `${text.slice(0, at)}Stabilx${text.slice(at + 7)}`);

    const verify = await runCli(['verify', '--data-dir', store]);
    expect(verify.code).to.equal(1);
    expect(verify.stderr).to.include('[VND_ERR_JOURNAL_CORRUPT]').and.include(segment).and.include('hash mismatch');

    const { server, log } = await start(store);
    try {
      // Start replayed nothing before the checkpoint: the damage is found after it.
      expect(server.opened.replayed).to.equal(0);
      await expectAlarm(server, log, new RegExp(`${segment}.*hash mismatch`));
    } finally {
      await server.close();
    }
  });
});
