/**
 * Mall ingest benchmark. 50 simulated vendors, each with its own Ed25519 key registered
 * at the mall, push signed, chained batches of 500 sale events (vendors.ts) over
 * POST /v1/batches, each vendor in order, at most `--concurrency` batches in flight:
 *   mallpos  - `bin/mall-sync.js serve` as a child process (the load generator does not
 *              share its event loop): durable, an ack only once the batch is archived
 *              and its batch.ingested event is fdatasynced in the mall journal;
 *   ceiling  - bench/mall/ceiling-server.ts, a child process doing only what any mall
 *              must: parse, verify the signature, parse the payload, hash the events;
 * both receiving the very same batches over HTTPS (each server with its own certificate
 * authority, which the senders trust), run after run, side by side. Then the cost of an
 * event with 10,000 events already ingested against 1,000,000 (100,000 with --quick).
 *
 *   npm run bench:mall [-- --quick] [-- --profile] [-- --concurrency N]
 *
 * --profile runs the mallpos child under --cpu-prof and prints where its time went.
 * Progress goes to stderr; the last line of stdout is one JSON object:
 *   {"events_per_s":{"mallpos":N,"ceiling":N},"cost_ratio_large_vs_small":N}
 * Everything runs on 127.0.0.1 in a temp directory that is removed, with the children,
 * on every way out (the children also exit by themselves when the bench is gone).
 */
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { authorityFor, fetchTls, trustAuthorityFile, trustDataDir } from '../tls-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { abandonOnSignalsAndDeadline, cpuSeconds, killAllChildren, spawnCeiling, spawnMall, stopChild, type Child } from './children.ts';
import { readProfile, summarise } from './cpu-profile.ts';
import { checkCeilingAnswer, checkMallAck, drive, generatedSource, listSource, median, type Sent, type Target } from './load.ts';
import { BATCH_EVENTS, benchTokenTypes, BENCH_FEES, makeVendors, MANUFACTURER, nextRound, restartChain, type SignedBatch, type SimVendor } from './vendors.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const profile = args.includes('--profile');
const concurrencyArg = args.indexOf('--concurrency');
const CONCURRENCY_MAX = 50;

interface Mode {
  vendors: number;
  /** Batches per vendor in the warm-up round both servers get before the measured runs. */
  warmupBatchesPerVendor: number;
  /** Measured runs per server, and batches per vendor in each. */
  runs: number;
  batchesPerVendorPerRun: number;
  smallEvents: number;
  largeEvents: number;
  costRuns: number;
  /** Batches per vendor in the window measured on the small and on the large mall. */
  costBatchesPerVendor: number;
  /** Another measured run starts only when the last one of its kind would still end before this. */
  budgetMs: number;
  /** The whole run is abandoned (children killed, files removed) after this long. */
  limitMs: number;
}

const MODE: Mode = quick
  ? {
      vendors: 50, warmupBatchesPerVendor: 1, runs: 3, batchesPerVendorPerRun: 1,
      smallEvents: 10_000, largeEvents: 100_000, costRuns: 3, costBatchesPerVendor: 1, budgetMs: 95_000, limitMs: 115_000,
    }
  : {
      vendors: 50, warmupBatchesPerVendor: 1, runs: 7, batchesPerVendorPerRun: 2,
      smallEvents: 10_000, largeEvents: 1_000_000, costRuns: 5, costBatchesPerVendor: 2, budgetMs: 9 * 60_000, limitMs: 12 * 60_000,
    };

const concurrency = (() => {
  if (concurrencyArg === -1) return 16;
  const n = Number(args[concurrencyArg + 1]);
  if (!Number.isInteger(n) || n < 1 || n > CONCURRENCY_MAX) {
    console.error(`--concurrency takes a whole number from 1 to ${CONCURRENCY_MAX}`);
    process.exit(2);
  }
  return n;
})();

const START_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 60_000;

const t0 = performance.now();
function log(text: string): void {
  process.stderr.write(`[bench:mall ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Whether a run that takes as long as the last one of its kind still ends within the budget (the first always runs). */
function timeFor(lastRunMs: number, done: number): boolean {
  if (done === 0) return true;
  const ok = performance.now() - t0 + lastRunMs <= MODE.budgetMs;
  if (!ok) log(`  no time for another run within the ${MODE.budgetMs / 1000} s budget of this mode: ${done} runs it is`);
  return ok;
}

/** The machine's load, because other processes on it change every figure here. */
function load(): string {
  return `load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs`;
}

// ---- the temp directory and the children, removed on every way out --------------------

const root = await mkdtemp(join(tmpdir(), 'mallpos-bench-mall-'));
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  killAllChildren();
  rmSync(root, { recursive: true, force: true });
}
const deadline = abandonOnSignalsAndDeadline(log, cleanup, `stopping the children and removing ${root}`, MODE.limitMs);

// ---- a mall ------------------------------------------------------------------------------

interface Mall {
  dir: string;
  adminToken: string;
  child: Child;
}

async function newMallDir(name: string): Promise<{ dir: string; adminToken: string }> {
  const dir = join(root, name);
  const init = await initMall({ dataDir: dir });
  return { dir, adminToken: init.adminToken };
}

/** The registry the vendors' batches need: the vendors with their keys, the manufacturer, token types and fees. */
async function register(url: string, adminToken: string, vendors: readonly SimVendor[]): Promise<void> {
  const admin = new MallAdminClient(url, adminToken, authorityFor(url));
  for (const v of vendors) await admin.registerVendor({ id: v.id, name: v.name, jwk: v.publicJwk });
  await admin.addParty(MANUFACTURER);
  for (const tt of benchTokenTypes(vendors)) await admin.upsertTokenType(tt);
  await admin.setFees(BENCH_FEES);
  // The mall pays for other issuers' tokens only up to what it allotted: allot plenty of each a vendor takes.
  for (const v of vendors) {
    for (const token of ['MALL', 'SUNNY', v.neighbourToken]) await admin.allot({ vendor: v.id, token, units: 1_000_000_000, reference: 'bench float' }, `bench-${v.id}-${token}`);
  }
}

async function startMall(name: string, dir: string, adminToken: string, nodeArgs: string[] = []): Promise<Mall> {
  const child = await spawnMall(name, dir, { timeoutMs: START_TIMEOUT_MS, nodeArgs });
  // The mall speaks TLS only: the bench trusts the mall's own authority, as a linked store does.
  await trustDataDir(child.url, dir);
  return { dir, adminToken, child };
}

async function stopMall(mall: Mall): Promise<void> {
  const r = await stopChild(mall.child, STOP_GRACE_MS);
  if (r.code !== 0) throw new Error(`${mall.child.name} did not stop cleanly (${r.code ?? r.signal}):\n${mall.child.tail()}`);
}

function mallTarget(mall: Mall): Target {
  return { name: mall.child.name, url: mall.child.url, ca: authorityFor(mall.child.url), check: checkMallAck };
}

/** Vendors with the same keys and the same invented history, from batch 1: one set per mall. */
function freshChains(vendors: readonly SimVendor[]): SimVendor[] {
  return vendors.map(restartChain);
}

// ---- measuring ----------------------------------------------------------------------------

interface Measured extends Sent {
  eventsPerS: number;
  msPerEvent: number;
  serverCpuUsPerEvent: number;
  benchCpuShare: number;
}

async function measure(target: Target, child: Child, round: readonly SignedBatch[][]): Promise<Measured> {
  const serverCpu0 = await cpuSeconds(child.pid);
  const benchCpu0 = process.cpuUsage();
  const sent = await drive(target, round.map(listSource), concurrency);
  const serverCpu = (await cpuSeconds(child.pid)) - serverCpu0;
  const benchCpu = process.cpuUsage(benchCpu0);
  const m: Measured = {
    ...sent,
    eventsPerS: sent.events / (sent.ms / 1000),
    msPerEvent: sent.ms / sent.events,
    serverCpuUsPerEvent: (serverCpu * 1e6) / sent.events,
    benchCpuShare: (benchCpu.user + benchCpu.system) / 1000 / sent.ms,
  };
  log(
    `  ${target.name.padEnd(8)} ${fmt(m.events)} events in ${m.batches} batches, ${(m.ms / 1000).toFixed(2)} s: ${fmt(m.eventsPerS)} events/s; ` +
      `server cpu ${m.serverCpuUsPerEvent.toFixed(1)} us/event (${((serverCpu * 1000 * 100) / sent.ms).toFixed(0)}%), senders ${(m.benchCpuShare * 100).toFixed(0)}%`,
  );
  return m;
}

function roundEvents(round: readonly SignedBatch[][]): number {
  return round.reduce((n, list) => n + list.reduce((k, b) => k + b.events, 0), 0);
}

/** Sends `events` more events to a mall, spread evenly over the vendors (the first ones get any extra batch), cut and signed while sending. */
async function fill(target: Target, vendors: readonly SimVendor[], events: number): Promise<Sent> {
  const batches = Math.ceil(events / BATCH_EVENTS);
  const perVendor = vendors.map((_, i) => Math.floor(batches / vendors.length) + (i < batches % vendors.length ? 1 : 0));
  return drive(target, vendors.map((v, i) => generatedSource(v, perVendor[i] as number)), concurrency);
}

async function metricsLine(url: string): Promise<string> {
  try {
    const text = await (await fetchTls(`${url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    const fsyncs = value('mallpos_mall_journal_fsync_seconds_count');
    const fsyncS = value('mallpos_mall_journal_fsync_seconds_sum');
    const ingests = value('mallpos_mall_ingest_latency_seconds_count');
    const ingestS = value('mallpos_mall_ingest_latency_seconds_sum');
    const events = value('mallpos_mall_events_ingested_total');
    const flagged = value('mallpos_mall_events_flagged_total');
    return (
      `journal group commits ${fmt(fsyncs)} (mean ${((fsyncS / fsyncs) * 1000).toFixed(1)} ms), batches ${fmt(ingests)} (mean ingest latency ${((ingestS / ingests) * 1000).toFixed(0)} ms), ` +
      `events ${fmt(events)} of which flagged ${fmt(flagged)}`
    );
  } catch (err) {
    return `/metrics did not answer: ${(err as Error).message}`;
  }
}

// ---- the bench ------------------------------------------------------------------------------

async function throughput(vendors: SimVendor[]): Promise<{ mallpos: number; ceiling: number }> {
  log(`throughput: ${MODE.runs} runs of ${fmt(MODE.vendors * MODE.batchesPerVendorPerRun * BATCH_EVENTS)} events per server, concurrency ${concurrency}`);
  const { dir, adminToken } = await newMallDir('throughput');
  const profDir = join(root, 'profile');
  if (profile) await mkdir(profDir, { recursive: true });
  // The profile starts with the child; its samples before the measured runs are left out.
  const spawnedAt = performance.now();
  const mall = await startMall('mallpos', dir, adminToken, profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []);
  await register(mall.child.url, adminToken, vendors);
  const keysFile = join(root, 'vendor-keys.json');
  await writeFile(keysFile, JSON.stringify(Object.fromEntries(vendors.map((v) => [v.kid, v.publicJwk]))));
  // The ceiling serves HTTPS from its own authority, as the mall does: the same transport on both sides.
  const ceilingTls = join(root, 'ceiling-tls');
  const ceiling = await spawnCeiling(keysFile, ceilingTls, START_TIMEOUT_MS);
  await trustAuthorityFile(ceiling.url, ceilingTls);
  const targets = { mallpos: mallTarget(mall), ceiling: { name: 'ceiling', url: ceiling.url, ca: authorityFor(ceiling.url), check: checkCeilingAnswer } };
  const children = { mallpos: mall.child, ceiling };
  const results: Record<'mallpos' | 'ceiling', Measured[]> = { mallpos: [], ceiling: [] };
  let measuredFromMs = 0;
  try {
    const warm = await nextRound(vendors, MODE.warmupBatchesPerVendor);
    log(`warm-up: ${fmt(roundEvents(warm))} events to each server`);
    await measure(targets.ceiling, ceiling, warm);
    await measure(targets.mallpos, mall.child, warm);
    measuredFromMs = performance.now() - spawnedAt;
    let lastRunMs = 0;
    for (let r = 0; r < MODE.runs && timeFor(lastRunMs, r); r++) {
      const round = await nextRound(vendors, MODE.batchesPerVendorPerRun);
      const runStarted = performance.now();
      log(`run ${r + 1} of ${MODE.runs} (${load()})`);
      // Alternate who goes first, so that a drift of the machine does not favour one.
      const order = r % 2 === 0 ? (['ceiling', 'mallpos'] as const) : (['mallpos', 'ceiling'] as const);
      for (const name of order) results[name].push(await measure(targets[name], children[name], round));
      lastRunMs = performance.now() - runStarted;
    }
    log(`  mallpos: ${await metricsLine(mall.child.url)}`);
  } finally {
    await stopChild(ceiling, STOP_GRACE_MS);
    await stopMall(mall);
  }
  const med = (name: 'mallpos' | 'ceiling') => median(results[name].map((m) => m.eventsPerS));
  const out = { mallpos: med('mallpos'), ceiling: med('ceiling') };
  const mallCpu = median(results.mallpos.map((m) => m.serverCpuUsPerEvent));
  const ceilingCpu = median(results.ceiling.map((m) => m.serverCpuUsPerEvent));
  log(
    `throughput (median of ${results.mallpos.length}): mallpos ${fmt(out.mallpos)} events/s, ceiling ${fmt(out.ceiling)} events/s, ratio ${(out.mallpos / out.ceiling).toFixed(2)} (target >= 0.5); ` +
      `server cpu per event: mallpos ${mallCpu.toFixed(1)} us, ceiling ${ceilingCpu.toFixed(1)} us (ratio ${(ceilingCpu / mallCpu).toFixed(2)} by cpu)`,
  );
  if (profile) await reportProfile(profDir, measuredFromMs);
  return out;
}

async function reportProfile(dir: string, skipMs: number): Promise<void> {
  const p = await readProfile(dir);
  if (p === null) {
    log('profile: the mall child wrote no .cpuprofile');
    return;
  }
  const s = summarise(p, 25, skipMs);
  log(`profile of the mallpos child during the measured runs: ${(s.totalMs / 1000).toFixed(1)} s of CPU (idle left out)`);
  log('  self time by file:');
  for (const f of s.files) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}`);
  log('  self time by function:');
  for (const f of s.functions) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}`);
  log('  total time (self + callees) of the ingest steps:');
  for (const f of s.inclusive) log(`    ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}`);
}

/** Warms a fresh mall child with `events` events from the first vendors, then measures one window. */
async function costWindow(mall: Mall, vendors: SimVendor[], warmEvents: number): Promise<Measured> {
  const target = mallTarget(mall);
  const warm = await fill(target, vendors, warmEvents);
  log(`  ${mall.child.name}: ${fmt(warm.events)} events to start with (${fmt(warm.events / (warm.ms / 1000))} events/s)`);
  const round = await nextRound(vendors, MODE.costBatchesPerVendor);
  return measure(target, mall.child, round);
}

async function costRatio(vendors: SimVendor[]): Promise<number> {
  log(`cost of an event: ${fmt(MODE.smallEvents)} vs ${fmt(MODE.largeEvents)} events already ingested, ${MODE.costRuns} runs each`);
  // The large mall: filled once, then restarted for every run.
  const large = await newMallDir('large');
  const largeVendors = freshChains(vendors);
  let mall = await startMall('large', large.dir, large.adminToken);
  await register(mall.child.url, large.adminToken, largeVendors);
  const filled = await fill(mallTarget(mall), largeVendors, MODE.largeEvents);
  log(`  large: filled with ${fmt(filled.events)} events in ${(filled.ms / 1000).toFixed(1)} s (${fmt(filled.events / (filled.ms / 1000))} events/s); ${await metricsLine(mall.child.url)}`);
  await stopMall(mall);

  const small: Measured[] = [];
  const big: Measured[] = [];
  let lastRunMs = 0;
  for (let r = 0; r < MODE.costRuns && timeFor(lastRunMs, r); r++) {
    const runStarted = performance.now();
    log(`cost run ${r + 1} of ${MODE.costRuns} (${load()})`);
    // Both windows start in a fresh mall process that has just ingested smallEvents events
    // (equally warm); the small mall's whole history is those events, the large one's is
    // the fill and the earlier runs as well.
    const s = await newMallDir(`small-${r + 1}`);
    const smallVendors = freshChains(vendors);
    mall = await startMall('small', s.dir, s.adminToken);
    try {
      await register(mall.child.url, s.adminToken, smallVendors);
      small.push(await costWindow(mall, smallVendors, MODE.smallEvents));
    } finally {
      await stopMall(mall);
    }
    rmSync(s.dir, { recursive: true, force: true });

    mall = await startMall('large', large.dir, large.adminToken);
    const recovered = mall.child.startupLog.find((l) => l['msg'] === 'mall store recovered');
    log(`  large: recovered at mall seq ${String(recovered?.['seq'])} in ${String(recovered?.['ms'])} ms (${String(recovered?.['replayed'])} events replayed after the checkpoint)`);
    try {
      big.push(await costWindow(mall, largeVendors, MODE.smallEvents));
    } finally {
      await stopMall(mall);
    }
    lastRunMs = performance.now() - runStarted;
  }
  const smallMs = median(small.map((m) => m.msPerEvent));
  const largeMs = median(big.map((m) => m.msPerEvent));
  const ratio = largeMs / smallMs;
  const smallCpu = median(small.map((m) => m.serverCpuUsPerEvent));
  const largeCpu = median(big.map((m) => m.serverCpuUsPerEvent));
  log(
    `cost per event (median of ${small.length}): small ${(smallMs * 1000).toFixed(1)} us (server cpu ${smallCpu.toFixed(1)} us), ` +
      `large ${(largeMs * 1000).toFixed(1)} us (server cpu ${largeCpu.toFixed(1)} us): ratio ${ratio.toFixed(3)} by wall time (target <= 1.2), ${(largeCpu / smallCpu).toFixed(3)} by server cpu`,
  );
  return ratio;
}

try {
  log(`${quick ? 'quick' : 'full'} mode, ${MODE.vendors} vendors, batches of ${BATCH_EVENTS} sale events, work in ${root}; ${load()}`);
  const vendors = await makeVendors(MODE.vendors);
  const events = await throughput(vendors);
  const ratio = await costRatio(vendors);
  clearTimeout(deadline);
  cleanup();
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${load()}`);
  console.log(JSON.stringify({ events_per_s: { mallpos: Math.round(events.mallpos), ceiling: Math.round(events.ceiling) }, cost_ratio_large_vs_small: Number(ratio.toFixed(3)) }));
} catch (err) {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  clearTimeout(deadline);
  cleanup();
  process.exitCode = 1;
}
