import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { dataPaths, loadConfig } from '../../vendor-server/config.ts';
import { LedgerService, type Actor } from '../../vendor-server/ledger/service.ts';
import { auditCommand, auditStoredLedger, openLedger } from '../../vendor-server/ledger/store.ts';
import { killHard, spawnVendorServer, until } from '../helpers/process.ts';
import { openDemoLedger, startTestVendor, tempDir } from '../helpers/vendor.ts';
import { capturedLogger } from './helpers-files.ts';

const OPERATOR: Actor = { terminal: null, cashier: null };
/** Enough events before the checkpoint that the audit is still replaying when the test looks. */
const ISSUANCES = 20_000;

/** pid, state, parent pid and nice value from /proc/<pid>/stat; null once the process is gone. */
function procStat(pid: number | string, task?: string): { state: string; ppid: number; nice: number } | null {
  let text: string;
  try {
    text = readFileSync(task === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${task}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name is in parentheses and may hold anything: the fields follow the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] as string, ppid: Number(fields[1]), nice: Number(fields[16]) };
}

/** A process that ended: gone, or a zombie nobody has reaped yet (an orphan's reaper may never). */
function ended(pid: number): boolean {
  const s = procStat(pid);
  return s === null || s.state === 'Z';
}

/** The pid of the audit process a server process started, once it runs. */
function auditChildOf(serverPid: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || procStat(name)?.ppid !== serverPid) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes('audit-process')) return Number(name);
  }
  return undefined;
}

/** The nice value of every thread of a process: each thread has its own on Linux. */
function threadNices(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => procStat(pid, t)?.nice ?? NaN);
}

describe('vendor-server: the integrity audit runs in a process of its own', function () {
  this.timeout(180_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let store: string;
  let vendorId: string;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-audit-process-'));
    store = join(dir, 'store');
    const { config, opened, ledger } = await openDemoLedger(store);
    vendorId = config.vendorId;
    const customerId = Object.keys(opened.state.customers)[0] as string;
    for (let from = 0; from < ISSUANCES; from += 2000) {
      const wave: Promise<unknown>[] = [];
      for (let i = from; i < from + 2000; i++) wave.push(ledger.issueTokens(OPERATOR, `op:audit-${i}`, { customerId, token: 'ACME', units: 1, reason: 'reward' }));
      await Promise.all(wave);
    }
    // The checkpoint covers every event, so the audit replays them all from seq 1.
    await opened.checkpoints.now();
    await opened.journal.close();
  });
  after(async () => cleanup());

  it('a SIGKILLed server leaves no audit process behind', async () => {
    const server = await spawnVendorServer(store);
    const serverPid = server.child.pid as number;
    let audit: number | undefined;
    try {
      audit = await until('the audit process', () => auditChildOf(serverPid));
      const found = audit;
      // The server lowers it as it starts it, and it lowers the threads it started before that
      // itself: seen from here, just after it appears, it may not have done so yet.
      await until('the audit process at the lowest priority', () => (threadNices(found).every((n) => n === 19) ? true : undefined));
      // Held still, so it is certainly mid-audit when the server dies.
      process.kill(audit, 'SIGSTOP');
      const held = audit;
      await until('the audit process to stop', () => (procStat(held)?.state === 'T' ? true : undefined));
      expect(server.output()).to.not.include('ledger integrity confirmed');
      // The lowest priority, on every thread it has.
      expect(threadNices(audit).every((n) => n === 19), `nice values ${threadNices(audit).join(',')}`).to.equal(true);
    } finally {
      await killHard(server.child);
    }
    process.kill(audit, 'SIGCONT');
    const pid = audit;
    // At nice 19 it notices its closed stdin when it next gets the CPU: on a machine that
    // other work saturates, that can take a minute or more.
    await until('the audit process to end', () => (ended(pid) ? true : undefined), 150_000);
  });

  it('the audit process reports one line, and quits without finishing when its stdin closes', async () => {
    const job = { dataDir: dataPaths(store).ledgerDir, vendorId, toSeq: ISSUANCES };
    const run = (closeStdin: boolean) => {
      const { file, args } = auditCommand(job);
      const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      if (closeStdin) {
        // Held still before it can read a line, its stdin closed, then let go: the
        // audit needs many turns of its event loop, the end of its stdin only one.
        process.kill(child.pid as number, 'SIGSTOP');
        child.stdin.end();
        process.kill(child.pid as number, 'SIGCONT');
      }
      return new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })));
    };
    const full = await run(false);
    expect(full.code).to.equal(0);
    const report = JSON.parse(full.out) as { ok: boolean; result: { lastSeq: number; checkpointSeq: number } };
    expect(report.ok).to.equal(true);
    expect(report.result.checkpointSeq).to.be.greaterThan(ISSUANCES);
    expect(report.result.lastSeq).to.equal(report.result.checkpointSeq);
    const quit = await run(true);
    expect(quit).to.deep.equal({ code: 0, out: '' });
  });

  it('checks the events after the checkpoint by their chain: a byte changed there is found', async () => {
    const copy = join(dir, 'after-checkpoint');
    await cp(store, copy, { recursive: true });
    const config = await loadConfig(copy);
    const opened = await openLedger({ dataDir: dataPaths(copy).ledgerDir, vendorId });
    const ledger = new LedgerService(
      { vendorId, name: config.storeName, address: config.address, currency: config.currency },
      opened.state, opened.journal, {}, undefined, config.idempotencyKeysMax,
    );
    const customerId = Object.keys(opened.state.customers)[0] as string;
    await ledger.issueTokens(OPERATOR, 'op:after-checkpoint', { customerId, token: 'ACME', units: 1, reason: 'reward' });
    const last = opened.state.seq;
    await opened.journal.close();
    const job = { dataDir: dataPaths(copy).ledgerDir, vendorId, toSeq: last };
    const clean = await auditStoredLedger(job);
    expect(clean.lastSeq).to.equal(last);
    expect(clean.checkpointSeq).to.equal(last - 1);

    const journalDir = join(dataPaths(copy).ledgerDir, 'journal');
    const segment = join(journalDir, (await readdir(journalDir)).sort().at(-1) as string);
    const text = await readFile(segment, 'utf8');
    const at = text.lastIndexOf('"units":1');
    expect(at).to.be.greaterThan(text.lastIndexOf('\n', text.length - 2));
    await writeFile(segment, `${text.slice(0, at)}"units":2${text.slice(at + 9)}`);
    const err = await auditStoredLedger(job).then(() => null, (e: unknown) => e as Error);
    expect(err?.message).to.match(/hash mismatch/).and.include(`seq ${last}`);
  });

  it("keeps the server's node options but for its profiler", async () => {
    const profiles = join(dir, 'profiles');
    const store = pathToFileURL(join(import.meta.dirname, '../../vendor-server/ledger/store.ts')).href;
    const code = `const { auditCommand } = await import(${JSON.stringify(store)}); console.log(JSON.stringify(auditCommand({ dataDir: 'd', vendorId: 'v', toSeq: 1 }).args));`;
    const child = spawn(process.execPath, [...process.execArgv, '--max-semi-space-size=4', '--cpu-prof', '--cpu-prof-dir', profiles, '--cpu-prof-name=server.cpuprofile', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    expect(await new Promise((resolve) => child.on('close', resolve))).to.equal(0);
    const args = JSON.parse(out) as string[];
    expect(args).to.include('--max-semi-space-size=4').and.include.members(process.execArgv);
    expect(args.join(' ')).to.not.include('cpu-prof').and.not.include(profiles);
    expect(args.slice(-2)).to.deep.equal([join(import.meta.dirname, '../../vendor-server/ledger/audit-process.ts'), JSON.stringify({ dataDir: 'd', vendorId: 'v', toSeq: 1 })]);
  });

  it('stopping the server ends its audit process at once', async () => {
    const { logger, text } = capturedLogger();
    const server = await startTestVendor(store, { logger });
    let pid: number | null = null;
    try {
      pid = await until('the audit process', () => server.audit.pid ?? undefined);
      expect(procStat(pid)?.nice).to.equal(19);
    } finally {
      await server.close();
    }
    const audit = pid;
    await until('the audit process to end', () => (ended(audit) ? true : undefined));
    // Stopped before it reported: neither confirmed nor an alarm.
    expect(text()).to.not.include('ledger integrity confirmed').and.not.include('ledger integrity alarm');
    expect(server.audit.status.state).to.equal('checking');
  });
});
