/**
 * The two large values a batch writes, the signed batch as the vendor sent it
 * (`mall_batch_bodies.body`, some tens of kilobytes for a batch of fifty sales) and the
 * mall's event (`mall_events.body`), are compressed with lz4 instead of PostgreSQL's
 * default pglz: pglz took about a millisecond of the database's time for each batch
 * body, under the mall's write lock, where lz4 takes a fraction of that for a similar
 * size. Values written before keep their compression; reading them is unchanged. A
 * server without lz4 (built without it, or older than PostgreSQL 14) keeps pglz.
 */
export const sql = `
DO $$
BEGIN
  IF current_setting('server_version_num')::integer >= 140000 THEN
    BEGIN
      -- As text, so that a server too old for the syntax never parses it.
      EXECUTE 'ALTER TABLE mall_batch_bodies ALTER COLUMN body SET COMPRESSION lz4';
      EXECUTE 'ALTER TABLE mall_events ALTER COLUMN body SET COMPRESSION lz4';
    EXCEPTION WHEN feature_not_supported THEN
      RAISE NOTICE 'lz4 is not available on this server: the bodies stay compressed with pglz';
    END;
  END IF;
END
$$;
`;
