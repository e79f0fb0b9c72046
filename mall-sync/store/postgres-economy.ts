import type pg from 'pg';
import { assert } from '../../core/index.ts';
import type { MallEvent } from '../events.ts';
import { insertTransfers, transferRow } from './postgres.ts';

type EconomyEvent = MallEvent & { type: 'wallet.authorised' | 'wallet.closed' | 'customer-data.requested' | 'batch.ingested' };

/**
 * The rows of the wallet and customer-data events (and of a batch's wallet captures),
 * written in the transaction of their event. The unique keys refuse a second hold or a
 * second toll under one idempotency key, should two mall processes ever both pass the
 * in-memory check.
 */
export async function projectEconomy(tx: pg.PoolClient, e: EconomyEvent): Promise<void> {
  switch (e.type) {
    case 'wallet.authorised': {
      const a = e.data;
      await tx.query(
        `INSERT INTO mall_wallet_authorisations (id, vendor, card, token, units, purpose, expires_at, idempotency_key, body_hash, event_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [a.id, a.vendor, a.card, a.token, a.units, a.purpose, a.expiresAt, a.key, a.bodyHash, e.seq],
      );
      break;
    }
    case 'wallet.closed': {
      const c = e.data;
      const r = await tx.query("UPDATE mall_wallet_authorisations SET status = $3, used_event_seq = $4, closed_seq = $5 WHERE id = $1 AND vendor = $2 AND status = 'open'", [c.id, c.vendor, c.how, c.eventSeq, e.seq]);
      assert(r.rowCount === 1, `authorisation ${c.id} was open in the database`);
      break;
    }
    case 'customer-data.requested': {
      const d = e.data;
      await tx.query(
        `INSERT INTO mall_customer_data_requests (request_id, event_seq, requester, card, home, at, toll_minor, idempotency_key, body_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [d.requestId, e.seq, d.requester, d.card, d.home, e.at, d.tollMinor, d.key, d.bodyHash],
      );
      await insertTransfers(tx, e.seq, d.transfers.map((t, i) => transferRow(t, i, null, e.at)));
      break;
    }
    case 'batch.ingested': {
      for (const w of e.data.economy?.wallet ?? []) {
        if (w.kind !== 'capture') continue;
        await tx.query("UPDATE mall_wallet_authorisations SET status = 'captured', used_event_seq = $2, closed_seq = COALESCE(closed_seq, $3) WHERE id = $1 AND (status <> 'captured' OR used_event_seq = $2)", [w.authorisation, w.eventSeq, e.seq]);
      }
      break;
    }
  }
}
