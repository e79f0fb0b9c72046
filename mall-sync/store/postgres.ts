import pg from 'pg';
import { assert, fail, isMallposError, MallposError, sha256Hex } from '../../core/index.ts';
import { asciiJson } from '../../platform/storage/index.ts';
import { MALL_EVENT_VERSION, type MallEvent, type NewMallEvent, type Transfer } from '../events.ts';
import type { ObservationSink, VendorObservation } from '../observations.ts';
import { projectEconomy } from './postgres-economy.ts';
import { projectInstruments } from './postgres-instruments.ts';
import { migrate } from './postgres-migrate.ts';
import { applyMallEvent, changesJudging, emptyMallState, reviveMallState, type MallState } from './state.ts';
import type { MallStore, StoreHealth, StoreReport } from './store.ts';

/**
 * The mall on PostgreSQL: several mall-sync processes ("workers") in front of one
 * database, each of them stateless in the sense that matters (nothing only one of them
 * knows).
 *
 * Design. The database holds the mall's event log (`mall_events`: one row per mall
 * event, a global seq, the same hash chain as the embedded journal) and, written in the
 * same transaction as each event, relational tables with the constraints that make
 * exactly-once a database property: `mall_batches` keyed by (vendor, batch seq) and
 * chained by a foreign key to the vendor's previous batch, the signed ack stored with
 * it, allotments unique by idempotency key, one alarm per forged batch, the clearing
 * ledger and positions in bigint minor units. Each worker keeps the materialised state
 * (state.ts, the same `applyMallEvent` as the embedded store) as a cache of that log.
 *
 * A change runs in `exclusive`: one transaction that first takes a transaction-level
 * advisory lock (one key for the whole mall), then reads the events other workers
 * committed since this worker's seq and applies them, then lets the caller check and
 * judge against the now current state, sign the ack, and insert; COMMIT releases the
 * lock. Changes that queue up meanwhile in the same worker share the next transaction
 * (group commit: one lock, one catch-up, one WAL flush for all of them). A worker whose
 * last group found other workers' events first catches up without the lock, so that under
 * the lock it reads only what they committed in the meantime. The COMMIT is
 * asynchronous (synchronous_commit off for that transaction): the lock is released as
 * soon as the commit record is in the WAL, so the next writer, in this worker or another,
 * judges while the WAL goes to the disk; the group is answered only after a small
 * synchronous commit (makeDurable) has flushed the WAL past it. Holding the lock through
 * the flush would put every worker's fsync in one queue, and two workers would ingest
 * less than one. Everything that needs no state (TLS, JSON, the Ed25519 signature, canonical
 * parsing, the vendor's event hash chain) happens before, outside the lock, so several
 * workers do useful work in parallel. So does judging a batch and signing its ack,
 * against the cache as it is then (ingest.ts); under the lock that judgement is used only
 * if the vendor's last batch and judgingVersion() (the last event that may change how a
 * batch is judged) are still those it was made against, and made again otherwise. What is
 * serialised is mostly the inserts.
 *
 * Isolation: READ COMMITTED, deliberately. Writers are serialised by the advisory lock,
 * not by snapshots: the catch-up SELECT runs after the lock is granted, and under READ
 * COMMITTED each statement sees every transaction committed before it started, so it
 * sees every event of every earlier lock holder (PostgreSQL releases the lock only after
 * the commit is visible). Under REPEATABLE READ or SERIALIZABLE the snapshot would be
 * taken by the first statement, the lock request itself, before the wait: a worker
 * would miss the events committed while it waited and judge against a stale state (the
 * unique constraints would then refuse the insert, but only after wasted work). Reads
 * outside a change (cursor, positions, statements) catch up the same way without the
 * lock: a prefix of the log in seq order is always a consistent state.
 *
 * A duplicate batch sent to two workers at once: both verify it in parallel, one takes
 * the lock first and inserts; the other waits for the lock, catches up, finds the batch
 * already ingested with the same hash and answers with the stored ack (a fork, other
 * bytes under the same seq, is refused with an alarm). Should the in-memory check ever
 * be wrong, the primary key on (vendor, seq) refuses the second insert.
 *
 * Failure: if the transaction fails after events were applied to the cache (the
 * database went away, COMMIT did not answer), the cache is marked stale and rebuilt
 * from the database (checkpoint + log) before the next request uses it, so no worker
 * ever serves or judges against an event the database does not hold. The same happens
 * when the flush after a COMMIT fails, and when a catch-up finds that the database no
 * longer holds the cache's last event (a visible commit lost in a database crash before
 * it reached the disk). Nothing is acknowledged, and no read answered, before the WAL
 * holding it is flushed.
 */

/** judgingVersion()'s value: an event's seq and hash, which name it even across a rebuilt cache. */
function judgingToken(seq: number, hash: string): string {
  return `${seq}:${hash}`;
}

/** Advisory lock key of the mall's writers. */
const WRITE_LOCK = 7_216_000;
const CATCH_UP_ROWS = 500;
/** Rows of mall_wal_flush (migration 0004). */
const WAL_FLUSH_SLOTS = 1024;

/** The cache holds an event the database does not: it is rebuilt from the database. */
class CacheAhead extends Error {
  constructor(seq: number) {
    super(`the database no longer holds mall event ${seq} as this worker saw it`);
  }
}
/** Most changes in one transaction. */
const GROUP_MAX = 64;

export interface PostgresStoreOptions {
  /** postgresql:// URL (a unix socket directory goes in `?host=`). */
  url: string;
  /** Connections per worker. */
  poolMax?: number;
  /** A checkpoint of the state is written after this many events. */
  checkpointEveryEvents?: number;
  /** Called after each group of changes committed (for the metrics). */
  onGroup?: (group: GroupReport) => void;
}

/** How one group of changes went through the mall's write lock. */
export interface GroupReport {
  /** Changes in the group. */
  changes: number;
  /** From asking for the write lock to holding it (the other workers' groups ahead of it). */
  lockWaitMs: number;
  /** From holding the lock to COMMIT returning: the mall's serialised work, in the four phases below. */
  lockHeldMs: number;
  /** Under the lock: catching up with the events other workers committed meanwhile. */
  catchUpMs: number;
  /** Under the lock: the changes themselves (checks, judging, the signed ack, the cache), their statements sent as they go. */
  changesMs: number;
  /** Under the lock: waiting for the database to finish the group's statements. */
  writesMs: number;
  /** Under the lock: the COMMIT. */
  commitMs: number;
  /** Events of other workers applied to this worker's state for the group, before and under the lock. */
  caughtUp: number;
}

interface EventRow {
  seq: string;
  hash: string;
  body: MallEvent;
}

const statementNames = new Map<string, string>();

/**
 * The name a statement is prepared under on each connection (by its text), so that the
 * server parses and plans the statements of every batch once per connection, not per batch.
 */
function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `mall_${sha256Hex(sql).slice(0, 24)}`;
    statementNames.set(sql, name);
  }
  return name;
}

/** A connection-level failure: the database is down or unreachable, the request may be retried. */
function isOutage(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code)) return true;
  // Class 08 connection exceptions, 57P0x operator intervention (shutdown, crash shutdown, cannot connect now).
  if (/^08/.test(code) || /^57P0/.test(code)) return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|terminating connection/i.test(message);
}

/** A database failure as the mall's typed error. */
function storeError(err: unknown): MallposError {
  if (isMallposError(err)) return err;
  if (isOutage(err)) return new MallposError('MALL_ERR_UNAVAILABLE', `the mall's database cannot be reached (${String((err as Error).message).slice(0, 200)}): try again`);
  return new MallposError('MALL_ERR_STORE', `the mall's database refused a change: ${String((err as Error).message).slice(0, 300)}`);
}

export class PostgresMallStore implements MallStore {
  readonly kind = 'postgres' as const;
  private current: MallState;
  private tx: pg.PoolClient | null = null;
  /** The writes of the current transaction, in order. */
  private writes: Promise<unknown> = Promise.resolve();
  /** The first write of the current transaction that failed. */
  private writeFailed: unknown = null;
  private appliedInTx = 0;
  private stale = false;
  /** The last group found events of other workers to catch up with. */
  private othersWrote = false;
  private closed = false;
  /** The highest seq of the cache known to be on the database's disk (0: not known). */
  private durableSeq = 0;
  /** The highest seq of the cache known to be committed (visible to every worker); a group under way may be ahead of it. */
  private committedSeq = 0;
  /** Groups committed whose answers wait for their flush. */
  private readonly answering = new Set<Promise<void>>();
  /** One section at a time in this process: a change, a catch-up or a rebuild of the cache. */
  private mutex: Promise<unknown> = Promise.resolve();
  /** Signed batch bodies of the current group, by vendor and batch seq, until their batch is written (batchBody). */
  private readonly stagedBodies = new Map<string, Buffer>();
  /** Changes waiting for the next transaction. */
  private readonly queued: { fn: () => Promise<unknown>; resolve: (value: unknown) => void; reject: (err: unknown) => void }[] = [];
  private checkpointing: Promise<void> | null = null;
  private checkpointWanted = false;
  private readonly checkpointEvery: number;
  /** judgingVersion(): seq and hash of the last event in the cache that changes judging (or of the cache's last event when it was loaded). */
  private judging: string;
  /** Connections that write batch bodies before the write lock (batchBodyAhead), made on first use. */
  private aheadPool: pg.Pool | null = null;

  private constructor(
    readonly pool: pg.Pool,
    state: MallState,
    readonly report: StoreReport,
    private readonly opts: PostgresStoreOptions,
  ) {
    this.current = state;
    this.checkpointEvery = opts.checkpointEveryEvents ?? 10_000;
    this.judging = judgingToken(state.seq, state.hash);
  }

  judgingVersion(): string {
    return this.judging;
  }

  private noteApplied = (event: MallEvent, hash: string): void => {
    if (changesJudging(event)) this.judging = judgingToken(event.seq, hash);
  };

  get state(): MallState {
    return this.current;
  }

  /** Connects, migrates the schema and loads the state (last checkpoint + the log after it). */
  static async open(opts: PostgresStoreOptions): Promise<PostgresMallStore> {
    const started = performance.now();
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.poolMax ?? 8, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
    // An idle connection the server drops (a restart) is reported here; the pool replaces it.
    pool.on('error', () => undefined);
    try {
      await migrate(pool);
      const { state, checkpointSeq, replayed } = await PostgresMallStore.load(pool);
      return new PostgresMallStore(pool, state, { checkpointSeq, replayed, recoveryMs: performance.now() - started }, opts);
    } catch (err) {
      await pool.end().catch(() => undefined);
      if (isMallposError(err)) throw err;
      fail('MALL_ERR_STORE', `the mall database cannot be opened: ${(err as Error).message}`);
    }
  }

  private static async load(pool: pg.Pool): Promise<{ state: MallState; checkpointSeq: number; replayed: number }> {
    const { rows } = await pool.query<{ seq: string; state: string }>('SELECT seq, state FROM mall_checkpoints ORDER BY seq DESC LIMIT 1');
    const row = rows[0];
    const state = row === undefined ? emptyMallState() : reviveMallState(JSON.parse(row.state) as MallState);
    const checkpointSeq = state.seq;
    const replayed = await PostgresMallStore.catchUp(pool, state);
    return { state, checkpointSeq, replayed };
  }

  /**
   * Applies the events after `state.seq`, in seq order, checking that each links to the
   * one before. With `tail`, the first query also reads the state's own last event and
   * checks that the database still holds it: after a database crash the log may end
   * before the cache does (a commit that was visible but never reached the disk), and
   * a worker judging against such a cache would write after a hole.
   */
  private static async catchUp(db: pg.Pool | pg.PoolClient, state: MallState, tail = false, noteApplied?: (event: MallEvent, hash: string) => void): Promise<number> {
    let applied = 0;
    let checkTail = tail && state.seq > 0;
    for (;;) {
      const from = checkTail ? state.seq : state.seq + 1;
      // The state's own last event is read for its hash only: its body stays in the database.
      const { rows } = await db.query<EventRow>({
        name: 'mall_catch_up',
        text: 'SELECT seq, hash, CASE WHEN seq = $3 THEN NULL ELSE body END AS body FROM mall_events WHERE seq >= $1 ORDER BY seq LIMIT $2',
        values: [from, CATCH_UP_ROWS, checkTail ? state.seq : 0],
      });
      let i = 0;
      if (checkTail) {
        const own = rows[0];
        if (own === undefined || Number(own.seq) !== state.seq || own.hash !== state.hash) throw new CacheAhead(state.seq);
        checkTail = false;
        i = 1;
      }
      for (; i < rows.length; i++) {
        const row = rows[i] as EventRow;
        const event = row.body;
        assert(Number(row.seq) === state.seq + 1 && event.seq === state.seq + 1, `mall event ${row.seq} follows ${state.seq}`);
        if (event.prev !== state.hash) fail('MALL_ERR_STORE', `mall event ${row.seq} does not link to event ${state.seq}: the log was changed`);
        applyMallEvent(state, event, row.hash);
        noteApplied?.(event, row.hash);
        applied += 1;
      }
      if (rows.length < CATCH_UP_ROWS) return applied;
    }
  }

  /** Runs `task` alone among this process's sections. */
  private section<T>(task: () => Promise<T>): Promise<T> {
    const next = this.mutex.then(task, task);
    this.mutex = next.catch(() => undefined);
    return next;
  }

  /**
   * Rebuilds the cache from the database when a failed transaction left it ahead, then
   * catches up. Resolves to the number of events applied (other workers' events).
   */
  private async fresh(db: pg.Pool | pg.PoolClient): Promise<number> {
    if (!this.stale) {
      try {
        const applied = await PostgresMallStore.catchUp(db, this.current, true, this.noteApplied);
        // Called between changes: everything in the cache is committed.
        this.committedSeq = Math.max(this.committedSeq, this.current.seq);
        return applied;
      } catch (err) {
        if (!(err instanceof CacheAhead)) throw err;
        this.stale = true;
      }
    }
    const { state } = await PostgresMallStore.load(this.pool);
    this.current = state;
    this.judging = judgingToken(state.seq, state.hash);
    this.stale = false;
    // What the rebuilt cache holds was read, not necessarily flushed: the next answer flushes first.
    this.durableSeq = 0;
    const applied = await PostgresMallStore.catchUp(db, this.current, false, this.noteApplied);
    this.committedSeq = this.current.seq;
    return applied;
  }

  /**
   * Makes every event in the cache durable before an answer relies on it. The changes
   * commit with synchronous_commit off (see runGroup), so a commit can be visible, to
   * this worker and to the others, before it is on the disk. A transaction that writes
   * WAL and commits synchronously waits until the WAL is flushed up to its own commit
   * record, which comes after the commit record of every event this worker has seen (an
   * event is visible only once its commit record is in the WAL): after it, they are all
   * durable. It must write: PostgreSQL commits a transaction that wrote no WAL without a
   * flush, whatever synchronous_commit says. Concurrent flushes share the database's WAL
   * flush (its group commit).
   */
  private async makeDurable(db: pg.Pool | pg.PoolClient, seq: number): Promise<void> {
    if (seq <= this.durableSeq) return;
    // Only what was committed when the flush was asked for is covered by it: a group
    // under way may have applied later events to the cache already.
    const covered = this.committedSeq;
    const slot = Math.floor(Math.random() * WAL_FLUSH_SLOTS);
    await db.query({ name: 'mall_flush', text: 'INSERT INTO mall_wal_flush (slot, n) VALUES ($1, 1) ON CONFLICT (slot) DO UPDATE SET n = mall_wal_flush.n + 1', values: [slot] });
    if (covered > this.durableSeq) this.durableSeq = covered;
  }

  /**
   * Queues a change. Changes queued while a transaction is under way go into the next one
   * together (group commit): one lock, one catch-up and one COMMIT (one WAL flush) for
   * all of them, run one after another inside it, so a busy worker pays the commit's
   * latency once per group rather than once per batch. Each change is answered only
   * after its group's COMMIT; a refusal (a typed error from the change itself) keeps what
   * the change committed (a fork's alarm) and fails only that change; a database error
   * fails the whole group, which is rolled back.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) fail('MALL_ERR_STORE', 'the mall store is closed');
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) void this.section(() => this.runGroup());
    });
  }

  private async runGroup(): Promise<void> {
    const group = this.queued.splice(0, GROUP_MAX);
    if (group.length === 0) return;
    // What came in meanwhile (beyond the cap) goes into the next group.
    const again = () => {
      if (this.queued.length > 0) void this.section(() => this.runGroup());
    };
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      for (const item of group) item.reject(storeError(err));
      again();
      return;
    }
    let broken: Error | undefined;
    // A connection that dies while checked out reports here too (and fails the query in progress).
    const onError = (err: Error) => {
      broken = err;
    };
    client.on('error', onError);
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      // When other workers write too, most of what they wrote since this worker's last
      // group is read and applied first, without the lock, so that the lock is held only
      // for the little that comes in meanwhile (and the others write while this one reads).
      const before = this.othersWrote ? await this.fresh(client) : 0;
      // One round trip: the transaction, its commit mode and the mall's write lock.
      // synchronous_commit off: COMMIT returns, and releases the lock, once the commit
      // record is in the WAL, not on the disk, so the next writer (this worker's next
      // group or another worker) goes on while the WAL is flushed. Nothing is answered
      // before that flush (makeDurable, below).
      const asked = performance.now();
      await client.query(`BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit TO off; SELECT pg_advisory_xact_lock(${WRITE_LOCK})`);
      const locked = performance.now();
      const under = await this.fresh(client);
      const caughtUpAt = performance.now();
      this.othersWrote = before + under > 0;
      // The events this group writes, from here on, are this worker's own.
      const ownFrom = this.current.seq + 1;
      this.tx = client;
      this.stagedBodies.clear();
      this.writes = Promise.resolve();
      this.writeFailed = null;
      this.appliedInTx = 0;
      // The changes' statements are sent in order while the next change is being judged:
      // nothing waits for a write until all of the group's are in, just before COMMIT.
      for (const item of group) {
        try {
          outcomes.push({ ok: true, value: await item.fn() });
        } catch (err) {
          // Only the change's own refusal is its alone; anything else (the database, a bug) ends the group.
          if (!isMallposError(err) || err.code === 'MALL_ERR_STORE' || err.code === 'MALL_ERR_UNAVAILABLE') throw err;
          outcomes.push({ ok: false, error: err });
        }
        if (this.writeFailed !== null) throw this.writeFailed;
      }
      const changedAt = performance.now();
      await this.writes;
      if (this.writeFailed !== null) throw this.writeFailed;
      this.tx = null;
      const writtenAt = performance.now();
      await client.query('COMMIT');
      const committedAt = performance.now();
      this.appliedInTx = 0;
      this.committedSeq = this.current.seq;
      this.maybeCheckpoint(ownFrom, this.current.seq);
      this.opts.onGroup?.({
        changes: group.length,
        lockWaitMs: locked - asked,
        lockHeldMs: committedAt - locked,
        catchUpMs: caughtUpAt - locked,
        changesMs: changedAt - caughtUpAt,
        writesMs: writtenAt - changedAt,
        commitMs: committedAt - writtenAt,
        caughtUp: before + under,
      });
    } catch (err) {
      // No statement of this group may reach the connection after the ROLLBACK (it would commit on its own).
      await this.writes;
      this.tx = null;
      // The cache holds events this transaction may not have made durable: rebuild it before the next use.
      if (this.appliedInTx > 0) this.stale = true;
      this.appliedInTx = 0;
      await client.query('ROLLBACK').catch((e: unknown) => {
        broken = e as Error;
      });
      if (isOutage(err)) broken ??= err as Error;
      client.off('error', onError);
      client.release(broken);
      for (const item of group) item.reject(storeError(err));
      again();
      return;
    }
    // The next group may start now; this one is answered once the WAL is on the disk.
    const answered = this.answerDurable(client, this.committedSeq, group, outcomes, () => {
      // The connection goes back to the pool with this answer: the handler leaves it first.
      client.off('error', onError);
      return broken;
    }).finally(() => this.answering.delete(answered));
    this.answering.add(answered);
    again();
  }

  private async answerDurable(
    client: pg.PoolClient,
    seq: number,
    group: { resolve: (value: unknown) => void; reject: (err: unknown) => void }[],
    outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[],
    /** Called once, just before the connection is released: whether it broke meanwhile. */
    broken: () => Error | undefined,
  ): Promise<void> {
    try {
      await this.makeDurable(client, seq);
    } catch (err) {
      // Whether the group reached the disk is unknown: the cache may be ahead of the
      // database, and every change of the group is refused (a retry with the same key
      // gets the stored answer if it did).
      this.stale = true;
      client.release(broken() ?? (err as Error));
      for (const item of group) item.reject(storeError(err));
      return;
    }
    client.release(broken());
    for (const [i, item] of group.entries()) {
      const o = outcomes[i];
      if (o?.ok === true) item.resolve(o.value);
      else item.reject(o?.error);
    }
  }

  commit(event: NewMallEvent): Promise<MallEvent> {
    if (this.closed) fail('MALL_ERR_STORE', 'the mall store is closed');
    const tx = this.tx;
    assert(tx !== null, 'a PostgreSQL mall commits only inside store.exclusive()');
    const state = this.current;
    const seq = state.seq + 1;
    const fields = { seq, v: MALL_EVENT_VERSION, ...event, prev: state.hash };
    const text = JSON.stringify(fields);
    const hash = sha256Hex(`${state.hash}\n${text}`);
    // The object itself is applied, as the embedded store does: it is what `text` says.
    const full = fields as MallEvent;
    applyMallEvent(state, full, hash);
    this.noteApplied(full, hash);
    this.appliedInTx += 1;
    this.enqueue(tx, async () => {
      // A batch, the commonest event, is written in one statement (one round trip).
      if (full.type === 'batch.ingested') {
        const slot = bodySlot(full.data.vendor, full.data.seq);
        const body = this.stagedBodies.get(slot) ?? null;
        this.stagedBodies.delete(slot);
        await insertBatch(tx, full, hash, text, body);
        if (full.data.economy !== undefined) await projectEconomy(tx, full);
        if (full.data.instruments !== undefined) await projectInstruments(tx, full);
      } else {
        await tx.query('INSERT INTO mall_events (seq, type, at, prev, hash, body) VALUES ($1, $2, $3, $4, $5, $6)', [seq, full.type, full.at, full.prev, hash, text]);
        await project(tx, full);
      }
    });
    // Its statements are queued in the transaction: it is durable once exclusive() resolves, and a failed write fails the whole group.
    return Promise.resolve(full);
  }

  /**
   * Queues a write of the current transaction behind the ones before it. It is not
   * awaited by the change that made it: the group waits for every write before COMMIT,
   * and the first failure (kept in writeFailed) rolls the whole group back.
   */
  private enqueue(tx: pg.PoolClient, write: () => Promise<unknown>): void {
    const next = this.writes.then(async () => {
      // After a failed write the transaction is lost: nothing more is sent.
      if (this.writeFailed !== null) throw this.writeFailed;
      assert(this.tx === tx, 'a write belongs to the transaction it was queued in');
      await write();
    });
    this.writes = next.then(
      () => undefined,
      (err: unknown) => {
        this.writeFailed ??= err;
      },
    );
  }

  async read(seq: number): Promise<MallEvent> {
    // Inside a change, the events queued before it are written first.
    if (this.tx !== null) await this.writes;
    const db = this.tx ?? this.pool;
    let rows: { body: MallEvent }[];
    try {
      ({ rows } = await db.query<{ body: MallEvent }>('SELECT body FROM mall_events WHERE seq = $1', [seq]));
    } catch (err) {
      throw storeError(err);
    }
    const row = rows[0];
    if (row === undefined) fail('MALL_ERR_STORE', `mall event ${seq} is not in the database`);
    return row.body;
  }

  /** Brings the cache up to every event committed by any worker so far. */
  flushed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.section(async () => {
      try {
        await this.fresh(this.pool);
        await this.makeDurable(this.pool, this.committedSeq);
      } catch (err) {
        throw storeError(err);
      }
    });
  }

  /**
   * The signed batch as the vendor sent it, for the batch being committed: written by the
   * statement that writes the batch's own rows (insertBatch), one round trip less for each
   * batch under the write lock; the change commits that batch right after (ingest.ts), and
   * a body no commit used is dropped when the next group begins. Outside a change, for a
   * batch already committed.
   */
  async batchBody(vendor: string, seq: number, body: Buffer): Promise<void> {
    if (this.tx !== null) {
      this.stagedBodies.set(bodySlot(vendor, seq), body);
      return;
    }
    await this.query('INSERT INTO mall_batch_bodies (vendor, seq, hash, body) SELECT vendor, seq, hash, $3 FROM mall_batches WHERE vendor = $1 AND seq = $2 ON CONFLICT DO NOTHING', [vendor, seq, body]);
  }

  /**
   * Writes the signed batch as the vendor sent it before the change that ingests it, on
   * its own, so that the write lock is not held for it: the largest value a batch writes.
   * Keyed by the batch's hash (migration 7): a body whose batch is never committed (it
   * lost a race to another version of the same batch) stays as evidence and is not the
   * committed batch's. Its commit is asynchronous (synchronous_commit off on these
   * connections): its commit record precedes the record of the group that commits the
   * batch, whose flush (makeDurable) comes before any answer, so it is on the disk by then.
   * Resolves to false when it was not written (the database failed): the change then
   * writes it under the lock as before, or fails as it would.
   */
  async batchBodyAhead(vendor: string, seq: number, hash: string, body: Buffer): Promise<boolean> {
    if (this.closed) return false;
    if (this.aheadPool === null) {
      this.aheadPool = new pg.Pool({ connectionString: this.opts.url, max: 2, options: '-c synchronous_commit=off', connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
      this.aheadPool.on('error', () => undefined);
    }
    try {
      await this.aheadPool.query({
        name: 'mall_batch_body_ahead',
        text: 'INSERT INTO mall_batch_bodies (vendor, seq, hash, body) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
        values: [vendor, seq, hash, body],
      });
      return true;
    } catch {
      return false;
    }
  }

  /** A statement (no rows wanted): queued in the current change's transaction when there is one, else run on its own. */
  async query(sql: string, params: unknown[]): Promise<void> {
    const tx = this.tx;
    if (tx !== null) {
      // Queued behind the change's events, like them (the archive's rows of a change).
      this.enqueue(tx, () => tx.query({ name: statementName(sql), text: sql, values: params }));
      return;
    }
    try {
      await this.pool.query(sql, params);
    } catch (err) {
      throw storeError(err);
    }
  }

  /** The audit archive's rows: registry entries, batches with their acks, statements. */
  async *archiveRows(): AsyncGenerator<
    { kind: 'registry'; seq: number; jws: unknown } | { kind: 'batch'; vendor: string; seq: number; body: Buffer; ack: unknown } | { kind: 'statement'; vendor: string; from: string; to: string; issuedAt: string; jws: unknown }
  > {
    const registry = await this.pool.query<{ registry_seq: string; jws: unknown }>('SELECT registry_seq, jws FROM mall_registry_archive ORDER BY registry_seq');
    for (const r of registry.rows) yield { kind: 'registry', seq: Number(r.registry_seq), jws: r.jws };
    let after = 0;
    for (;;) {
      const { rows } = await this.pool.query<{ vendor: string; seq: string; body: Buffer; ack: unknown; event_seq: string }>(
        'SELECT b.vendor, b.seq, d.body, b.ack, b.event_seq FROM mall_batches b JOIN mall_batch_bodies d USING (vendor, seq, hash) WHERE b.event_seq > $1 ORDER BY b.event_seq LIMIT 500',
        [after],
      );
      for (const r of rows) yield { kind: 'batch', vendor: r.vendor, seq: Number(r.seq), body: r.body, ack: r.ack };
      if (rows.length < 500) break;
      after = Number(rows[rows.length - 1]?.event_seq);
    }
    const statements = await this.pool.query<{ vendor: string; from_day: string; to_day: string; issued_at: string; jws: unknown }>('SELECT vendor, from_day, to_day, issued_at, jws FROM mall_statements ORDER BY vendor, from_day, to_day, issued_at');
    for (const r of statements.rows) yield { kind: 'statement', vendor: r.vendor, from: r.from_day, to: r.to_day, issuedAt: r.issued_at, jws: r.jws };
  }

  /**
   * Where refusals of authenticated batches are noted, shared by every worker. A note is
   * monitoring, not ledger data: two workers noting a refusal of the same vendor at the
   * same moment may keep only one of the two counts (the last write of the vendor's row).
   */
  observationSink(): ObservationSink {
    return {
      shared: true,
      read: async () => {
        const { rows } = await this.pool.query<{ vendor: string; body: VendorObservation }>('SELECT vendor, body FROM mall_observations');
        return { format: 1, vendors: Object.fromEntries(rows.map((r) => [r.vendor, r.body])) };
      },
      write: async (data, vendor) => {
        const o = data.vendors[vendor];
        if (o === undefined) return;
        await this.pool.query('INSERT INTO mall_observations (vendor, body) VALUES ($1, $2) ON CONFLICT (vendor) DO UPDATE SET body = EXCLUDED.body', [vendor, JSON.stringify(o)]);
      },
    };
  }

  async health(): Promise<StoreHealth> {
    try {
      await this.pool.query('SELECT 1');
      return { ok: true, detail: null };
    } catch (err) {
      return { ok: false, detail: `database unreachable: ${String((err as Error).message).slice(0, 200)}` };
    }
  }

  /**
   * A checkpoint is written by the worker that committed the event at a multiple of
   * `checkpointEvery` (the group `from`..`to` of its own events holds one), so the
   * workers on one database write one checkpoint per interval between them, not one
   * each: a second worker would otherwise double the cost of checkpoints per event.
   * One asked for while another is being written follows it.
   */
  private maybeCheckpoint(from: number, to: number): void {
    if (to < from || Math.floor(to / this.checkpointEvery) === Math.floor((from - 1) / this.checkpointEvery)) return;
    this.startCheckpoint();
  }

  private startCheckpoint(): void {
    if (this.checkpointing !== null) {
      this.checkpointWanted = true;
      return;
    }
    this.checkpointing = this.writeCheckpoint()
      .catch(() => undefined)
      .finally(() => {
        this.checkpointing = null;
        if (this.checkpointWanted && !this.closed) {
          this.checkpointWanted = false;
          this.startCheckpoint();
        }
      });
  }

  /** Writes the state as it is now (everything in it is committed) and keeps the last two checkpoints. */
  private async writeCheckpoint(): Promise<void> {
    const seq = this.current.seq;
    if (seq === 0 || this.stale || this.tx !== null) return;
    const text = asciiJson(this.current);
    await this.pool.query('INSERT INTO mall_checkpoints (seq, state) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING', [seq, text]);
    await this.pool.query('DELETE FROM mall_checkpoints WHERE seq < (SELECT min(seq) FROM (SELECT seq FROM mall_checkpoints ORDER BY seq DESC LIMIT 2) AS kept)');
  }

  /** Resolves once the checkpoints asked for so far are written (or have failed). */
  async checkpointsSettled(): Promise<void> {
    while (this.checkpointing !== null) await this.checkpointing;
  }

  checkpoint(): Promise<void> {
    return this.section(() => this.writeCheckpoint());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.section(async () => undefined);
    while (this.answering.size > 0) await Promise.all([...this.answering]);
    await this.checkpointing;
    await this.checkpoint().catch(() => undefined);
    this.closed = true;
    await Promise.all([this.pool.end(), this.aheadPool?.end()]);
  }
}

// ---- the relational tables, written with each event ---------------------------------------

export interface TransferRow {
  n: number;
  e: number | null;
  k: string;
  f: string;
  t: string;
  a: number;
  tok: string | null;
  u: number;
  at: string;
}

export async function insertTransfers(tx: pg.PoolClient, seq: number, rows: TransferRow[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO mall_transfers (event_seq, n, vendor_event_seq, kind, from_account, to_account, amount_minor, token, units, at)
     SELECT $1, r.n, r.e, r.k, r.f, r.t, r.a, r.tok, r.u, r.at
       FROM json_to_recordset($2::json) AS r(n integer, e bigint, k text, f text, t text, a bigint, tok text, u bigint, at text)`,
    [seq, JSON.stringify(rows)],
  );
  const deltas = new Map<string, bigint>();
  for (const r of rows) {
    deltas.set(r.f, (deltas.get(r.f) ?? 0n) - BigInt(r.a));
    deltas.set(r.t, (deltas.get(r.t) ?? 0n) + BigInt(r.a));
  }
  await tx.query(
    `INSERT INTO mall_positions (account, position_minor) SELECT * FROM unnest($1::text[], $2::bigint[])
     ON CONFLICT (account) DO UPDATE SET position_minor = mall_positions.position_minor + EXCLUDED.position_minor`,
    [[...deltas.keys()], [...deltas.values()].map(String)],
  );
}

export function transferRow(t: Transfer, n: number, vendorEventSeq: number | null, at: string): TransferRow {
  return { n, e: vendorEventSeq, k: t.kind, f: t.from, t: t.to, a: t.amountMinor, tok: t.token, u: t.units, at };
}

/** The key of a staged batch body. */
function bodySlot(vendor: string, seq: number): string {
  return `${vendor} ${seq}`;
}

/**
 * A batch.ingested event and all its rows in one statement: the event, the batch (its
 * primary key (vendor, seq) and the foreign key to the vendor's previous batch refuse a
 * duplicate or a gap), the vendor's cursor (moved only from the previous seq), the
 * clearing ledger, the positions, flagged events and allotments taken into the float,
 * and the signed batch as sent when the change staged it (`body`).
 * Foreign keys between these rows are checked at the end of the statement.
 */
async function insertBatch(tx: pg.PoolClient, e: MallEvent & { type: 'batch.ingested' }, hash: string, text: string, body: Buffer | null): Promise<void> {
  const b = e.data;
  const transfers: TransferRow[] = [];
  for (const c of b.clearing) for (const t of c.transfers) transfers.push(transferRow(t, transfers.length, c.eventSeq, c.at));
  const deltas = new Map<string, bigint>();
  for (const r of transfers) {
    deltas.set(r.f, (deltas.get(r.f) ?? 0n) - BigInt(r.a));
    deltas.set(r.t, (deltas.get(r.t) ?? 0n) + BigInt(r.a));
  }
  const { rows } = await tx.query<{ moved: string }>({
    name: 'mall_insert_batch',
    text: `WITH ev AS (
       INSERT INTO mall_events (seq, type, at, prev, hash, body) VALUES ($1, 'batch.ingested', $2, $3, $4, $5)
     ), bt AS (
       INSERT INTO mall_batches (vendor, seq, hash, kid, event_seq, from_seq, to_seq, events, ingested_at, registry_seq, ack)
       VALUES ($6, $7::bigint, $8, $9, $1, $10::bigint, $11::bigint, $11::bigint - $10::bigint + 1, $2, $12, $13)
     ), cur AS (
       UPDATE mall_vendors SET last_batch_seq = $7, last_batch_hash = $8, last_event_seq = $14, last_event_hash = $15, last_batch_at = $2
        WHERE id = $6 AND last_batch_seq = $7::bigint - 1 RETURNING 1
     ), tr AS (
       INSERT INTO mall_transfers (event_seq, n, vendor_event_seq, kind, from_account, to_account, amount_minor, token, units, at)
       SELECT $1, r.n, r.e, r.k, r.f, r.t, r.a, r.tok, r.u, r.at
         FROM json_to_recordset($16::json) AS r(n integer, e bigint, k text, f text, t text, a bigint, tok text, u bigint, at text)
     ), po AS (
       INSERT INTO mall_positions (account, position_minor) SELECT * FROM unnest($17::text[], $18::bigint[])
       ON CONFLICT (account) DO UPDATE SET position_minor = mall_positions.position_minor + EXCLUDED.position_minor
     ), fl AS (
       INSERT INTO mall_flagged (vendor, event_seq, batch_seq, at, type, reason)
       SELECT r.vendor, r."eventSeq", r."batchSeq", r.at, r.type, r.reason
         FROM json_to_recordset($19::json) AS r(vendor text, "eventSeq" bigint, "batchSeq" bigint, at text, type text, reason text)
     ), al AS (
       UPDATE mall_allotments a SET used_batch_seq = $7, used_event_seq = u."eventSeq"
         FROM json_to_recordset($20::json) AS u(id text, "eventSeq" bigint)
        WHERE a.id = u.id AND a.vendor = $6 AND a.used_event_seq IS NULL
     ), bb AS (
       INSERT INTO mall_batch_bodies (vendor, seq, hash, body) SELECT $6, $7::bigint, $8, $21::bytea WHERE $21::bytea IS NOT NULL
       ON CONFLICT DO NOTHING
     )
     SELECT count(*)::text AS moved FROM cur`,
    values: [
      e.seq,
      e.at,
      e.prev,
      hash,
      text,
      b.vendor,
      b.seq,
      b.hash,
      b.kid,
      b.fromSeq,
      b.toSeq,
      b.registrySeq ?? 0,
      JSON.stringify(b.ack),
      b.lastEventSeq,
      b.lastEventHash,
      JSON.stringify(transfers),
      [...deltas.keys()],
      [...deltas.values()].map(String),
      JSON.stringify(b.flagged),
      JSON.stringify(b.allotmentsUsed),
      body,
    ],
  });
  if (rows[0]?.moved !== '1') fail('MALL_ERR_STORE', `batch ${b.seq} of ${b.vendor} does not follow the vendor's last batch in the database`);
}

/** Writes one event's rows into the relational tables (inside its transaction). */
async function project(tx: pg.PoolClient, e: MallEvent): Promise<void> {
  switch (e.type) {
    case 'vendor.registered':
      await tx.query('INSERT INTO mall_vendors (id, name, registered_at, registered_seq) VALUES ($1, $2, $3, $4)', [e.data.id, e.data.name, e.at, e.seq]);
      break;
    case 'key.added': {
      const d = e.data;
      if (d.retired !== null) {
        await tx.query("UPDATE mall_keys SET status = 'retired', retired_at = $2, retired_at_seq = $3 WHERE kid = $1", [d.retired, e.at, d.retiredAtSeq ?? null]);
        await tx.query("INSERT INTO mall_key_history (event_seq, kid, change, at) VALUES ($1, $2, 'retired', $3)", [e.seq, d.retired, e.at]);
      }
      await tx.query("INSERT INTO mall_keys (kid, vendor, jwk, status, added_at) VALUES ($1, $2, $3, 'active', $4)", [d.kid, d.vendor, JSON.stringify(d.jwk), e.at]);
      await tx.query("INSERT INTO mall_key_history (event_seq, kid, change, at) VALUES ($1, $2, 'added', $3)", [e.seq, d.kid, e.at]);
      break;
    }
    case 'key.retired':
      await tx.query("UPDATE mall_keys SET status = 'retired', retired_at = $2, retired_at_seq = $3 WHERE kid = $1", [e.data.kid, e.at, e.data.retiredAtSeq ?? null]);
      await tx.query("INSERT INTO mall_key_history (event_seq, kid, change, at) VALUES ($1, $2, 'retired', $3)", [e.seq, e.data.kid, e.at]);
      break;
    case 'key.revoked':
      await tx.query("UPDATE mall_keys SET status = 'revoked', revoked_at = $2, revoked_reason = $3 WHERE kid = $1", [e.data.kid, e.at, e.data.reason]);
      await tx.query("INSERT INTO mall_key_history (event_seq, kid, change, at) VALUES ($1, $2, 'revoked', $3)", [e.seq, e.data.kid, e.at]);
      break;
    case 'token-type.upserted':
      await tx.query('INSERT INTO mall_token_types (code, body, event_seq) VALUES ($1, $2, $3) ON CONFLICT (code) DO UPDATE SET body = EXCLUDED.body, event_seq = EXCLUDED.event_seq', [
        e.data.code,
        JSON.stringify(e.data),
        e.seq,
      ]);
      break;
    case 'fees.set':
      await tx.query('INSERT INTO mall_fees (event_seq, body) VALUES ($1, $2)', [e.seq, JSON.stringify(e.data)]);
      break;
    case 'party.added':
      await tx.query('INSERT INTO mall_parties (id, name, kind, added_at) VALUES ($1, $2, $3, $4)', [e.data.id, e.data.name, e.data.kind, e.at]);
      break;
    case 'gap.decided': {
      const d = e.data;
      await tx.query('INSERT INTO mall_gap_decisions (event_seq, vendor, decision, expected_seq, seen_seq, resend_from_seq, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
        e.seq,
        d.vendor,
        d.decision,
        d.expectedSeq,
        d.seenSeq,
        d.resendFromSeq,
        d.note,
        e.at,
      ]);
      break;
    }
    case 'allotment.issued': {
      const a = e.data;
      await tx.query(
        `INSERT INTO mall_allotments (id, vendor, token, units, reference, issued_at, face_value_minor, purchase_minor, idempotency_key, body_hash, event_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [a.id, a.vendor, a.token, a.units, a.reference, e.at, a.faceValueMinor, a.purchaseMinor, a.key, a.bodyHash, e.seq],
      );
      await insertTransfers(tx, e.seq, a.transfers.map((t, i) => transferRow(t, i, null, e.at)));
      break;
    }
    case 'batch.ingested': {
      const b = e.data;
      // The batch row first: the primary key (vendor, seq) and the foreign key to the previous batch refuse a duplicate or a gap.
      await tx.query(
        `INSERT INTO mall_batches (vendor, seq, hash, kid, event_seq, from_seq, to_seq, events, ingested_at, registry_seq, ack)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [b.vendor, b.seq, b.hash, b.kid, e.seq, b.fromSeq, b.toSeq, b.toSeq - b.fromSeq + 1, e.at, b.registrySeq ?? 0, JSON.stringify(b.ack)],
      );
      const updated = await tx.query(
        `UPDATE mall_vendors SET last_batch_seq = $2, last_batch_hash = $3, last_event_seq = $4, last_event_hash = $5, last_batch_at = $6
          WHERE id = $1 AND last_batch_seq = $2 - 1`,
        [b.vendor, b.seq, b.hash, b.lastEventSeq, b.lastEventHash, e.at],
      );
      if (updated.rowCount !== 1) fail('MALL_ERR_STORE', `batch ${b.seq} of ${b.vendor} does not follow the vendor's last batch in the database`);
      const transfers: TransferRow[] = [];
      for (const c of b.clearing) for (const t of c.transfers) transfers.push(transferRow(t, transfers.length, c.eventSeq, c.at));
      await insertTransfers(tx, e.seq, transfers);
      if (b.flagged.length > 0) {
        await tx.query(
          `INSERT INTO mall_flagged (vendor, event_seq, batch_seq, at, type, reason)
           SELECT r.vendor, r."eventSeq", r."batchSeq", r.at, r.type, r.reason
             FROM json_to_recordset($1::json) AS r(vendor text, "eventSeq" bigint, "batchSeq" bigint, at text, type text, reason text)`,
          [JSON.stringify(b.flagged)],
        );
      }
      for (const u of b.allotmentsUsed) {
        await tx.query('UPDATE mall_allotments SET used_batch_seq = $3, used_event_seq = $4 WHERE id = $1 AND vendor = $2 AND used_event_seq IS NULL', [u.id, b.vendor, b.seq, u.eventSeq]);
      }
      break;
    }
    case 'alarm.recorded': {
      const a = e.data;
      await tx.query(
        `INSERT INTO mall_alarms (id, event_seq, kind, vendor, batch_seq, stored_hash, received_hash, kid, message, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [a.id, e.seq, a.kind, a.vendor, a.batchSeq, a.storedHash, a.receivedHash, a.kid, a.message, e.at],
      );
      break;
    }
    case 'wallet.authorised':
    case 'wallet.closed':
    case 'customer-data.requested':
      await projectEconomy(tx, e);
      break;
    case 'instruments.key-added':
    case 'instruments.key-withdrawn':
    case 'instruments.policy-set':
    case 'instruments.issued':
    case 'instruments.reserved':
    case 'instruments.released':
    case 'instruments.voided':
      await projectInstruments(tx, e);
      break;
    case 'mall-lot.opened':
    case 'mall-lot.bid':
    case 'mall-lot.cancelled':
    case 'mall-lot.closed':
      // Mall lots live in the event log only (every worker's state replays it); the
      // registry's write lock and the re-check inside it make each change once.
      break;
    case 'wallet.pin-set':
    case 'wallet.pin-failed':
    case 'wallet.pin-reset':
    case 'wallet.unlocked':
      // Wallet PINs live in the event log only (every worker's state replays it); no
      // relational table reads them, and a PIN hash is no row anyone should query.
      break;
    default: {
      const never: never = e;
      assert(false, `unknown mall event type ${(never as { type: string }).type}`);
    }
  }
}
