import type { Journal } from './journal.ts';
import { writeFileDurable } from './durable-file.ts';

export interface CheckpointPolicy {
  everyEvents: number;
  everyMs: number;
}

/** What a checkpointer saves: the state's journal seq and its serialised form. */
export interface CheckpointSource {
  seq(): number;
  /** The state as checkpoint JSON (read back through lowdb's durable adapter). */
  serialize(): string;
}

/**
 * Writes materialised state in the background, for the vendor ledger and the mall alike.
 * The snapshot is serialised synchronously at journal seq S and written only after the
 * journal is durable up to S, so a checkpoint never claims an event the journal could
 * lose. One checkpoint at a time: a request while one is written starts at most one more.
 */
export class Checkpointer {
  private running: Promise<void> | null = null;
  private lastSeq: number;
  private lastAt = Date.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string,
    private readonly source: CheckpointSource,
    private readonly journal: Journal,
    private readonly policy: CheckpointPolicy,
    /** The seq the checkpoint on disk covers (events replayed after it are not yet in it). */
    checkpointSeq: number,
  ) {
    this.lastSeq = checkpointSeq;
  }

  get seq(): number {
    return this.lastSeq;
  }

  /** Whether a checkpoint is being written now. */
  get writing(): boolean {
    return this.running !== null;
  }

  startTimer(): void {
    this.timer = setInterval(() => void this.maybe(), Math.min(this.policy.everyMs, 60_000));
    this.timer.unref();
  }

  /** Checkpoints when enough events or time have passed since the last one and none is being written. */
  maybe(): Promise<void> {
    if (this.running !== null) return Promise.resolve();
    const seq = this.source.seq();
    const due = seq - this.lastSeq >= this.policy.everyEvents || (seq > this.lastSeq && Date.now() - this.lastAt >= this.policy.everyMs);
    return due ? this.now() : Promise.resolve();
  }

  async now(): Promise<void> {
    while (this.running !== null) await this.running;
    if (this.source.seq() === this.lastSeq) return;
    this.running = this.write().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async write(): Promise<void> {
    const seq = this.source.seq();
    const text = this.source.serialize();
    await this.journal.flushed();
    await writeFileDurable(this.file, text);
    this.lastSeq = seq;
    this.lastAt = Date.now();
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.now();
  }
}

/** JSON with every non-ASCII character escaped as \uXXXX (still plain JSON): it reads back as a compact one-byte string. */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
