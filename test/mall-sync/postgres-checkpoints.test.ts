import { expect } from 'chai';
import pg from 'pg';
import { PostgresMallStore } from '../../mall-sync/store/postgres.ts';
import { freshDatabase } from '../helpers/postgres.ts';

/**
 * Workers on one database share the checkpoints: the one that commits the event at each
 * multiple of the interval writes it, so two workers write as many checkpoints as one
 * would, and each worker's cost of checkpoints per event does not grow with the workers.
 */
describe('mall-sync on PostgreSQL: one checkpoint per interval among the workers', function () {
  this.timeout(60_000);

  it('two workers committing in turn write one checkpoint at each multiple of the interval between them', async () => {
    const url = await freshDatabase();
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const EVERY = 10;
    const GROUP = 3;
    const GROUPS = 20;
    const stores = [await PostgresMallStore.open({ url, checkpointEveryEvents: EVERY }), await PostgresMallStore.open({ url, checkpointEveryEvents: EVERY })];
    try {
      // Every checkpoint row the workers insert, in the order they do.
      await admin.query(`
        CREATE TABLE test_checkpoint_log (seq bigint NOT NULL);
        CREATE FUNCTION test_log_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO test_checkpoint_log VALUES (NEW.seq); RETURN NEW; END $$;
        CREATE TRIGGER test_checkpoint_log AFTER INSERT ON mall_checkpoints FOR EACH ROW EXECUTE FUNCTION test_log_checkpoint();`);
      const start = stores[0]!.state.seq;
      let n = 0;
      for (let g = 0; g < GROUPS; g++) {
        const store = stores[g % 2]!;
        await store.exclusive(async () => {
          for (let i = 0; i < GROUP; i++) {
            n += 1;
            await store.commit({ type: 'party.added', at: new Date().toISOString(), data: { id: `maker-${n}`, name: `Maker ${n}`, kind: 'manufacturer' } });
          }
        });
        // Each group's checkpoint, if it asked for one, is written before the next group.
        await store.checkpointsSettled();
      }
      // Both catch up to the last event; closing waits for the checkpoints under way, then
      // writes one at the last event (once: the second is the same row).
      for (const s of stores) await s.exclusive(async () => undefined);
      for (const s of stores) await s.close();
      const end = start + GROUP * GROUPS;
      const logged = (await admin.query<{ seq: string }>('SELECT seq FROM test_checkpoint_log')).rows.map((r) => Number(r.seq));
      const atBoundaries = logged.filter((seq) => seq !== end);
      const multiples: number[] = [];
      for (let m = Math.ceil((start + 1) / EVERY) * EVERY; m <= end; m += EVERY) multiples.push(m);
      // One checkpoint for each multiple, at the end of the group that holds it (the last
      // one is the closing checkpoint's row); a worker on its own would write about as many.
      for (const m of multiples) expect(atBoundaries.filter((seq) => seq >= m && seq < m + GROUP), `checkpoints for ${m}: ${logged.join(', ')}`).to.have.length(m === end ? 0 : 1);
      expect(atBoundaries.length, `checkpoints: ${logged.join(', ')}`).to.equal(multiples.filter((m) => m !== end).length);
      expect(logged.filter((seq) => seq === end)).to.have.length(1);
    } finally {
      for (const s of stores) await s.close().catch(() => undefined);
      await admin.end();
    }
  });
});
