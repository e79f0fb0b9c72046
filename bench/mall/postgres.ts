/**
 * Mall ingest on PostgreSQL (`npm run bench:mall -- --store postgres [--quick]`).
 *
 * 1,000 simulated vendors (vendors.ts: signed, chained batches of real-sized sales) push
 * over HTTPS, each vendor in order, at most `--concurrency` batches in flight, to:
 *   embedded    - one `mall-sync serve` on the embedded journal (the default store);
 *   postgres_N  - N `mall-sync serve` processes on one PostgreSQL database (N = 1, 2, 4;
 *                 the same database in the same run; vendor i sends to worker i mod N);
 *   ceiling     - the parse + verify + hash server (ceiling-server.ts).
 * The PostgreSQL server is a real one started here (Debian's binaries, initdb in a temp
 * directory, fsync and synchronous_commit on: an ack is a durable commit).
 * Every target gets the same load: one batch of `eventsPerBatch` sales from each of the
 * 1,000 vendors per round, `--concurrency` in flight; one warm-up round each, then
 * `runs` measured rounds, the targets in alternating order within each round; the
 * figures are medians over the rounds, and the ratios the targets are judged by are the
 * medians of the per-round ratios (both sides measured minutes apart at most).
 * Then the cost of an event on PostgreSQL with 10,000 events already ingested against
 * 1,000,000 (100,000 with --quick), each measured in a freshly started worker, the two
 * sizes in turn, `costRuns` times.
 *
 * The registry (1,000 vendors and keys, 1,002 token types, 3,000 allotments: 6,004 signed
 * registry changes) is made through the mall's own service, in a data directory on a
 * memory file system when there is one (/dev/shm): each change is durable there in
 * microseconds instead of the two disk syncs it costs on a disk. The registered directory
 * is then copied to disk, where everything measured runs.
 *
 * The verdicts on the targets (met / MISSED) go to stdout, and its last line is one JSON object:
 *   {"events_per_s":{"embedded":N,"postgres_1":N,"postgres_2":N,"postgres_4":N,"ceiling":N},"vendors":1000,"cost_ratio_large_vs_small":N,"cost_ratio_cpu_large_vs_small":N}
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { initMall } from '../../mall-sync/init.ts';
import { migrateStore } from '../../mall-sync/migrate-store.ts';
import { startMallServer } from '../../mall-sync/server.ts';
import { createLogger } from '../../platform/logger.ts';
import { startCluster, type PgCluster } from '../../test/helpers/postgres.ts';
import { authorityFor, fetchTls, trustAuthorityFile, trustDataDir } from '../tls-client.ts';
import { abandonOnSignalsAndDeadline, CLOCK_TICKS_PER_S, cpuSeconds, killAllChildren, spawnCeiling, spawnMall, stopChild, type Child } from './children.ts';
import { readProfile, summarise } from './cpu-profile.ts';
import { checkCeilingAnswer, checkMallAck, drive, generatedSource, listSource, median, type Target } from './load.ts';
import { benchTokenTypes, BENCH_FEES, makeVendors, MANUFACTURER, nextRound, restartChain, type SignedBatch, type SimVendor } from './vendors.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const profile = args.includes('--profile');
const concurrencyArg = args.indexOf('--concurrency');
const concurrency = concurrencyArg === -1 ? 32 : Number(args[concurrencyArg + 1]);
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 200) {
  console.error('--concurrency takes a whole number from 1 to 200');
  process.exit(2);
}

const VENDORS = 1_000;
const MODE = quick
  ? { eventsPerBatch: 20, runs: 3, smallEvents: 10_000, largeEvents: 100_000, costRuns: 2, limitMs: 20 * 60_000 }
  : { eventsPerBatch: 50, runs: 3, smallEvents: 10_000, largeEvents: 1_000_000, costRuns: 3, limitMs: 90 * 60_000 };
const START_TIMEOUT_MS = 120_000;
/** Fills send batches of 500 events: fewer at once, so that no request waits past the mall's HTTP timeouts on a busy machine. */
const FILL_CONCURRENCY = 8;
const STOP_GRACE_MS = 60_000;

const t0 = performance.now();
function log(text: string): void {
  process.stderr.write(`[bench:mall postgres ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const load = () => `load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs`;

// ---- everything made here goes on every way out -----------------------------------------------

const root = await mkdtemp(join(tmpdir(), 'mallpos-bench-pg-'));
/** Where the registry is made: memory when the machine has a memory file system, else next to the rest. */
const setupRoot = existsSync('/dev/shm') ? await mkdtemp(join('/dev/shm', 'mallpos-bench-pg-setup-')) : root;
let cluster: PgCluster | null = null;
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  killAllChildren();
  try {
    cluster?.stop();
  } catch {
    // Stopped already.
  }
  rmSync(root, { recursive: true, force: true });
  rmSync(setupRoot, { recursive: true, force: true });
}
const deadline = abandonOnSignalsAndDeadline(log, cleanup, `stopping the children and the database, removing ${root}`, MODE.limitMs);

// ---- malls ------------------------------------------------------------------------------------

const silent = createLogger({ level: 'silent', name: 'mall-sync' });

/** The registry the batches need, written in this process (no HTTP): vendors, manufacturer, token types, fees, allotments. */
async function register(dataDir: string, vendors: readonly SimVendor[]): Promise<void> {
  const mall = await startMallServer({ dataDir, port: 0, host: '127.0.0.1', logger: silent, defaultMetrics: false });
  try {
    for (const v of vendors) await mall.service.registerVendor({ id: v.id, name: v.name, jwk: v.publicJwk });
    await mall.service.addParty(MANUFACTURER);
    for (const tt of benchTokenTypes(vendors)) await mall.service.upsertTokenType(tt.code, tt);
    await mall.service.setFees(BENCH_FEES);
    for (const v of vendors) {
      for (const token of ['MALL', 'SUNNY', v.neighbourToken]) await mall.service.allot(`bench-${v.id}-${token}`, { vendor: v.id, token, units: 1_000_000_000, reference: 'bench float' });
    }
  } finally {
    await mall.close();
  }
}

async function startWorker(name: string, dataDir: string, databaseUrl?: string, nodeArgs: string[] = []): Promise<Child> {
  const child = await spawnMall(name, dataDir, { timeoutMs: START_TIMEOUT_MS, nodeArgs, env: databaseUrl === undefined ? {} : { MALLPOS_DATABASE_URL: databaseUrl } });
  await trustDataDir(child.url, dataDir);
  return child;
}

function target(name: string, children: readonly Child[]): Target {
  const first = children[0] as Child;
  return { name, url: first.url, urls: children.map((c) => c.url), ca: authorityFor(first.url), check: checkMallAck };
}

/** Brings idle workers up to the database (an admin read catches up), so that a measurement does not pay for another's events. */
async function catchUp(children: readonly Child[], controlToken: string): Promise<void> {
  await Promise.all(children.map((c) => fetchTls(`${c.url}/admin/fees`, { headers: { authorization: `Bearer ${controlToken}` }, timeoutMs: 300_000 })));
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * CPU seconds used so far by the PostgreSQL server: the postmaster with the children it
 * has reaped (a backend whose connection closed), and every child still running.
 */
async function databaseCpuSeconds(): Promise<number> {
  const c = cluster;
  if (c === null) return 0;
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(c.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
  const pids: number[] = [];
  let reaped = 0;
  try {
    const fields = readFileSync(`/proc/${postmaster}/stat`, 'utf8');
    const f = fields.slice(fields.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime (fields 14 to 17 of proc(5)), in clock ticks.
    reaped = [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i] ?? 0), 0) / CLOCK_TICKS_PER_S;
  } catch {
    return 0;
  }
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const stat = (() => {
      try {
        return readFileSync(`/proc/${name}/stat`, 'utf8');
      } catch {
        return '';
      }
    })();
    // Field 4 (ppid) comes right after the command name in parentheses and the state.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === postmaster) pids.push(Number(name));
  }
  const cpu = await Promise.all(pids.map((pid) => cpuSeconds(pid)));
  return cpu.reduce((a, b) => a + b, reaped);
}

/** Where a profiled process spent its CPU over its whole life (set-up and catch-up included). */
async function reportProfile(name: string, dir: string): Promise<void> {
  const p = await readProfile(dir);
  if (p === null) {
    log(`profile: ${name} wrote no .cpuprofile`);
    return;
  }
  const s = summarise(p, 20, 0);
  log(`profile of ${name}: ${(s.totalMs / 1000).toFixed(1)} s of CPU (idle left out)`);
  for (const f of s.files.slice(0, 12)) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}`);
  for (const f of s.functions) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}`);
  for (const f of s.inclusive) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  total in ${f.name}`);
}

// ---- measuring --------------------------------------------------------------------------------

interface Measured {
  events: number;
  ms: number;
  eventsPerS: number;
  msPerEvent: number;
  /** CPU per event of the target's processes and, on PostgreSQL, of the database server. */
  cpuUsPerEvent: number;
}

/** The PostgreSQL workers' write-lock figures (mall-sync/metrics.ts), summed over `children`. */
interface LockFigures {
  heldS: number;
  /** Held seconds by phase: catch-up, changes, writes, commit. */
  phases: Record<string, number>;
  waitS: number;
  groups: number;
  changes: number;
  caughtUp: number;
}

async function lockFigures(children: readonly Child[]): Promise<LockFigures> {
  const sum: LockFigures = { heldS: 0, phases: { 'catch-up': 0, changes: 0, writes: 0, commit: 0 }, waitS: 0, groups: 0, changes: 0, caughtUp: 0 };
  for (const c of children) {
    const text = await (await fetchTls(`${c.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    sum.heldS += value('mallpos_mall_write_lock_held_seconds_sum');
    for (const phase of Object.keys(sum.phases)) sum.phases[phase] = (sum.phases[phase] ?? 0) + value(`mallpos_mall_write_lock_phase_seconds_total\\{phase="${phase}"\\}`);
    sum.waitS += value('mallpos_mall_write_lock_wait_seconds_sum');
    sum.groups += value('mallpos_mall_write_lock_held_seconds_count');
    sum.changes += value('mallpos_mall_group_changes_sum');
    sum.caughtUp += value('mallpos_mall_events_caught_up_total');
  }
  return sum;
}

async function measure(t: Target, children: readonly Child[], round: readonly SignedBatch[][]): Promise<Measured> {
  const onPostgres = t.name.startsWith('postgres');
  const lock0 = onPostgres ? await lockFigures(children) : null;
  const cpu0 = await Promise.all(children.map((c) => cpuSeconds(c.pid)));
  const db0 = await databaseCpuSeconds();
  const sent = await drive(t, round.map(listSource), concurrency);
  const cpu = (await Promise.all(children.map((c) => cpuSeconds(c.pid)))).reduce((a, b, i) => a + b - (cpu0[i] as number), 0);
  const db = (await databaseCpuSeconds()) - db0;
  if (lock0 !== null) {
    // How much of the window the one write lock was held (the mall's serialised share), in how many turns.
    const l = await lockFigures(children);
    const groups = l.groups - lock0.groups;
    log(
      `  ${t.name.padEnd(10)} write lock held ${(((l.heldS - lock0.heldS) * 1000) / sent.ms * 100).toFixed(0)}% of the window, waited for ${(l.waitS - lock0.waitS).toFixed(2)} s in all; ` +
        `${fmt(groups)} turns of ${((l.changes - lock0.changes) / Math.max(1, groups)).toFixed(1)} batches, ${((l.heldS - lock0.heldS) * 1000 / Math.max(1, groups)).toFixed(2)} ms each; ` +
        `${fmt(l.caughtUp - lock0.caughtUp)} events of other workers caught up; held by phase: ` +
        Object.keys(l.phases).map((p) => `${p} ${(((l.phases[p] ?? 0) - (lock0.phases[p] ?? 0)) * 1000 / Math.max(1, groups)).toFixed(2)} ms`).join(', ') + ' a turn',
    );
  }
  // The database's CPU counts only for the targets on PostgreSQL (the others do not touch it).
  const onDatabase = t.name.startsWith('postgres') || t.name === 'small' || t.name === 'large';
  const m = { events: sent.events, ms: sent.ms, eventsPerS: sent.events / (sent.ms / 1000), msPerEvent: sent.ms / sent.events, cpuUsPerEvent: ((cpu + (onDatabase ? db : 0)) * 1e6) / sent.events };
  const dbText = onDatabase ? `, database cpu ${((db * 1e6) / sent.events).toFixed(1)} us/event` : '';
  log(`  ${t.name.padEnd(10)} ${fmt(m.events)} events in ${sent.batches} batches, ${(m.ms / 1000).toFixed(2)} s: ${fmt(m.eventsPerS)} events/s; server cpu ${((cpu * 1e6) / sent.events).toFixed(1)} us/event${dbText}`);
  return m;
}

// ---- the bench --------------------------------------------------------------------------------

type Name = 'embedded' | 'postgres_1' | 'postgres_2' | 'postgres_4' | 'ceiling';

interface Throughput {
  eventsPerS: Record<Name, number>;
  /** Medians of the per-round ratios. */
  p2VsEmbedded: number;
  p2VsP1: number;
}

async function throughput(vendors: SimVendor[]): Promise<Throughput> {
  log(`throughput: ${MODE.runs} runs of ${fmt(VENDORS * MODE.eventsPerBatch)} events per target (${VENDORS} vendors x 1 batch of ${MODE.eventsPerBatch}), concurrency ${concurrency}`);
  // The embedded mall, and the ceiling with the same vendors' keys.
  const registeredCopy = join(setupRoot, 'registered');
  const init = await initMall({ dataDir: registeredCopy });
  const embeddedVendors = vendors.map(restartChain);
  const registering = performance.now();
  await register(registeredCopy, embeddedVendors);
  log(`registered 1,000 vendors, their token types and 3,000 allotments at the embedded mall${setupRoot === root ? '' : ' (in memory)'} in ${((performance.now() - registering) / 1000).toFixed(1)} s`);
  const embeddedDir = join(root, 'embedded');
  await cp(registeredCopy, embeddedDir, { recursive: true });
  const embedded = await startWorker('embedded', embeddedDir, undefined, profile ? ['--cpu-prof', `--cpu-prof-dir=${join(root, 'profile-embedded')}`] : []);
  const keysFile = join(root, 'vendor-keys.json');
  await writeFile(keysFile, JSON.stringify(Object.fromEntries(vendors.map((v) => [v.kid, v.publicJwk]))));
  const ceilingTls = join(root, 'ceiling-tls');
  const ceiling = await spawnCeiling(keysFile, ceilingTls, START_TIMEOUT_MS);
  await trustAuthorityFile(ceiling.url, ceilingTls);

  // The same registry on PostgreSQL: a copy of the registered embedded mall, moved there (the operator's path).
  const pgDir = join(root, 'postgres');
  await cp(registeredCopy, pgDir, { recursive: true });
  const moved = await migrateStore(pgDir, { databaseUrl: (cluster as PgCluster).url('mall') });
  log(`moved the registered mall to PostgreSQL with migrate-store: ${fmt(moved.events)} registry events`);
  const pgVendors = vendors.map(restartChain);
  // The registered, empty mall is the template of the cost measurement's databases.
  await adminQuery((cluster as PgCluster).url('postgres'), 'CREATE DATABASE mall_registered TEMPLATE mall');
  const workers: Child[] = [];
  // With --profile, the embedded mall, the worker of postgres_1 and the first worker of postgres_2 run under --cpu-prof.
  const profDir = (name: string) => join(root, `profile-${name}`);
  const profArgs = (name: string) => (profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir(name)}`] : []);
  const profiled: Record<number, string> = { 0: 'postgres_1', 1: 'postgres_2' };
  for (let i = 0; i < 7; i++) workers.push(await startWorker(`pg-worker-${i + 1}`, pgDir, undefined, profiled[i] === undefined ? [] : profArgs(profiled[i] as string)));
  const groups: Record<'postgres_1' | 'postgres_2' | 'postgres_4', Child[]> = { postgres_1: workers.slice(0, 1), postgres_2: workers.slice(1, 3), postgres_4: workers.slice(3, 7) };
  const targets: Record<Name, Target> = {
    embedded: target('embedded', [embedded]),
    ceiling: { name: 'ceiling', url: ceiling.url, ca: authorityFor(ceiling.url), check: checkCeilingAnswer },
    postgres_1: target('postgres_1', groups.postgres_1),
    postgres_2: target('postgres_2', groups.postgres_2),
    postgres_4: target('postgres_4', groups.postgres_4),
  };
  const results: Record<Name, Measured[]> = { embedded: [], ceiling: [], postgres_1: [], postgres_2: [], postgres_4: [] };
  try {
    log('warm-up round on every target');
    const warmEmbedded = await nextRound(embeddedVendors, 1, MODE.eventsPerBatch);
    await measure(targets.ceiling, [ceiling], warmEmbedded);
    await measure(targets.embedded, [embedded], warmEmbedded);
    for (const name of ['postgres_1', 'postgres_2', 'postgres_4'] as const) {
      await catchUp(groups[name], init.adminToken);
      await measure(targets[name], groups[name], await nextRound(pgVendors, 1, MODE.eventsPerBatch));
    }
    for (let r = 0; r < MODE.runs; r++) {
      log(`run ${r + 1} of ${MODE.runs} (${load()})`);
      const round = await nextRound(embeddedVendors, 1, MODE.eventsPerBatch);
      const order: Name[] = r % 2 === 0 ? ['ceiling', 'embedded', 'postgres_1', 'postgres_2', 'postgres_4'] : ['postgres_4', 'postgres_2', 'postgres_1', 'embedded', 'ceiling'];
      for (const name of order) {
        if (name === 'ceiling') results.ceiling.push(await measure(targets.ceiling, [ceiling], round));
        else if (name === 'embedded') results.embedded.push(await measure(targets.embedded, [embedded], round));
        else {
          await catchUp(groups[name], init.adminToken);
          results[name].push(await measure(targets[name], groups[name], await nextRound(pgVendors, 1, MODE.eventsPerBatch)));
        }
      }
    }
  } finally {
    await stopChild(ceiling, STOP_GRACE_MS);
    await stopChild(embedded, STOP_GRACE_MS);
    for (const w of workers) await stopChild(w, STOP_GRACE_MS);
  }
  if (profile) {
    for (const name of ['embedded', 'postgres_1', 'postgres_2'] as const) await reportProfile(name, profDir(name));
  }
  const out = Object.fromEntries((Object.keys(results) as Name[]).map((n) => [n, median(results[n].map((m) => m.eventsPerS))])) as Record<Name, number>;
  // Each round's ratio compares measurements taken within a minute of each other; their median is the verdict.
  const perRound = (a: Name, b: Name) => results[a].map((m, i) => m.eventsPerS / (results[b][i] as Measured).eventsPerS);
  const p2VsEmbedded = perRound('postgres_2', 'embedded');
  const p2VsP1 = perRound('postgres_2', 'postgres_1');
  const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  log(
    `throughput (median of ${MODE.runs}): embedded ${fmt(out.embedded)}, postgres_1 ${fmt(out.postgres_1)}, postgres_2 ${fmt(out.postgres_2)}, postgres_4 ${fmt(out.postgres_4)}, ceiling ${fmt(out.ceiling)} events/s; ` +
      `postgres_2 / embedded per round ${list(p2VsEmbedded)}, postgres_2 / postgres_1 per round ${list(p2VsP1)}`,
  );
  return { eventsPerS: out, p2VsEmbedded: median(p2VsEmbedded), p2VsP1: median(p2VsP1) };
}

/** A window of one batch per vendor, measured in a worker started just now on `database`, after `warmEvents` more events. */
async function costWindow(name: string, dir: string, databaseUrl: string, vendors: SimVendor[], warmEvents: number): Promise<Measured> {
  // The fills' dirty pages are written out first, so that no window pays for another's checkpoint.
  await adminQuery(databaseUrl, 'CHECKPOINT');
  const worker = await startWorker(name, dir, databaseUrl);
  try {
    const recovered = worker.startupLog.find((l) => l['msg'] === 'mall store recovered');
    const t = target(name, [worker]);
    const batches = Math.ceil(warmEvents / 500);
    const perVendor = vendors.map((_, i) => Math.floor(batches / vendors.length) + (i < batches % vendors.length ? 1 : 0));
    await drive(t, vendors.map((v, i) => generatedSource(v, perVendor[i] as number)), FILL_CONCURRENCY);
    log(`  ${name}: started at mall seq ${String(recovered?.['seq'])} (${String(recovered?.['replayed'])} events after the checkpoint, ${String(recovered?.['ms'])} ms)`);
    const round = await nextRound(vendors, 1, MODE.eventsPerBatch);
    await adminQuery(databaseUrl, 'CHECKPOINT');
    return await measure(t, [worker], round);
  } finally {
    await stopChild(worker, STOP_GRACE_MS);
  }
}

async function costRatio(vendors: SimVendor[]): Promise<{ wall: number; cpu: number }> {
  const c = cluster as PgCluster;
  log(`cost of an event on PostgreSQL: ${fmt(MODE.smallEvents)} vs ${fmt(MODE.largeEvents)} events already ingested, ${MODE.costRuns} runs`);
  const dir = join(root, 'postgres');
  await adminQuery(c.url('postgres'), 'CREATE DATABASE mall_large TEMPLATE mall_registered');
  const largeVendors = vendors.map(restartChain);
  // The large database is filled by four workers at once, in batches of 500 events.
  const fillers: Child[] = [];
  for (let i = 0; i < 4; i++) fillers.push(await startWorker(`filler-${i + 1}`, dir, c.url('mall_large')));
  try {
    const batches = Math.ceil(MODE.largeEvents / 500);
    const perVendor = largeVendors.map((_, i) => Math.floor(batches / largeVendors.length) + (i < batches % largeVendors.length ? 1 : 0));
    const filled = await drive(target('fill', fillers), largeVendors.map((v, i) => generatedSource(v, perVendor[i] as number)), FILL_CONCURRENCY);
    log(`  large: filled with ${fmt(filled.events)} events in ${(filled.ms / 1000).toFixed(1)} s (${fmt(filled.events / (filled.ms / 1000))} events/s)`);
  } finally {
    for (const f of fillers) await stopChild(f, STOP_GRACE_MS);
  }
  const small: Measured[] = [];
  const big: Measured[] = [];
  for (let r = 0; r < MODE.costRuns; r++) {
    log(`cost run ${r + 1} of ${MODE.costRuns} (${load()})`);
    const db = `mall_small_${r + 1}`;
    await adminQuery(c.url('postgres'), `CREATE DATABASE ${db} TEMPLATE mall_registered`);
    // Alternate which size goes first, so that a drift of the machine favours neither.
    const smallWindow = async () => small.push(await costWindow('small', dir, c.url(db), vendors.map(restartChain), MODE.smallEvents));
    const largeWindow = async () => big.push(await costWindow('large', dir, c.url('mall_large'), largeVendors, MODE.smallEvents));
    for (const w of r % 2 === 0 ? [smallWindow, largeWindow] : [largeWindow, smallWindow]) await w();
  }
  const smallMs = median(small.map((m) => m.msPerEvent));
  const largeMs = median(big.map((m) => m.msPerEvent));
  const ratio = largeMs / smallMs;
  const smallCpu = median(small.map((m) => m.cpuUsPerEvent));
  const largeCpu = median(big.map((m) => m.cpuUsPerEvent));
  const perRun = big.map((m, i) => m.msPerEvent / (small[i] as Measured).msPerEvent);
  log(
    `cost per event (median of ${small.length}): small ${(smallMs * 1000).toFixed(1)} us, large ${(largeMs * 1000).toFixed(1)} us: ratio ${ratio.toFixed(3)} by wall time (per run ${perRun.map((x) => x.toFixed(2)).join(', ')}); ` +
      `worker + database cpu: small ${smallCpu.toFixed(1)} us, large ${largeCpu.toFixed(1)} us: ratio ${(largeCpu / smallCpu).toFixed(3)} by cpu`,
  );
  return { wall: ratio, cpu: largeCpu / smallCpu };
}

try {
  log(`${quick ? 'quick' : 'full'} mode, ${VENDORS} vendors, work in ${root}; ${load()}`);
  cluster = await startCluster({ fsync: true, sharedBuffers: '256MB' });
  await adminQuery(cluster.url('postgres'), 'CREATE DATABASE mall');
  const vendors = await makeVendors(VENDORS);
  const tp = await throughput(vendors);
  const ratio = await costRatio(vendors);
  clearTimeout(deadline);
  cleanup();
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${load()}`);
  const verdict = (met: boolean, text: string) => console.log(`${met ? 'met   ' : 'MISSED'} ${text}`);
  verdict(tp.p2VsEmbedded >= 0.5, `postgres_2 >= 0.5 x embedded: ${tp.p2VsEmbedded.toFixed(2)} x (median of the per-round ratios)`);
  verdict(tp.p2VsP1 >= 1, `postgres_2 >= postgres_1: ${tp.p2VsP1.toFixed(2)} x (median of the per-round ratios)`);
  verdict(
    ratio.wall <= 1.2,
    `cost per event at ${fmt(MODE.largeEvents)} events <= 1.2 x at ${fmt(MODE.smallEvents)}: ${ratio.wall.toFixed(3)} x by wall time, ${ratio.cpu.toFixed(3)} x by worker + database cpu${quick ? ' (quick: 100,000, not 1,000,000)' : ''}`,
  );
  const rounded = Object.fromEntries((['embedded', 'postgres_1', 'postgres_2', 'postgres_4', 'ceiling'] as const).map((n) => [n, Math.round(tp.eventsPerS[n])]));
  console.log(JSON.stringify({ events_per_s: rounded, vendors: VENDORS, cost_ratio_large_vs_small: Number(ratio.wall.toFixed(3)), cost_ratio_cpu_large_vs_small: Number(ratio.cpu.toFixed(3)) }));
} catch (err) {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  clearTimeout(deadline);
  cleanup();
  process.exitCode = 1;
}
