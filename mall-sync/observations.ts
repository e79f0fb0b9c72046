import { DurableJSONFile } from '../platform/storage/index.ts';
import { dict, own } from './store/dict.ts';

/**
 * What the mall has seen of batches it refused, per vendor: not part of the ledger (a
 * refused batch changes nothing there), but what reconcile needs to say "batches are
 * missing". Only refusals from a vendor's own, valid signature are noted, so nobody
 * else can fake a gap. Kept in a small durable file, written in the background.
 */
export interface VendorObservation {
  /** Highest batch seq seen ahead of the next expected one (MALL_ERR_BATCH_GAP). */
  aheadSeq: number;
  aheadAt: string | null;
  /** Refusals by code. */
  rejections: Record<string, number>;
  lastRejectionAt: string | null;
  lastRejectionCode: string | null;
}

export interface ObservationData {
  format: 1;
  vendors: Record<string, VendorObservation>;
}

/** Where the notes are kept: a file next to the embedded store, or a table of the PostgreSQL one. */
export interface ObservationSink {
  read(): Promise<ObservationData | null>;
  /** Keeps the notes after `vendor`'s changed. */
  write(data: ObservationData, vendor: string): Promise<void>;
  /** Whether other processes write notes too (then `refresh` reads them). */
  shared: boolean;
}

function fileSink(path: string): ObservationSink {
  const file = new DurableJSONFile<ObservationData>(path);
  return { read: () => file.read(), write: (data) => file.write(data), shared: false };
}

export class Observations {
  private constructor(
    private readonly sink: ObservationSink,
    public data: ObservationData,
  ) {}

  private static async load(sink: ObservationSink): Promise<ObservationData> {
    let data: ObservationData | null = null;
    try {
      data = await sink.read();
    } catch {
      // A damaged note file loses only monitoring notes, never ledger data: start afresh.
      data = null;
    }
    // Keyed by vendor ids and error codes: null-prototype maps, whatever the file held.
    const vendors = dict<VendorObservation>();
    for (const [id, o] of Object.entries(data?.vendors ?? {})) vendors[id] = { ...o, rejections: dict(o.rejections) };
    return { format: 1, vendors };
  }

  static async open(path: string | ObservationSink): Promise<Observations> {
    const sink = typeof path === 'string' ? fileSink(path) : path;
    return new Observations(sink, await Observations.load(sink));
  }

  /** Reads notes other processes made (a shared store); a no-op for a file. */
  async refresh(): Promise<void> {
    if (this.sink.shared) this.data = await Observations.load(this.sink);
  }

  of(vendor: string): VendorObservation | null {
    return own(this.data.vendors, vendor) ?? null;
  }

  /** Notes a refusal of an authenticated batch; resolves once the note is on disk. */
  note(vendor: string, code: string, batchSeq: number, expectedSeq: number): Promise<void> {
    const o = own(this.data.vendors, vendor) ?? (this.data.vendors[vendor] = { aheadSeq: 0, aheadAt: null, rejections: dict(), lastRejectionAt: null, lastRejectionCode: null });
    const now = new Date().toISOString();
    o.rejections[code] = (own(o.rejections, code) ?? 0) + 1;
    o.lastRejectionAt = now;
    o.lastRejectionCode = code;
    if (batchSeq > expectedSeq && batchSeq > o.aheadSeq) {
      o.aheadSeq = batchSeq;
      o.aheadAt = now;
    }
    return this.sink.write(this.data, vendor);
  }
}

/** A gap is open while a batch was seen ahead of what the mall has ingested. */
export function openGap(o: VendorObservation | null, nextExpectedSeq: number): { expectedSeq: number; seenSeq: number; seenAt: string | null } | null {
  if (o === null || o.aheadSeq < nextExpectedSeq) return null;
  return { expectedSeq: nextExpectedSeq, seenSeq: o.aheadSeq, seenAt: o.aheadAt };
}
