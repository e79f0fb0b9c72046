import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { z } from 'zod';
import { fail } from './errors.ts';
import { entityId, strictRecord, tokenCode } from './schemas.ts';
import type { JournalEvent } from './events.ts';
import type { InstrumentDirectory } from './instruments.ts';
import type { TokenType } from './token-types.ts';

/**
 * The vendor -> mall batch format. A batch is a JWS (RFC 7515) in flattened JSON
 * serialisation, alg EdDSA over Ed25519 (RFC 8037), with the vendor key's `kid` in the
 * protected header and `typ: "mallpos-batch+jws"`. Its payload is the JSON below:
 * the events exactly as journalled (their text), so the mall recomputes each event's
 * hash from the same bytes the vendor hashed.
 *
 * Chains: `prevBatchHash` is the `hash` of the vendor's previous batch (64 zeros for
 * batch 1), and the first event's `prev` is the hash of the last event of the previous
 * batch. A batch's hash is the sha256 hex of its payload bytes (the base64url-decoded
 * JWS payload).
 */
export const BATCH_VERSION = 1;
export const BATCH_TYP = 'mallpos-batch+jws';
export const ACK_TYP = 'mallpos-ack+jws';
export const SNAPSHOT_TYP = 'mallpos-snapshot+jws';
export const STATEMENT_TYP = 'mallpos-statement+jws';
export const ZERO_HASH = '0'.repeat(64);

export const BATCH_EVENTS_MAX = 2_000;
export const BATCH_BYTES_MAX = 4 * 1024 * 1024;

export interface TokenTotals {
  /** Sum of the positive posting units in this token over the batch. */
  units: number;
  /** Number of events with a posting in this token. */
  events: number;
}

export interface BatchPayload {
  v: typeof BATCH_VERSION;
  vendor: string;
  seq: number;
  prevBatchHash: string;
  fromSeq: number;
  toSeq: number;
  createdAt: string;
  /** Per token type totals, recomputed and compared by the mall. */
  totals: Record<string, TokenTotals>;
  /** The journal events' exact text, in seq order. */
  events: string[];
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const batchPayloadSchema = z.strictObject({
  v: z.literal(BATCH_VERSION),
  vendor: entityId,
  seq,
  prevBatchHash: hex64,
  fromSeq: seq,
  toSeq: seq,
  createdAt: z.iso.datetime({ offset: true }),
  totals: strictRecord(tokenCode, z.strictObject({ units: z.number().int().min(0), events: z.number().int().min(0) })),
  events: z.array(z.string().min(2).max(1024 * 1024)).min(1).max(BATCH_EVENTS_MAX),
});

export const flattenedJwsSchema = z.strictObject({
  protected: z.string().min(1).max(4096),
  payload: z.string().min(1).max(BATCH_BYTES_MAX * 2),
  signature: z.string().min(1).max(512),
  header: z.record(z.string(), z.unknown()).optional(),
});

export type FlattenedJws = z.output<typeof flattenedJwsSchema>;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The payload text of a batch: its RFC 8785 canonical JSON (keys sorted, no whitespace,
 * numbers in their shortest form). The mall refuses any other text, so that every JSON
 * parser reads the signed bytes the same way (no duplicate keys, no byte order mark).
 */
export function batchPayloadText(payload: BatchPayload): string {
  const text = canonicalize(payload);
  if (text === undefined) throw new Error('assertion failed: a batch payload canonicalizes');
  return text;
}

/** The value of a JSON text that is RFC 8785 canonical; null for any other text. */
export function parseCanonicalJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
    return canonicalize(value) === text ? value : null;
  } catch {
    return null;
  }
}

/** The totals both sides compute from the events' postings (a null-prototype map: token codes come from outside). */
export function batchTotals(events: readonly Pick<JournalEvent, 'postings'>[]): Record<string, TokenTotals> {
  const totals = Object.create(null) as Record<string, TokenTotals>;
  for (const e of events) {
    const touched = new Set<string>();
    for (const p of e.postings) {
      const t = (Object.hasOwn(totals, p.token) ? totals[p.token] : undefined) ?? (totals[p.token] = { units: 0, events: 0 });
      if (p.units > 0) t.units += p.units;
      touched.add(p.token);
    }
    for (const token of touched) (totals[token] as TokenTotals).events += 1;
  }
  return totals;
}

export interface VerifiedEvents {
  events: JournalEvent[];
  hashes: string[];
  lastHash: string;
}

/**
 * Checks the events of a batch: each hash recomputed from its text, seqs contiguous from
 * `fromSeq` to `toSeq`, each `prev` linking to the previous hash (the first to
 * `expectedPrev`), every event of `vendor`, and the totals. Any failure is a typed
 * MALL_ERR_* error naming the event.
 */
export function verifyBatchEvents(payload: BatchPayload, expectedPrev: string | null): VerifiedEvents {
  if (payload.toSeq - payload.fromSeq + 1 !== payload.events.length) {
    fail('MALL_ERR_EVENT_CHAIN', `the batch says events ${payload.fromSeq}-${payload.toSeq} but holds ${payload.events.length}`);
  }
  const events: JournalEvent[] = [];
  const hashes: string[] = [];
  let prev = expectedPrev;
  for (const [i, text] of payload.events.entries()) {
    const hash = sha256Hex(text);
    let e: JournalEvent;
    try {
      e = JSON.parse(text) as JournalEvent;
    } catch {
      fail('MALL_ERR_MALFORMED', `event ${i + 1} of the batch is not JSON`);
    }
    if (typeof e !== 'object' || e === null || e.seq !== payload.fromSeq + i) {
      fail('MALL_ERR_EVENT_CHAIN', `event ${i + 1} of the batch has seq ${String((e as { seq?: unknown } | null)?.seq)}, expected ${payload.fromSeq + i}`, { eventSeq: payload.fromSeq + i });
    }
    if (prev !== null && e.prev !== prev) {
      fail('MALL_ERR_EVENT_CHAIN', `event ${e.seq} does not link to the previous event's hash`, { eventSeq: e.seq });
    }
    if (e.vendor !== payload.vendor) fail('MALL_ERR_EVENT_CHAIN', `event ${e.seq} belongs to vendor ${String(e.vendor)}`, { eventSeq: e.seq });
    if (!Array.isArray(e.postings)) fail('MALL_ERR_MALFORMED', `event ${e.seq} has no postings list`, { eventSeq: e.seq });
    for (const p of e.postings) {
      if (typeof p?.token !== 'string' || !Number.isSafeInteger(p?.units)) fail('MALL_ERR_MALFORMED', `event ${e.seq} has a malformed posting`, { eventSeq: e.seq });
    }
    events.push(e);
    hashes.push(hash);
    prev = hash;
  }
  const totals = batchTotals(events);
  // Compared field by field, so the key order of a parsed payload cannot matter.
  const flat = (t: Readonly<Record<string, { units: number; events: number }>>) =>
    Object.entries(t)
      .map(([token, v]) => `${token}:${v.units}:${v.events}`)
      .sort()
      .join(',');
  if (flat(totals) !== flat(payload.totals)) fail('MALL_ERR_TOTALS', 'the batch totals do not match its events');
  return { events, hashes, lastHash: prev ?? ZERO_HASH };
}

// ---- what the mall signs back -----------------------------------------------------------

export interface FlaggedEvent {
  eventSeq: number;
  reason: string;
}

export interface AckPayload {
  v: 1;
  vendor: string;
  seq: number;
  batchHash: string;
  lastEventSeq: number;
  lastEventHash: string;
  events: number;
  flagged: FlaggedEvent[];
  /** When the batch arrived: the mall judges event times against it. */
  ingestedAt: string;
  /** How many registry events (token types, fees, allotments, keys, ...) the batch was judged against. */
  registrySeq: number;
  /** What the batch cleared: the change of each clearing account's position, in minor units (accounts sorted). */
  cleared: Record<string, number>;
}

export interface FeeSchedule {
  /** Royalty on the fiat value of every redemption, in basis points. */
  royaltyBps: number;
  /** Overrides by vendor id and by token type code (vendor wins over token type). */
  royaltyBpsByVendor: Record<string, number>;
  royaltyBpsByToken: Record<string, number>;
  /** Toll charged to the issuer each time it reimburses another vendor, in minor units. */
  reimbursementTollMinor: number;
  /** Toll charged to a vendor that asks for another vendor's customer data, in minor units. */
  customerDataTollMinor: number;
  /** Service charge on exchanging tokens of one issuer for another's, in basis points. */
  exchangeServiceBps: number;
}

export interface SnapshotKey {
  kid: string;
  jwk: Record<string, unknown>;
  status: 'active' | 'retired' | 'revoked';
  revokedAt: string | null;
}

export interface SnapshotAllotment {
  id: string;
  vendor: string;
  token: string;
  units: number;
  issuedAt: string;
  reference: string;
}

/** The mall's signed registry for one vendor, cached for offline use. */
export interface SnapshotPayload {
  v: 1;
  vendor: string;
  issuedAt: string;
  mall: { kid: string; jwk: Record<string, unknown> };
  tokenTypes: TokenType[];
  fees: FeeSchedule;
  vendors: { id: string; name: string; keys: SnapshotKey[] }[];
  allotments: SnapshotAllotment[];
  /**
   * Who may sign gift certificates and coupons, and what a store may accept offline
   * (core/instruments.ts). Absent from snapshots of malls before instruments: a store
   * then accepts none.
   */
  instruments?: InstrumentDirectory;
}
