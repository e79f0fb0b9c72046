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
 * The default implementation is `EmbeddedMallStore` (embedded.ts): the vendor server's
 * append-only journal plus a lowdb checkpoint. A PostgreSQL implementation can sit
 * behind this same interface for a mall that outgrows one machine: events in an
 * append-only table (seq primary key, prev and hash columns keeping the same chain,
 * `commit` = INSERT in a transaction, awaited), the materialised state kept in memory as
 * here or in tables updated in the same transaction, and `read` a primary-key lookup.
 */
export interface MallStore {
  /** The materialised state. Read it freely; change it only through `commit`. */
  readonly state: Readonly<MallState>;
  /** Appends and applies one event now; resolves with it once it is durable. */
  commit(event: NewMallEvent): Promise<MallEvent>;
  /** One committed event by its seq (waits until it is durable). */
  read(seq: number): Promise<MallEvent>;
  /** Resolves once every event committed so far is durable. */
  flushed(): Promise<void>;
  /** Writes a checkpoint of the state now (a no-op for stores that need none). */
  checkpoint(): Promise<void>;
  /** Waits for pending events to be durable, checkpoints, and releases files. */
  close(): Promise<void>;
}
