import type pg from 'pg';
import { fail } from '../../core/index.ts';
import { MIGRATIONS } from './migrations/index.ts';

/** Advisory lock key of schema changes (any constant: it only has to differ from the write lock's). */
const MIGRATION_LOCK = 7_216_001;

/**
 * Brings the database's schema to the newest version this code knows, in one
 * transaction: every migration applies fully or not at all, and `mall_schema_versions`
 * says which did. Workers starting together wait for each other on an advisory lock, so
 * each migration runs once. A database newer than this code is refused.
 */
export async function migrate(pool: pg.Pool): Promise<{ from: number; to: number }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS mall_schema_versions (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM mall_schema_versions');
    const from = rows[0]?.v ?? 0;
    const newest = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
    if (from > newest) {
      fail('MALL_ERR_STORE', `the database has schema version ${from}, this mall-sync knows versions up to ${newest}: upgrade mall-sync`);
    }
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO mall_schema_versions (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await client.query('COMMIT');
    return { from, to: newest };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
