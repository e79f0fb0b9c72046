/**
 * A few rows that exist only to be written. A worker's changes commit with
 * synchronous_commit off (the mall's write lock is released before the WAL flush);
 * before it answers, the worker commits a one-row update here synchronously. A
 * transaction must write WAL for PostgreSQL to flush at its commit (one that only took
 * an xid commits asynchronously), and the flush up to this commit record covers every
 * commit the worker has seen. The slot is picked at random per flush, so flushes of
 * different workers (and of one worker's overlapping groups) seldom wait for one row's lock.
 */
export const sql = `
CREATE TABLE mall_wal_flush (
  slot integer PRIMARY KEY CHECK (slot >= 0 AND slot < 1024),
  n bigint NOT NULL DEFAULT 0
);
`;
