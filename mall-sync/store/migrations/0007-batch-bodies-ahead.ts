/**
 * A worker on PostgreSQL keeps the signed batch as the vendor sent it before it takes the
 * mall's write lock, in a statement of its own, so that the largest value a batch writes
 * (some tens of kilobytes for fifty sales, compressed and stored out of line) is no
 * longer written under the lock (ingest.ts, store/postgres.ts). Until its batch is
 * committed such a body belongs to no batch, and two bodies may then exist for one
 * vendor and seq: the one ingested and one that lost to it (a fork sent to two workers
 * at once, kept as evidence). So a body is keyed by its batch's hash as well, and names
 * no batch row; readers join it to `mall_batches` on (vendor, seq, hash).
 */
export const sql = `
ALTER TABLE mall_batch_bodies DROP CONSTRAINT mall_batch_bodies_vendor_seq_fkey;
ALTER TABLE mall_batch_bodies ADD COLUMN hash char(64);
UPDATE mall_batch_bodies d SET hash = b.hash FROM mall_batches b WHERE b.vendor = d.vendor AND b.seq = d.seq;
ALTER TABLE mall_batch_bodies ALTER COLUMN hash SET NOT NULL;
ALTER TABLE mall_batch_bodies DROP CONSTRAINT mall_batch_bodies_pkey;
ALTER TABLE mall_batch_bodies ADD PRIMARY KEY (vendor, seq, hash);
`;
