import { join } from 'node:path';
import { expect } from 'chai';
import { compactVerify, importJWK, type JWK } from 'jose';
import { PrinterSimulator } from '../../hardware/printer/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import type { ReceiptVerdict } from '../../mall-sync/receipt-verify.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { loadKeys } from '../../vendor-server/config.ts';
import { initVendor } from '../../vendor-server/init.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { fetchTls } from '../helpers/http.ts';
import { pinMall, registerDemoVendor } from '../helpers/mall.ts';
import { freePort, killHard, runBin, spawnMall, START_DEADLINE_MS, until } from '../helpers/process.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931';
const CARD = 'C0000000018';

/**
 * A receipt anyone can verify, end to end: a sale made at a real till through the store
 * server, printed as ESC/POS bytes to the printer simulator over TCP, the QR code read
 * back from those bytes, and checked by the real `mall-sync verify-receipt` process
 * before and after the store's batch reaches the mall.
 */
describe('e2e: a printed receipt is verified by the mall', function () {
  this.timeout(300_000);
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
  });

  function verifyReceipt(args: string[]): Promise<{ code: number | null; verdict: ReceiptVerdict; stderr: string }> {
    return runBin('bin/mall-sync.js', ['verify-receipt', ...args]).then((r) => {
      let verdict: ReceiptVerdict;
      try {
        verdict = JSON.parse(r.stdout) as ReceiptVerdict;
      } catch {
        throw new Error(`verify-receipt printed no verdict (exit ${r.code}): ${r.stdout}${r.stderr}`);
      }
      return { code: r.code, verdict, stderr: r.stderr };
    });
  }

  it('reads "not yet synced" before the batch and "confirmed" after it, from the QR code the printer got', async () => {
    const { dir, cleanup } = await tempDir('mallpos-receipt-');
    cleanups.unshift(cleanup);
    const mallDir = join(dir, 'mall');
    const vendorDir = join(dir, 'vendor');
    const mallInit = await initMall({ dataDir: mallDir });
    const vendorInit = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
    await pinMall(vendorDir, mallDir, 'https://127.0.0.1:8700');

    const mall = await spawnMall(mallDir);
    cleanups.unshift(() => killHard(mall.child));
    const admin = new MallAdminClient(mall.url, mallInit.adminToken, mall.caPem);
    await registerDemoVendor(admin, vendorDir);

    // The store first runs with the mall out of reach: its sale waits in the outbox.
    const sync = { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 500 };
    let vendor: RunningVendorServer = await startTestVendor(vendorDir, { mallUrl: `https://127.0.0.1:${await freePort()}`, syncOverrides: sync });
    cleanups.unshift(() => vendor.close());
    const printer = new PrinterSimulator({ port: 0 });
    await printer.start();
    cleanups.unshift(() => printer.stop());

    const created = await fetchTls(`${vendor.url}/api/terminals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${vendorInit.operatorToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Till 1' }),
    });
    const { pairingCode } = (await created.json()) as { pairingCode: string };
    const tillDir = join(dir, 'terminal');
    await pairTerminal(tillDir, vendor.url, pairingCode);
    const terminal: RunningTerminal = await startTerminal({ dataDir: tillDir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0 });
    cleanups.unshift(() => terminal.close());
    const { app } = terminal;
    await until('link', () => (app.link.connected ? true : undefined));
    await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'scan', code: CARD });
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    await app.command({ type: 'complete' });
    await app.whenIdle();
    const sale = app.state().lastSale;
    if (sale === null || sale === undefined) throw new Error(`no sale: ${app.state().message?.text ?? ''}`);

    // The QR code as the printer decoded it from the ESC/POS bytes.
    const [printed] = await printer.waitForReceipts(1, START_DEADLINE_MS);
    const qr = printed?.qr[0] ?? '';
    expect(qr).to.match(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    // Any JOSE library checks it with the store's public key.
    const keys = await loadKeys(vendorDir);
    const checked = await compactVerify(qr, await importJWK(keys.publicJwk as unknown as JWK, 'EdDSA'), { algorithms: ['EdDSA'] });
    expect(checked.protectedHeader).to.deep.equal({ alg: 'EdDSA', kid: keys.kid, typ: 'mallpos-receipt+jws' });
    const claimed = JSON.parse(new TextDecoder().decode(checked.payload)) as { saleId: string; hash: string; debits: Record<string, number> };
    expect(claimed.saleId).to.equal(sale.saleId);
    expect(claimed.debits).to.deep.equal({ ACME: 90 });
    const journalled = await vendor.ledger.journal.read(sale.seq);
    expect(claimed.hash).to.equal(journalled.hash);

    const early = await verifyReceipt([qr, '--data-dir', mallDir]);
    expect(early.verdict.verdict, early.stderr).to.equal('not-yet-synced');
    expect(early.code).to.equal(3);

    // The mall comes within reach: the store ships its journal.
    await terminal.close();
    cleanups.shift();
    await vendor.close();
    vendor = await startTestVendor(vendorDir, { mallUrl: mall.url, syncOverrides: sync });
    expect(await vendor.sync?.drain(60_000)).to.equal(true);
    expect((await admin.cursor('acme')).lastEventSeq).to.be.at.least(sale.seq);

    const confirmed = await verifyReceipt([qr, '--data-dir', mallDir]);
    expect(confirmed.verdict.verdict, confirmed.stderr).to.equal('confirmed');
    expect(confirmed.code).to.equal(0);
    expect(confirmed.verdict.sync?.eventHash).to.equal(journalled.hash);
    expect(confirmed.verdict.key).to.include({ kid: keys.kid, status: 'active', validAtSale: true });

    // From another machine: the mall's address and its authority, no credential.
    const remote = await verifyReceipt([qr, '--url', mall.url, '--mall-ca', join(mallDir, 'tls', 'ca-cert.pem')]);
    expect(remote.verdict.verdict).to.equal('confirmed');
    expect(remote.code).to.equal(0);

    // One character changed in the printed code: not genuine, and the exit status says so.
    const mid = Math.floor(qr.length / 2);
    const altered = `${qr.slice(0, mid)}${qr[mid] === 'A' ? 'B' : 'A'}${qr.slice(mid + 1)}`;
    const bad = await verifyReceipt([altered, '--data-dir', mallDir]);
    expect(['bad-signature', 'malformed']).to.include(bad.verdict.verdict);
    expect(bad.code).to.equal(2);
  });
});
