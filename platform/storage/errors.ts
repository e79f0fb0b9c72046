/**
 * Typed errors of the vendor server's storage layer. Each carries a stable code from the
 * process error catalogue (core/errors.ts), and a message that says where the problem is
 * and what to do about it.
 */

/** Why a journal line was rejected. */
export type JournalCorruptReason =
  /** The line does not have the `{"h":"<hex>","e":{...}}` framing or its event is not valid JSON. */
  | 'malformed'
  /** The sha256 of the event text differs from the stored `h`: the bytes changed after they were written. */
  | 'hash-mismatch'
  /** The event's `prev` is not the hash of the event before it. */
  | 'chain-break'
  /** The event's seq is higher than the next expected one: events are missing. */
  | 'seq-gap'
  /** The event's seq is lower than the next expected one: events are duplicated or reordered. */
  | 'seq-disorder'
  /** A line without its final newline somewhere other than the end of the last segment. */
  | 'incomplete-line'
  /** A segment's file name does not match the seq of its first event. */
  | 'segment-mismatch'
  /** A segment other than the last one holds no events. */
  | 'empty-segment';

const reasonText: Record<JournalCorruptReason, string> = {
  malformed: 'malformed line',
  'hash-mismatch': 'hash mismatch',
  'chain-break': 'chain break',
  'seq-gap': 'seq gap',
  'seq-disorder': 'seq out of order',
  'incomplete-line': 'incomplete line',
  'segment-mismatch': 'segment name does not match its first event',
  'empty-segment': 'empty segment',
};

export interface JournalCorruptDetails {
  /** File name of the segment, e.g. `journal-0000000000000001.jsonl`. */
  segment: string;
  /** Byte offset of the start of the offending line within the segment. */
  offset: number;
  /** The seq the offending line should hold, when the position makes that known. */
  seq?: number;
  reason: JournalCorruptReason;
  /** One more sentence of specifics, e.g. which seq was found instead. */
  detail?: string;
}

/**
 * The journal holds a complete line that cannot be trusted. Nothing is repaired or
 * dropped automatically, because such a line may hold an acknowledged sale: the
 * operator must restore the segment before the server can start.
 */
export class JournalCorruptError extends Error {
  readonly code = 'VND_ERR_JOURNAL_CORRUPT';
  readonly segment: string;
  readonly offset: number;
  readonly seq: number | undefined;
  readonly reason: JournalCorruptReason;
  readonly detail: string | undefined;

  constructor(details: JournalCorruptDetails) {
    const at = details.seq === undefined ? '' : ` (seq ${details.seq})`;
    const more = details.detail === undefined ? '' : `: ${details.detail}`;
    super(
      `journal corrupt in ${details.segment} at byte ${details.offset}${at}: ` +
        `${reasonText[details.reason]}${more}. The journal was left as it is; ` +
        'restore this segment from a backup before starting the vendor server.',
    );
    this.name = 'JournalCorruptError';
    this.segment = details.segment;
    this.offset = details.offset;
    this.seq = details.seq;
    this.reason = details.reason;
    this.detail = details.detail;
  }
}

/**
 * More appended bytes are waiting for the disk than the journal accepts. This is an
 * expected overload (a stalled disk), so the caller answers "busy, retry" instead of
 * letting memory grow without bound.
 */
export class JournalBacklogError extends Error {
  readonly code = 'VND_ERR_JOURNAL_BACKLOG';
  readonly pendingBytes: number;

  constructor(pendingBytes: number, pendingBytesMax: number) {
    super(
      `journal backlog full: ${pendingBytes} bytes are waiting for the disk (limit ` +
        `${pendingBytesMax}); retry shortly, and check the disk if this persists`,
    );
    this.name = 'JournalBacklogError';
    this.pendingBytes = pendingBytes;
  }
}

/** A state file (checkpoint, settings) exists but cannot be read or parsed. */
export class StateFileError extends Error {
  readonly code = 'VND_ERR_STATE_CORRUPT';
  readonly file: string;

  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(
      `state file ${file} cannot be used: ${problem}. Restore it from a backup, or move ` +
        'it aside to rebuild the state from the journal.',
      options,
    );
    this.name = 'StateFileError';
    this.file = file;
  }
}
