/**
 * Writes a journal of realistic sale events, then times what a restart pays: Journal.open
 * plus a full replay with hash-chain verification and JSON parsing, `runs` times over the
 * same journal. replay_s is the median wall time, cpu_s the median CPU time (user +
 * system) of the process: on a shared machine the wall time moves with the neighbours'
 * load, the CPU time much less.
 *
 *   node --import tsx bench/journal-replay.ts [events] [runs]
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS_HASH, Journal } from '../platform/storage/index.ts';

const events = Number(process.argv[2] ?? 1_000_000);
const runs = Number(process.argv[3] ?? 3);
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
  for (let run = 0; run < runs; run++) {
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    const opened = await Journal.open({ dir });
    let replayed = 0;
    await opened.journal.replay(1, GENESIS_HASH, () => {
      replayed += 1;
    });
    const cpu = process.cpuUsage(c1);
    walls.push((performance.now() - t1) / 1000);
    cpus.push((cpu.user + cpu.system) / 1e6);
    await opened.journal.close();
    if (replayed !== events) throw new Error(`replayed ${replayed} of ${events} events`);
    process.stderr.write(`replay ${run + 1} of ${runs}: ${walls[run]?.toFixed(3)} s, cpu ${cpus[run]?.toFixed(3)} s\n`);
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
    events_per_s: Math.round(events / replayS),
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
