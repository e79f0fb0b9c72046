import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fail } from '../core/index.ts';
import { DataDirLock } from '../platform/lock.ts';
import { archivePaths, exportArchive } from './archive.ts';
import { databaseUrl, loadMallConfig, loadMallKeys, mallPaths, writeMallConfig } from './config.ts';
import type { NewMallEvent } from './events.ts';
import { EmbeddedMallStore, positionsSum } from './store/index.ts';
import { PostgresMallStore } from './store/postgres.ts';

/** Events moved per transaction. */
const EVENTS_PER_TRANSACTION = 500;

export interface MigrateStoreResult {
  events: number;
  batches: number;
  registryEntries: number;
  statements: number;
  positionsMatch: boolean;
}

/**
 * `mall-sync migrate-store --from embedded --to postgres`: moves a stopped mall from its
 * embedded journal into an empty PostgreSQL database, event by event in the journal's
 * order (each event's relational rows are written as it is committed, so every
 * constraint is checked again on the way in), with the audit archive (registry history,
 * batches as sent, statements) and the refusal notes. The journal and archive files are
 * left as they were. Only once the database holds the same state (positions and totals
 * compared) is the config switched to PostgreSQL.
 */
export async function migrateStore(dataDir: string, opts: { databaseUrl?: string | undefined; poolMax?: number | undefined } = {}): Promise<MigrateStoreResult> {
  const config = await loadMallConfig(dataDir);
  if (config.store.kind !== 'embedded') fail('MALL_ERR_CONFIG', `the mall in ${dataDir} already keeps its data in PostgreSQL`);
  const target = { ...config, store: { kind: 'postgres' as const, poolMax: opts.poolMax ?? 8, ...(opts.databaseUrl === undefined ? {} : { databaseUrl: opts.databaseUrl }) } };
  const url = databaseUrl(target);
  const paths = mallPaths(dataDir);
  // Nothing may change the journal while it is copied: the data directory is held as `serve` holds it.
  const lock = await DataDirLock.acquire(dataDir, 'mall-sync migrate-store', 'MALL_ERR_STORE');
  let source: EmbeddedMallStore | null = null;
  let dest: PostgresMallStore | null = null;
  try {
    source = await EmbeddedMallStore.open({ dir: paths.storeDir, checkpointEveryMs: 3_600_000 });
    dest = await PostgresMallStore.open({ url, checkpointEveryEvents: Number.MAX_SAFE_INTEGER });
    if (dest.state.seq !== 0) fail('MALL_ERR_STORE', `the database already holds ${dest.state.seq} mall events: migrate into an empty database`);
    const archive = archivePaths(paths.archiveDir);
    const last = source.state.seq;
    let batches = 0;
    let registryEntries = 0;
    const into = dest;
    const from = source;
    for (let start = 1; start <= last; start += EVENTS_PER_TRANSACTION) {
      const end = Math.min(last, start + EVENTS_PER_TRANSACTION - 1);
      await into.exclusive(async () => {
        for (let seq = start; seq <= end; seq++) {
          const { type, at, data } = await from.read(seq);
          const registrySeq = into.state.registrySeq;
          await into.commit({ type, at, data } as NewMallEvent);
          if (into.state.registrySeq !== registrySeq) {
            const entry = await readFile(archive.registryFile(into.state.registrySeq), 'utf8').catch(() => null);
            if (entry !== null) {
              await into.query('INSERT INTO mall_registry_archive (registry_seq, jws) VALUES ($1, $2)', [into.state.registrySeq, entry.trim()]);
              registryEntries += 1;
            }
          }
          if (type === 'batch.ingested') {
            const b = data as { vendor: string; seq: number; hash: string };
            const body = await readFile(archive.batchFile(b.vendor, b.seq)).catch(() => null);
            if (body !== null) await into.query('INSERT INTO mall_batch_bodies (vendor, seq, hash, body) VALUES ($1, $2, $3, $4)', [b.vendor, b.seq, b.hash, body]);
            batches += 1;
          }
        }
      });
    }
    let statements = 0;
    for (const name of await readdir(archive.statementsDir).catch(() => [] as string[])) {
      const m = /^(.+)_(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})_(\d+)\.jws\.json$/.exec(name);
      if (m === null) continue;
      await dest.query('INSERT INTO mall_statements (vendor, from_day, to_day, issued_at, jws) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [
        m[1],
        m[2],
        m[3],
        m[4],
        (await readFile(join(archive.statementsDir, name), 'utf8')).trim(),
      ]);
      statements += 1;
    }
    const notes = JSON.parse(await readFile(paths.observations, 'utf8').catch(() => '{}')) as { vendors?: Record<string, unknown> };
    for (const [vendor, body] of Object.entries(notes.vendors ?? {})) {
      await dest.query('INSERT INTO mall_observations (vendor, body) VALUES ($1, $2) ON CONFLICT (vendor) DO UPDATE SET body = EXCLUDED.body', [vendor, JSON.stringify(body)]);
    }
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const positionsMatch = same(dest.state.positions, source.state.positions) && same(dest.state.totals, source.state.totals) && same(dest.state.days, source.state.days) && positionsSum(dest.state) === 0;
    if (!positionsMatch || dest.state.seq !== last) fail('MALL_ERR_STORE', 'the database does not add up to the same positions and totals as the journal: the config was left on the embedded store');
    await dest.checkpoint();
    await writeMallConfig(dataDir, target);
    return { events: last, batches, registryEntries, statements, positionsMatch };
  } finally {
    await dest?.close().catch(() => undefined);
    await source?.close().catch(() => undefined);
    await lock.release();
  }
}

/** `mall-sync export-archive`: a mall on PostgreSQL writes its audit archive out as the directory `mall-sync audit` reads. */
export async function exportStoreArchive(dataDir: string, out: string): Promise<{ registry: number; batches: number; statements: number }> {
  const config = await loadMallConfig(dataDir);
  const keys = await loadMallKeys(dataDir);
  if (config.store.kind !== 'postgres') fail('MALL_ERR_CONFIG', `the mall in ${dataDir} keeps its archive in ${mallPaths(dataDir).archiveDir} already`);
  const store = await PostgresMallStore.open({ url: databaseUrl(config), poolMax: 2 });
  try {
    return await exportArchive(store, keys, out);
  } finally {
    await store.close();
  }
}
