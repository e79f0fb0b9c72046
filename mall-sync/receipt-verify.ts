import { readFile } from 'node:fs/promises';
import { assert, sha256Hex, type JournalEvent } from '../core/index.ts';
import { parseReceiptQr, receiptSaleSeq, type ReceiptProofPayload } from '../core/receipt-proof.ts';
import { receiptSignatureValid } from '../platform/receipt-proof.ts';
import { archivePaths } from './archive.ts';
import { batchIndexOf, saleOutcomeIn } from './judge.ts';
import { own } from './store/dict.ts';
import type { KeyRecord } from './store/state.ts';
import type { MallStore } from './store/store.ts';

/**
 * Checks a receipt's signed proof (core/receipt-proof.ts) against the mall's key
 * directory and, once the sale's batch is ingested, against the sale event the mall
 * ingested under that seq. Every answer is a verdict, never an exception about the
 * input:
 *
 *   confirmed       the store's key signed it, and the ingested sale event hashes to the
 *                   receipt's digest and agrees with its totals; the batch was acknowledged
 *   not-yet-synced  the store's key signed it; the mall has not ingested that sale yet
 *   MISMATCH        the store's key signed it, but the ingested event under that seq hashes
 *                   otherwise or says other totals: a forged or altered receipt
 *   key-retired     signed by a key the vendor had retired before the sale
 *   bad-signature   the signature does not verify with the key it names
 *   key-revoked     the key it names was revoked
 *   key-unknown     the key it names is not one of the vendor's
 *   vendor-unknown  no such vendor is registered
 *   malformed       not a receipt proof
 */
export type ReceiptVerdictKind = 'confirmed' | 'not-yet-synced' | 'MISMATCH' | 'key-retired' | 'bad-signature' | 'key-revoked' | 'key-unknown' | 'vendor-unknown' | 'malformed';

export interface ReceiptKeyView {
  kid: string;
  vendor: string;
  status: KeyRecord['status'];
  addedAt: string;
  retiredAt: string | null;
  revokedAt: string | null;
  /** Not revoked, and not retired before the sale (by time, or by the batch that holds it). */
  validAtSale: boolean;
}

export interface ReceiptSyncView {
  /** The vendor batch that holds the sale, and when the mall acknowledged it. */
  batchSeq: number;
  ackedAt: string;
  /** The sha256 of the ingested event's text. */
  eventHash: string;
  /** How the mall cleared the sale: cleared, flagged (with why), or not a clearing event. */
  clearing: 'cleared' | 'flagged' | 'none';
  flaggedReason: string | null;
  /** A later refund of this sale reached the mall. */
  refunded: boolean;
  /** What differs between the receipt and the ingested event (empty unless MISMATCH). */
  differences: string[];
}

export interface ReceiptVerdict {
  verdict: ReceiptVerdictKind;
  /** True for confirmed and not-yet-synced: a key of the vendor, valid at the sale, signed it. */
  genuine: boolean;
  /** One plain sentence saying what was found. */
  message: string;
  /** What the receipt claims (once it parses). */
  receipt: ReceiptProofPayload | null;
  vendorName: string | null;
  key: ReceiptKeyView | null;
  sync: ReceiptSyncView | null;
}

/** Reads an archived batch exactly as the vendor sent it (null when it is not there). */
export type BatchBodyReader = (vendor: string, seq: number) => Promise<Buffer | null>;

/** The embedded mall's archive directory: one file per batch. */
export function fileBatchBodies(archiveDir: string): BatchBodyReader {
  const paths = archivePaths(archiveDir);
  return async (vendor, seq) => {
    try {
      return await readFile(paths.batchFile(vendor, seq));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  };
}

/** A mall on PostgreSQL: the archive's batch bodies table. */
export function postgresBatchBodies(pool: { query<R>(sql: string, params: unknown[]): Promise<{ rows: R[] }> }): BatchBodyReader {
  return async (vendor, seq) => {
    // The body of the batch committed under (vendor, seq): another may be kept beside it (migration 7).
    const { rows } = await pool.query<{ body: Buffer }>('SELECT d.body FROM mall_batch_bodies d JOIN mall_batches b USING (vendor, seq, hash) WHERE d.vendor = $1 AND d.seq = $2', [vendor, seq]);
    return rows[0]?.body ?? null;
  };
}

/** Ingested batches kept parsed, at most this many bytes of event text: a receipt is often checked twice. */
export const RECEIPT_BATCH_CACHE_BYTES_MAX = 16 * 1024 * 1024;

interface CachedBatch {
  fromSeq: number;
  events: string[];
  bytes: number;
}

export class ReceiptVerifier {
  private readonly cache = new Map<string, CachedBatch>();
  private cachedBytes = 0;
  private readonly loading = new Map<string, Promise<CachedBatch>>();

  constructor(
    private readonly store: MallStore,
    private readonly bodies: BatchBodyReader,
  ) {}

  async verify(qr: unknown): Promise<ReceiptVerdict> {
    const parsed = parseReceiptQr(qr);
    const none = { receipt: null, vendorName: null, key: null, sync: null };
    if (!parsed.ok) return { verdict: 'malformed', genuine: false, message: `Not a mallpos receipt: ${parsed.problem}.`, ...none };
    const { header, payload } = parsed.value;
    const state = this.store.state;
    const vendor = own(state.vendors, payload.vendor);
    if (vendor === undefined) return { verdict: 'vendor-unknown', genuine: false, message: `The receipt names vendor ${payload.vendor}, which the mall has not registered.`, ...none, receipt: payload };
    const base = { receipt: payload, vendorName: vendor.name, sync: null };
    const key = own(state.keys, header.kid);
    if (key === undefined || key.vendor !== vendor.id) {
      return { verdict: 'key-unknown', genuine: false, message: `The receipt is signed with key ${header.kid}, which is not a key of ${vendor.name} (${vendor.id}).`, ...base, key: null };
    }
    const saleSeq = receiptSaleSeq(payload);
    const k = saleSeq <= vendor.lastEventSeq ? batchIndexOf(vendor.batchFromSeqs, saleSeq) : -1;
    const batchSeq = k < 0 ? null : k + 1;
    const keyView = viewOfKey(key, payload.at, batchSeq);
    if (key.status === 'revoked') {
      return { verdict: 'key-revoked', genuine: false, message: `The receipt is signed with key ${key.kid} of ${vendor.name}, revoked at ${key.revokedAt ?? '?'}: nothing it signs is trusted.`, ...base, key: keyView };
    }
    if (!(await receiptSignatureValid(parsed.value, key.jwk))) {
      return { verdict: 'bad-signature', genuine: false, message: `The receipt's signature does not verify with key ${key.kid} of ${vendor.name}: it was altered or forged.`, ...base, key: keyView };
    }
    const sync = batchSeq === null ? null : await this.ingested(vendor.id, batchSeq, saleSeq, payload);
    if (sync !== null && sync.differences.length > 0) {
      return {
        verdict: 'MISMATCH',
        genuine: false,
        message: `MISMATCH: the receipt carries a valid signature of ${vendor.name}, but the sale ${payload.saleId} the mall ingested in batch ${sync.batchSeq} differs (${sync.differences.join('; ')}). The receipt is forged or altered by someone holding the store's key.`,
        ...base,
        key: keyView,
        sync,
      };
    }
    if (!keyView.validAtSale) {
      return { verdict: 'key-retired', genuine: false, message: `The receipt is signed with key ${key.kid} of ${vendor.name}, retired at ${key.retiredAt ?? '?'}, before the sale's time ${payload.at}.`, ...base, key: keyView, sync };
    }
    const signed = `Signed by ${vendor.name} (${vendor.id}) with key ${key.kid} (${key.status})`;
    if (sync === null) {
      return {
        verdict: 'not-yet-synced',
        genuine: true,
        message: `${signed}. The mall has not received sale ${payload.saleId} yet: check again once the store has synced.`,
        ...base,
        key: keyView,
        sync: null,
      };
    }
    const clearing = sync.clearing === 'flagged' ? `, flagged by the mall: ${sync.flaggedReason ?? ''}` : '';
    return {
      verdict: 'confirmed',
      genuine: true,
      message: `${signed}, and confirmed: sale ${payload.saleId} is in batch ${sync.batchSeq}, acknowledged by the mall at ${sync.ackedAt}${sync.refunded ? ', refunded since' : ''}${clearing}.`,
      ...base,
      key: keyView,
      sync,
    };
  }

  /** The ingested event under the receipt's seq, compared with what the receipt says. */
  private async ingested(vendorId: string, batchSeq: number, saleSeq: number, receipt: ReceiptProofPayload): Promise<ReceiptSyncView> {
    const state = this.store.state;
    const vendor = own(state.vendors, vendorId);
    const mallSeq = vendor?.batchMallSeqs[batchSeq - 1];
    assert(vendor !== undefined && mallSeq !== undefined, `batch ${batchSeq} of ${vendorId} is indexed`);
    const event = await this.store.read(mallSeq);
    assert(event.type === 'batch.ingested' && event.data.vendor === vendorId && event.data.seq === batchSeq, `mall event ${mallSeq} is batch ${batchSeq} of ${vendorId}`);
    const batch = await this.batch(vendorId, batchSeq);
    const text = batch.events[saleSeq - batch.fromSeq];
    assert(text !== undefined, `batch ${batchSeq} of ${vendorId} holds event ${saleSeq}`);
    const eventHash = sha256Hex(text);
    const outcome = saleOutcomeIn(event.data, saleSeq);
    return {
      batchSeq,
      ackedAt: event.at,
      eventHash,
      clearing: outcome.kind,
      flaggedReason: outcome.kind === 'flagged' ? outcome.reason : null,
      refunded: Object.hasOwn(vendor.reversedSales, String(saleSeq)),
      differences: differences(receipt, eventHash, text),
    };
  }

  /** The events of an ingested batch, from the archive (kept for the next receipt of the same batch). */
  private batch(vendor: string, seq: number): Promise<CachedBatch> {
    const id = `${vendor}/${seq}`;
    const hit = this.cache.get(id);
    if (hit !== undefined) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return Promise.resolve(hit);
    }
    let pending = this.loading.get(id);
    if (pending === undefined) {
      pending = this.load(vendor, seq).finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
      pending.then((b) => this.keep(id, b), () => undefined);
    }
    return pending;
  }

  private async load(vendor: string, seq: number): Promise<CachedBatch> {
    const body = await this.bodies(vendor, seq);
    assert(body !== null, `the archive holds batch ${seq} of ${vendor}`);
    // The mall verified this batch when it ingested it: here it is only read apart again.
    const jws = JSON.parse(body.toString('utf8')) as { payload: string };
    const payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as { fromSeq: number; events: string[] };
    const bytes = payload.events.reduce((n, e) => n + e.length, 0);
    return { fromSeq: payload.fromSeq, events: payload.events, bytes };
  }

  private keep(id: string, batch: CachedBatch): void {
    if (this.cache.has(id) || batch.bytes > RECEIPT_BATCH_CACHE_BYTES_MAX) return;
    this.cache.set(id, batch);
    this.cachedBytes += batch.bytes;
    for (const [oldest, b] of this.cache) {
      if (this.cachedBytes <= RECEIPT_BATCH_CACHE_BYTES_MAX) break;
      this.cache.delete(oldest);
      this.cachedBytes -= b.bytes;
    }
  }
}

function viewOfKey(key: KeyRecord, saleAt: string, batchSeq: number | null): ReceiptKeyView {
  // A retired key still signs what was sold before its retirement: a sale earlier than the
  // retirement, or one the mall received in a batch the key was still allowed to sign.
  const beforeRetirement = key.retiredAt === null || Date.parse(saleAt) < Date.parse(key.retiredAt) || (batchSeq !== null && key.retiredAtSeq !== null && batchSeq <= key.retiredAtSeq);
  return {
    kid: key.kid,
    vendor: key.vendor,
    status: key.status,
    addedAt: key.addedAt,
    retiredAt: key.retiredAt,
    revokedAt: key.revokedAt,
    validAtSale: key.status !== 'revoked' && beforeRetirement,
  };
}

/** Where the ingested event and the receipt disagree: its hash first, then each total. */
function differences(receipt: ReceiptProofPayload, eventHash: string, text: string): string[] {
  const out: string[] = [];
  if (eventHash !== receipt.hash) out.push(`the ingested event hashes to ${eventHash}, the receipt says ${receipt.hash}`);
  let event: JournalEvent;
  try {
    event = JSON.parse(text) as JournalEvent;
  } catch {
    return [...out, 'the ingested event is not JSON'];
  }
  if (event.type !== 'sale') return [...out, `the ingested event ${event.seq} is a ${String(event.type)}, not a sale`];
  const d = event.data;
  const compare = (field: string, ingested: unknown, claimed: unknown) => {
    if (ingested !== claimed) out.push(`${field}: the sale says ${String(ingested)}, the receipt ${String(claimed)}`);
  };
  compare('vendor', event.vendor, receipt.vendor);
  compare('sale id', d.saleId, receipt.saleId);
  compare('time', event.at, receipt.at);
  compare('currency', d.currency, receipt.currency);
  compare('total', d.totalMinor, receipt.totalMinor);
  compare('cash due', d.cash.dueMinor, receipt.cashDueMinor);
  compare('tokens', debitsText(d.debits), debitsText(receipt.debits));
  return out;
}

function debitsText(debits: Record<string, number>): string {
  const parts = Object.keys(debits)
    .filter((t) => (debits[t] ?? 0) > 0)
    .sort()
    .map((t) => `${String(debits[t])} ${t}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}
