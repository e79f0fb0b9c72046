import type pg from 'pg';
import { assert } from '../../core/index.ts';
import type { MallEvent } from '../events.ts';
import type { NewInstrumentRecord } from '../instruments-state.ts';

type InstrumentEvent = MallEvent & {
  type: 'instruments.key-added' | 'instruments.key-withdrawn' | 'instruments.policy-set' | 'instruments.issued' | 'instruments.reserved' | 'instruments.released' | 'instruments.voided' | 'batch.ingested';
};

async function insertInstruments(tx: pg.PoolClient, seq: number, records: readonly NewInstrumentRecord[]): Promise<void> {
  if (records.length === 0) return;
  await tx.query(
    `INSERT INTO mall_instruments (code, issuer, serial, kind, token, face_units, expires_at, first_event_seq)
     SELECT r.code, r.issuer, r.serial, r.kind, r.token, r."faceUnits", r."expiresAt", $2
       FROM json_to_recordset($1::json) AS r(code text, issuer text, serial text, kind text, token text, "faceUnits" bigint, "expiresAt" text)`,
    [JSON.stringify(records.map(({ compact: _compact, ...r }) => r)), seq],
  );
}

/**
 * The rows of the instrument events (and of a batch's instruments), written in the
 * transaction of their event. Keys, the policy and voids live in the event log only
 * (every worker's state replays it); the keys of the tables refuse an instrument recorded
 * twice, an issue key used twice and a second reservation under one store's key, should
 * two mall processes ever both pass the in-memory check.
 */
export async function projectInstruments(tx: pg.PoolClient, e: InstrumentEvent): Promise<void> {
  switch (e.type) {
    case 'instruments.issued':
      await tx.query('INSERT INTO mall_instrument_issues (idempotency_key, body_hash, event_seq) VALUES ($1, $2, $3)', [e.data.key, e.data.bodyHash, e.seq]);
      await insertInstruments(tx, e.seq, e.data.instruments);
      break;
    case 'instruments.reserved': {
      const d = e.data;
      if (d.record !== null) await insertInstruments(tx, e.seq, [d.record]);
      await tx.query(
        `INSERT INTO mall_instrument_reservations (id, vendor, code, units, hold_units, expires_at, idempotency_key, body_hash, event_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [d.id, d.vendor, d.code, d.units, d.holdUnits, d.expiresAt, d.key, d.bodyHash, e.seq],
      );
      break;
    }
    case 'instruments.released': {
      const r = await tx.query("UPDATE mall_instrument_reservations SET status = 'released', closed_seq = $3 WHERE id = $1 AND vendor = $2 AND status = 'held'", [e.data.id, e.data.vendor, e.seq]);
      assert(r.rowCount === 1, `reservation ${e.data.id} was held in the database`);
      break;
    }
    case 'batch.ingested': {
      const effects = e.data.instruments;
      if (effects === undefined) break;
      await insertInstruments(tx, e.seq, effects.seen);
      for (const u of effects.uses) {
        if (u.reservation === null) continue;
        const r = await tx.query("UPDATE mall_instrument_reservations SET status = 'captured', used_event_seq = $2, closed_seq = $3 WHERE id = $1 AND status = 'held'", [u.reservation, u.eventSeq, e.seq]);
        assert(r.rowCount === 1, `reservation ${u.reservation} was held in the database`);
      }
      break;
    }
    case 'instruments.key-added':
    case 'instruments.key-withdrawn':
    case 'instruments.policy-set':
    case 'instruments.voided':
      break;
  }
}
