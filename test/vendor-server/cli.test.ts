import { createServer } from 'node:net';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { killHard, runBin, runCli, spawnVendorServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

/** The executables' help, and a clear message with a non-zero exit on each start-up problem. */
describe('vendor-server and pos-terminal CLIs', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-cli-'));
    const init = await runCli(['init', '--data-dir', join(dir, 'store'), '--demo', '--pin-hash-cost', String(TEST_PIN_HASH_COST)]);
    expect(init.code, init.stderr).to.equal(0);
    expect(init.stdout).to.match(/Operator credential \(shown only this once/);
    expect(init.stdout).to.match(/mpo_[A-Za-z0-9_-]{40,}/);
  });
  after(async () => cleanup());

  it('documents every command with --help', async () => {
    const top = await runCli(['--help']);
    expect(top.code).to.equal(0);
    for (const cmd of ['init', 'start', 'verify', 'key', 'link-mall', 'sync']) expect(top.stdout).to.include(cmd);
    const start = await runCli(['start', '--help']);
    expect(start.stdout).to.include('--data-dir').and.include('--port').and.include('--mall-url');
    const terminal = await runBin('bin/pos-terminal.js', ['--help']);
    expect(terminal.code).to.equal(0);
    expect(terminal.stdout).to.include('pair').and.include('start');
    const tstart = await runBin('bin/pos-terminal.js', ['start', '--help']);
    expect(tstart.stdout).to.include('--scanner').and.include('--printer').and.include('--port');
  });

  it('refuses to init over an existing store', async () => {
    const again = await runCli(['init', '--data-dir', join(dir, 'store')]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/already holds a vendor server/);
  });

  it('says what to do when there is no store', async () => {
    const res = await runCli(['start', '--data-dir', join(dir, 'nothing')]);
    expect(res.code).to.equal(1);
    expect(res.stderr).to.match(/run "vendor-server init --data-dir/);
    expect(res.stderr).to.include('[VND_ERR_CONFIG]');
  });

  it('names a port that is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const address = blocker.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      const res = await runCli(['start', '--data-dir', join(dir, 'store'), '--port', String(port)]);
      expect(res.code).to.equal(1);
      expect(res.stderr).to.include(`port ${port}`).and.include('already in use').and.include('[VND_ERR_PORT_IN_USE]');
    } finally {
      blocker.close();
    }
  });

  it('names a corrupt journal precisely and never starts on it', async () => {
    const copy = join(dir, 'corrupt');
    const init = await runCli(['init', '--data-dir', copy, '--demo']);
    expect(init.code).to.equal(0);
    // No checkpoint: start-up must replay, and so read, the damaged line.
    await rm(join(copy, 'ledger', 'state', 'checkpoint.json'));
    const journalDir = join(copy, 'ledger', 'journal');
    const [segment] = await readdir(journalDir);
    if (segment === undefined) throw new Error('a journal segment');
    const file = join(journalDir, segment);
    const text = await readFile(file, 'utf8');
    const at = text.indexOf('Stabilo');
    await writeFile(file, `${text.slice(0, at)}Stabilx${text.slice(at + 7)}`);
    const res = await runCli(['start', '--data-dir', copy, '--port', '0']);
    expect(res.code).to.equal(1);
    expect(res.stderr).to.include('[VND_ERR_JOURNAL_CORRUPT]').and.include(segment).and.match(/byte \d+/).and.match(/hash/);
    const verify = await runCli(['verify', '--data-dir', copy]);
    expect(verify.code).to.equal(1);
  });

  it('hashes PINs at the cost init was given, refuses a cost a store may not set, and a config that sets one', async () => {
    // The store made in before() was given the tests' cost: its demo staff are hashed at it.
    const config = JSON.parse(await readFile(join(dir, 'store', 'config.json'), 'utf8')) as { pinHashCost?: number };
    expect(config.pinHashCost).to.equal(TEST_PIN_HASH_COST);
    const access = JSON.parse(await readFile(join(dir, 'store', 'access.json'), 'utf8')) as { staff: Record<string, { pinHash: string }> };
    const hashes = Object.values(access.staff).map((s) => s.pinHash);
    expect(hashes).to.have.length.greaterThan(0);
    for (const h of hashes) expect(h.startsWith(`scrypt-hmac$${TEST_PIN_HASH_COST}$8$1$`), h).to.equal(true);
    // A cost that is not a power of two, or beyond the range, is refused before anything is made.
    for (const bad of ['1000', '512', '65536', 'lots']) {
      const res = await runCli(['init', '--data-dir', join(dir, `cost-${bad}`), '--pin-hash-cost', bad]);
      expect(res.code, bad).to.equal(1);
      expect(res.stderr, bad).to.include('a PIN hash cost is a power of two from 1024 to 32768');
      expect(await readdir(join(dir, `cost-${bad}`)).catch(() => null), bad).to.equal(null);
    }
    // A config edited to a cost no store may set does not start.
    const copy = join(dir, 'badcost');
    expect((await runCli(['init', '--data-dir', copy])).code).to.equal(0);
    const text = await readFile(join(copy, 'config.json'), 'utf8');
    await writeFile(join(copy, 'config.json'), JSON.stringify({ ...(JSON.parse(text) as object), pinHashCost: 5000 }));
    const res = await runCli(['start', '--data-dir', copy, '--port', '0']);
    expect(res.code).to.equal(1);
    expect(res.stderr).to.include('pinHashCost').and.include('[VND_ERR_CONFIG]');
  });

  it('says when the vendor key is missing', async () => {
    const copy = join(dir, 'nokey');
    expect((await runCli(['init', '--data-dir', copy])).code).to.equal(0);
    await rm(join(copy, 'keys'), { recursive: true });
    const res = await runCli(['start', '--data-dir', copy, '--port', '0']);
    expect(res.code).to.equal(1);
    expect(res.stderr).to.match(/vendor key .* is missing/).and.include('[VND_ERR_CONFIG]');
  });

  it('prints the public key for the mall, and sync status asks the running server', async () => {
    const key = await runCli(['key', '--data-dir', join(dir, 'store')]);
    expect(key.code).to.equal(0);
    const printed = JSON.parse(key.stdout) as { vendorId: string; jwk: { kty: string; crv: string; d?: string } };
    expect(printed.vendorId).to.equal('acme');
    expect(printed.jwk).to.include({ kty: 'OKP', crv: 'Ed25519' });
    expect(printed.jwk.d, 'never the private part').to.equal(undefined);
    const status = await runCli(['sync', 'status', '--data-dir', join(dir, 'store'), '--url', 'https://127.0.0.1:9']);
    expect(status.code).to.equal(1);
    expect(status.stderr).to.match(/no vendor server answers/);
    const server = await spawnVendorServer(join(dir, 'store'));
    try {
      const running = await runCli(['sync', 'status', '--data-dir', join(dir, 'store'), '--url', server.url]);
      expect(running.code, running.stderr).to.equal(0);
      const sync = JSON.parse(running.stdout) as { configured: boolean; eventsWaiting: number };
      expect(sync.configured).to.equal(false);
      expect(sync.eventsWaiting).to.be.greaterThan(0);
    } finally {
      await killHard(server.child);
    }
  });
});
