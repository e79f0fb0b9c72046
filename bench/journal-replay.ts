/**
 * Writes a journal of realistic sale events, then times what a restart pays: Journal.open
 * plus a full replay with hash-chain verification and JSON parsing, `runs` times over the
 * same journal. replay_s is the median wall time, cpu_s the median CPU time (user +
 * system) of the process, all threads together, main_cpu_s that of the main thread alone
 * (from /proc, so Linux only): on a shared machine the wall time moves with the
 * neighbours' load, the CPU time much less. path says whether the replays checked the
 * hashes on a second thread (two-threads) or not (sequential).
 *
 *   node --import tsx bench/journal-replay.ts [events] [runs] [replayThreadMin]
 *
 * replayThreadMin is passed to Journal.open (0: always sequential; default the journal's).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS_HASH, Journal } from '../platform/storage/index.ts';
import { replayThreadHooks } from '../platform/storage/replay-worker.ts';

const events = Number(process.argv[2] ?? 1_000_000);
const runs = Number(process.argv[3] ?? 3);
const threadMin = process.argv[4] === undefined ? {} : { replayThreadMin: Number(process.argv[4]) };
// Awaiting durability every so often keeps the write queue, and so memory, bounded.
const appendsPerWait = 5_000;

function saleEvent(seq: number) {
  const terminal = `T-${String(seq % 12).padStart(4, '0')}`;
  return {
    seq,
    v: 1,
    type: 'sale',
    vendor: 'V-0042',
    at: new Date(1_764_000_000_000 + seq * 250).toISOString(),
    terminal,
    cashier: `C-${seq % 7}`,
    key: `${terminal}:${randomUUID()}`,
    customer: `CU-${String(seq % 50_000).padStart(8, '0')}`,
    token: 'MALL',
    lines: [
      { sku: `SKU-${String(seq % 997).padStart(6, '0')}`, qty: 1 + (seq % 3), unit: 1250 },
      { sku: `SKU-${String(seq % 331).padStart(6, '0')}`, qty: 1, unit: 399 },
    ],
    total: 1649 + (seq % 3) * 1250,
    royaltyBp: 150,
    royalty: 25,
  };
}

/** CPU seconds of the main thread so far (utime + stime of its /proc task), or NaN off Linux. */
function mainThreadCpuS(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

let threadsStarted = 0;
replayThreadHooks.onStart = () => {
  threadsStarted += 1;
};

const dir = await mkdtemp(join(tmpdir(), 'mallpos-bench-journal-'));
try {
  const t0 = performance.now();
  const { journal } = await Journal.open({ dir });
  for (let seq = 1; seq <= events; seq++) {
    const { durable } = journal.append(saleEvent(seq));
    if (seq % appendsPerWait === 0) await durable;
  }
  await journal.close();
  const writeS = (performance.now() - t0) / 1000;
  const bytes = journal.bytes;

  const walls: number[] = [];
  const cpus: number[] = [];
  const mainCpus: number[] = [];
  for (let run = 0; run < runs; run++) {
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    const m1 = mainThreadCpuS();
    const opened = await Journal.open({ dir, ...threadMin });
    let replayed = 0;
    await opened.journal.replay(1, GENESIS_HASH, () => {
      replayed += 1;
    });
    const cpu = process.cpuUsage(c1);
    mainCpus.push(mainThreadCpuS() - m1);
    walls.push((performance.now() - t1) / 1000);
    cpus.push((cpu.user + cpu.system) / 1e6);
    await opened.journal.close();
    if (replayed !== events) throw new Error(`replayed ${replayed} of ${events} events`);
    process.stderr.write(`replay ${run + 1} of ${runs}: ${walls[run]?.toFixed(3)} s, cpu ${cpus[run]?.toFixed(3)} s, main thread ${mainCpus[run]?.toFixed(2)} s\n`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const replayS = median(walls);
  const cpuS = median(cpus);

  console.log(JSON.stringify({
    events,
    bytes_per_event: Math.round(bytes / events),
    write_s: Number(writeS.toFixed(3)),
    runs,
    replay_s: Number(replayS.toFixed(3)),
    cpu_s: Number(cpuS.toFixed(3)),
    main_cpu_s: Number(median(mainCpus).toFixed(2)),
    path: threadsStarted === 0 ? 'sequential' : threadsStarted === runs ? 'two-threads' : `two-threads in ${threadsStarted} of ${runs} runs`,
    events_per_s: Math.round(events / replayS),
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
