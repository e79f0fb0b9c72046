import type { MallEvent, NewMallEvent } from '../events.ts';
import type { MallState } from './state.ts';

/**
 * Where the mall keeps its history and state. Callers validate a change against `state`,
 * then `commit` it; everything between the validation and the commit call must be
 * synchronous, so that two requests cannot both pass a check that only one may pass.
 *
 * Rules every implementation keeps:
 *  - `commit` assigns the next seq, chains the event to the previous one by hash, and
 *    applies it to `state` synchronously, before it returns; the promise it returns
 *    resolves only once the event is durable. A caller answers its client (an ack, an
 *    admin response) only after that.
 *  - If the event cannot be made durable the process stops (the in-memory state would
 *    no longer match the disk); the next start recovers from what is durable.
 *  - `read(seq)` returns a durable event exactly as committed, at a cost that does not
 *    grow with the history.
 *
 * Every change (a batch, a registry change) runs inside `exclusive`: for a store shared
 * by several processes that is where the state is brought up to date and other writers
 * are kept out, so the checks made inside it still hold when its events are committed.
 *
 * The default implementation is `EmbeddedMallStore` (embedded.ts): the vendor server's
 * append-only journal plus a lowdb checkpoint, one process. `PostgresMallStore`
 * (postgres.ts) keeps the events and relational tables in PostgreSQL, for several
 * mall-sync processes in front of one database.
 */
export interface StoreReport {
  /** The seq of the checkpoint the state was loaded from (0: none). */
  checkpointSeq: number;
  /** Events applied after the checkpoint on open. */
  replayed: number;
  recoveryMs: number;
}

export interface StoreHealth {
  ok: boolean;
  /** What is wrong, when something is. */
  detail: string | null;
}

export interface MallStore {
  readonly kind: 'embedded' | 'postgres';
  readonly report: StoreReport;
  /** The materialised state. Read it freely; change it only through `commit`. */
  readonly state: Readonly<MallState>;
  /**
   * Runs a change: `fn` checks against `state` and commits. The embedded store runs it
   * at once (one process, checks and commit synchronous). The PostgreSQL store runs it
   * in a transaction holding the mall's write lock, with `state` caught up first; it
   * resolves once that transaction is committed.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Appends and applies one event now; resolves with it once it is durable (inside a
   * PostgreSQL `exclusive`: once it is written in that transaction, durable when
   * `exclusive` resolves).
   */
  commit(event: NewMallEvent): Promise<MallEvent>;
  /** One committed event by its seq (waits until it is durable). */
  read(seq: number): Promise<MallEvent>;
  /** Resolves once every event committed so far is durable and, for a shared store, in `state`. */
  flushed(): Promise<void>;
  /**
   * For a store shared by several processes: a token of the last event in `state` that
   * may change how a vendor's batch is judged, other than that vendor's own batches
   * (state.ts, changesJudging). A batch judged while the token and its vendor's record
   * stay the same is judged the same. null for a store whose changes run in one process.
   */
  judgingVersion(): string | null;
  /** Whether the store can take changes now (the database is reachable). */
  health(): Promise<StoreHealth>;
  /** Writes a checkpoint of the state now (a no-op for stores that need none). */
  checkpoint(): Promise<void>;
  /** Waits for pending events to be durable, checkpoints, and releases files. */
  close(): Promise<void>;
}
