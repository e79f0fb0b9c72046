/**
 * The clearing ledger's rows no longer carry a foreign key to `mall_events`. A sale
 * clears into about four transfers, and the key cost a trigger (an index probe and a
 * row lock on the event) for each of them, a large share of the database work of a batch.
 * What it guarded is kept by construction: a batch's transfers are inserted by the very
 * statement that inserts its event (those of its wallet captures and exchanges right
 * after it, in the same transaction), an allotment's right after its event in the same
 * transaction, and nothing else writes the table; the primary key (event_seq, n) still
 * refuses a transfer written twice, and `mall-sync audit` recomputes every position from
 * the archive.
 */
export const sql = `
ALTER TABLE mall_transfers DROP CONSTRAINT mall_transfers_event_seq_fkey;
`;
