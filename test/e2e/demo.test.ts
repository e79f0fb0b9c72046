import { spawn, type ChildProcess } from 'node:child_process';
import { access, copyFile, cp, mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { expect } from 'chai';
import { AUDIT_IN_PROCESS_MAX } from '../../vendor-server/ledger/store.ts';
import { killHard, ROOT, runCli, spawnExecutable, spawnVendorServer, until } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { openDemoLedger } from '../helpers/vendor.ts';

/** Where the demo is told to put everything, so it runs beside another copy and on any free ports. */
function demoEnv(root: string, nodeOnlyPath: string, ports: { mall?: number } = {}): NodeJS.ProcessEnv {
  return {
    MALLPOS_DEMO_DIR: join(root, 'demo'),
    MALLPOS_MALL_PORT: String(ports.mall ?? 0),
    MALLPOS_VENDOR_PORT: '0',
    MALLPOS_SCREEN_PORT: '0',
    MALLPOS_PRINTER_PORT: '0',
    PATH: nodeOnlyPath,
  };
}

/** A PATH on which there is node and nothing else: no socat, as on a fresh machine. */
async function nodeOnlyPath(root: string): Promise<string> {
  const bin = join(root, 'bin');
  await mkdir(bin);
  await symlink(process.execPath, join(bin, 'node'));
  return bin;
}

/** The exit code once the child has exited and its output is all read; call it right after spawning. */
function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('close', (code) => resolve(code)));
}

/**
 * `npm ci && npm start` as a newcomer runs it: the compiled demo executable, with only
 * node on the PATH. It must come up without socat and say so in one line, serve the
 * cashier screen's files from dist/, and report a start-up problem as one plain line.
 */
describe('e2e: the demo (npm start) on a machine with only Node', function () {
  this.timeout(180_000);
  let cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
    cleanups = [];
  });

  it('comes up without socat, says so in one line, serves the cashier screen and stops cleanly', async () => {
    const { dir, cleanup } = await tempDir('mallpos-demo-');
    cleanups.push(cleanup);
    const child = spawnExecutable('bin/demo.js', [], demoEnv(dir, await nodeOnlyPath(dir)));
    cleanups.unshift(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let exitCode: number | null | undefined;
    const closed = exited(child);
    void closed.then((code) => (exitCode = code));

    await until('the demo to say it is ready', () => {
      if (exitCode !== undefined) throw new Error(`the demo exited with ${exitCode}:\n${stdout}\n${stderr}`);
      return stdout.includes('Stop with Ctrl-C') ? true : undefined;
    }, 150_000);
    const fallback = stdout.split('\n').filter((l) => /socat/.test(l));
    expect(fallback, stdout).to.have.length(1);
    expect(fallback[0]).to.match(/socat is not installed.*type a code and Enter in the cashier screen/);
    expect(stderr, 'nothing on stderr').to.equal('');

    // The page and every file it loads come from dist/, where the compiled screen server looks.
    // Two stores of one mall, each with its own till and cashier screen.
    const screenUrls = [...stdout.matchAll(/Cashier screen:\s+(\S+)/g)].map((m) => m[1] as string);
    expect(screenUrls, stdout).to.have.length(2);
    expect(stdout).to.include('ACME Market (vendor acme)').and.include('Bella Café (vendor bella)');
    expect((await fetch(screenUrls[1] as string)).status).to.equal(200);
    const screenUrl = screenUrls[0] as string;
    const page = await fetch(screenUrl);
    expect(page.status).to.equal(200);
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="([^"#:]+)"/g)].map((m) => new URL(m[1] as string, screenUrl).href);
    expect(assets.length, html).to.be.greaterThan(0);
    // The page's files need the per-launch secret the page load set as a cookie.
    const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    expect(cookie).to.match(/^mallpos_screen_\d+=/);
    for (const asset of assets) expect((await fetch(asset, { headers: { cookie } })).status, asset).to.equal(200);

    child.kill('SIGTERM');
    expect(await closed).to.equal(0);
  });

  it('says a start-up problem in one plain line, not a stack', async () => {
    const { dir, cleanup } = await tempDir('mallpos-demo-');
    cleanups.push(cleanup);
    // The mall's port is taken by someone else.
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', () => resolve()));
    cleanups.unshift(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const address = squatter.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;

    const child = spawnExecutable('bin/demo.js', [], demoEnv(dir, await nodeOnlyPath(dir), { mall: port }));
    const closed = exited(child);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await closed).to.equal(1);
    const lines = stderr.trim().split('\n');
    expect(lines, stderr).to.have.length(1);
    expect(lines[0]).to.match(/^mallpos demo: /);
    expect(lines[0]).to.include(String(port));
  });
});

/** Whether something accepts TCP connections at this URL's port on 127.0.0.1. */
function accepts(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('e2e: the executables run compiled JavaScript', function () {
  this.timeout(180_000);

  it('run dist/ as one process with the V8 flags of their #! line, so SIGKILL to that pid stops the server', async () => {
    const { dir, cleanup } = await tempDir('mallpos-exec-');
    try {
      const init = await runCli(['init', '--data-dir', dir, '--demo']);
      expect(init.code, init.stderr).to.equal(0);
      const server = await spawnVendorServer(dir);
      const pid = server.child.pid as number;
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      expect(argv).to.include('--max-semi-space-size=16');
      expect(argv.some((a) => a.endsWith('bin/vendor-server.js'))).to.equal(true);
      expect(argv.join(' '), 'no TypeScript loader in production').to.not.match(/tsx/);
      expect(await accepts(server.url)).to.equal(true);
      await killHard(server.child);
      expect(await accepts(server.url), 'nothing left serving after SIGKILL').to.equal(false);
    } finally {
      await cleanup();
    }
  });

  it('run each program from its bundle alone, which needs none of the compiled modules beside it', async () => {
    const { dir, cleanup } = await tempDir('mallpos-bundle-');
    try {
      // Each bundle alone in a folder where no compiled module can be found: a bundle that
      // still required one of them would fail here. Each program runs a command that loads
      // code on demand (a store's and a mall's creation, with the certificate library), not
      // only what it loads at start.
      const copy = join(dir, 'dist');
      await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      for (const [entry, args, says] of [
        ['vendor-server/cli.bundle.cjs', ['init', '--data-dir', join(dir, 'store'), '--pin-hash-cost', '1024'], 'Created vendor server'],
        ['mall-sync/cli.bundle.cjs', ['init', '--data-dir', join(dir, 'mall')], 'Created mall'],
        ['terminal/cli.bundle.cjs', ['--help'], 'pair'],
      ] as const) {
        await mkdir(dirname(join(copy, entry)), { recursive: true });
        await copyFile(join(ROOT, 'dist', entry), join(copy, entry));
        const child = spawn(process.execPath, [join(copy, entry), ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
        const closed = exited(child);
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        expect(await closed, out).to.equal(0);
        expect(out).to.include(says);
      }
    } finally {
      await cleanup();
    }
  });

  it('audit a store in a process started from the audit bundle, which reports what it checked', async () => {
    const { dir, cleanup } = await tempDir('mallpos-audit-bundle-');
    try {
      const init = await runCli(['init', '--data-dir', dir, '--demo']);
      expect(init.code, init.stderr).to.equal(0);
      const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { vendorId: string };
      const job = { dataDir: join(dir, 'ledger'), vendorId: config.vendorId, toSeq: 3, nice: 0 };
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'vendor-server', 'ledger', 'audit-process.bundle.cjs'), JSON.stringify(job)], { stdio: ['pipe', 'pipe', 'pipe'] });
      const closed = exited(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      expect(await closed, out).to.equal(0);
      const report = JSON.parse(out.trim()) as Record<string, unknown>;
      expect(report, out).to.include({ ok: true });
    } finally {
      await cleanup();
    }
  });

  it('run their own files from a checkout copied elsewhere after its build, never the files of the folder it was built in', async () => {
    const { dir, cleanup } = await tempDir('mallpos-moved-');
    try {
      // The built checkout copied to another folder, with its dependencies beside it.
      const moved = join(dir, 'mallpos');
      await mkdir(moved);
      for (const part of ['bin', 'dist', 'package.json']) await cp(join(ROOT, part), join(moved, part), { recursive: true });
      await symlink(join(ROOT, 'node_modules'), join(moved, 'node_modules'));
      // The copy's audit script notes that it ran, then audits as before. The server finds
      // the script next to its own code: a path kept from the build would run the original.
      const audit = join(moved, 'dist', 'vendor-server', 'ledger', 'audit-process.bundle.cjs');
      const marker = join(dir, 'audit ran from the copy');
      await rename(audit, `${audit}.original.cjs`);
      await writeFile(audit, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '');\nrequire('./audit-process.bundle.cjs.original.cjs');\n`);

      // A store with more events than are audited in the server's own process.
      const store = join(dir, 'store');
      const { opened, ledger } = await openDemoLedger(store);
      const customerId = Object.keys(opened.state.customers)[0] as string;
      const issued: Promise<unknown>[] = [];
      for (let i = 0; i <= AUDIT_IN_PROCESS_MAX; i++) issued.push(ledger.issueTokens({ terminal: null, cashier: null }, `op:moved-${i}`, { customerId, token: 'ACME', units: 1, reason: 'reward' }));
      await Promise.all(issued);
      await opened.journal.close();

      const server = spawn(join(moved, 'bin', 'vendor-server.js'), ['start', '--data-dir', store, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      server.stdout.on('data', (d: Buffer) => (out += d.toString()));
      server.stderr.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await until('the audit after start to confirm the ledger', () => {
          if (server.exitCode !== null) throw new Error(`the server exited with ${server.exitCode}:\n${out}`);
          return out.includes('ledger integrity confirmed') ? true : undefined;
        });
        await access(marker);
      } finally {
        await killHard(server);
      }
    } finally {
      await cleanup();
    }
  });

  it('say in one line that dist/ is missing rather than fall back to the sources', async () => {
    const { dir, cleanup } = await tempDir('mallpos-nodist-');
    try {
      // A copy of the executables in a checkout that was never built.
      await mkdir(join(dir, 'bin'));
      for (const file of ['vendor-server.js', 'compiled.js']) await copyFile(join(ROOT, 'bin', file), join(dir, 'bin', file));
      const child = spawn(process.execPath, [join(dir, 'bin', 'vendor-server.js'), '--help'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      const closed = exited(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      expect(await closed).to.equal(1);
      expect(out.trim().split('\n'), out).to.have.length(1);
      expect(out).to.match(/^vendor-server: dist\/vendor-server\/cli\.bundle\.cjs is missing; build it with "npm run build"/);
    } finally {
      await cleanup();
    }
  });
});
