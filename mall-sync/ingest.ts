import { createPublicKey, sign as cryptoSign, verify as cryptoVerify, KeyObject } from 'node:crypto';
import { base64url } from 'jose';
import { z } from 'zod';
import {
  ACK_TYP,
  assert,
  BATCH_BYTES_MAX,
  BATCH_EVENTS_MAX,
  BATCH_TYP,
  batchPayloadSchema,
  fail,
  isMallposError,
  keyId,
  MallposError,
  parseCanonicalJson,
  sha256Hex,
  verifyBatchEvents,
  type AckPayload,
  type BatchPayload,
  type FlattenedJws,
  type VerifiedEvents,
} from '../core/index.ts';
import type { MallArchive } from './archive.ts';
import { clearedByAccount } from './clearing.ts';
import type { MallKeys } from './config.ts';
import type { BatchIngestedData, MallEvent, PublicJwk } from './events.ts';
import { batchIndexOf, batchIngestedData, judgeBatch, saleOutcomeIn, type SaleOutcome } from './judge.ts';
import { fromBase64url, utf8 } from './jws.ts';
import type { Observations } from './observations.ts';
import { own } from './store/dict.ts';
import type { KeyRecord } from './store/state.ts';
import type { MallStore } from './store/store.ts';

export interface IngestResult {
  /** The ack's exact JSON text (the same bytes on every replay). */
  ackText: string;
  ack: AckPayload;
  replayed: boolean;
}

export interface IngestHooks {
  onIngested?: (vendor: string, events: number, flagged: number) => void;
  onReplayed?: (vendor: string) => void;
  onAlarm?: (vendor: string, message: string) => void;
}

const jwsShape = z.strictObject({
  protected: z.string().min(1).max(4096),
  payload: z.string().min(1),
  signature: z.string().min(1).max(512),
});

const BASE64URL_STRICT = /^[A-Za-z0-9_-]*$/;

const protectedHeader = z.object({
  alg: z.string(),
  kid: z.string().min(1).max(128),
  typ: z.string().optional(),
  crit: z.unknown().optional(),
});

/** A flattened JWS as JSON text, when the request's own bytes are not at hand. */
function jwsText(jws: FlattenedJws): string {
  return JSON.stringify({ protected: jws.protected, payload: jws.payload, signature: jws.signature });
}

function malformed(message: string, details?: Record<string, unknown>): never {
  throw new MallposError('MALL_ERR_MALFORMED', message, details);
}

/**
 * The events of a batch checked before the store's exclusive section, against the
 * vendor's last event hash as this process knew it then: `result` or the typed `error`
 * verifyBatchEvents gave, and, when they passed, the batch judged and its ack signed.
 */
interface VerifiedAhead {
  fromSeq: number;
  prev: string;
  result: VerifiedEvents | null;
  error: MallposError | null;
  judged: Judged | null;
}

/** A batch judged and its ack signed, and what it was judged against. */
interface Judged {
  /** The store's judgingVersion() when it was judged. */
  version: string | null;
  /** The vendor's last batch then. */
  lastBatchHash: string;
  ack: AckPayload;
  signedAck: FlattenedJws;
  data: BatchIngestedData;
  flagged: number;
  alarms: string[];
}

/** Runs one task per vendor at a time; different vendors proceed in parallel. */
class PerVendorQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(vendor: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(vendor) ?? Promise.resolve();
    const next = previous.then(task, task);
    const tail = next.catch(() => undefined);
    this.tails.set(vendor, tail);
    void tail.then(() => {
      if (this.tails.get(vendor) === tail) this.tails.delete(vendor);
    });
    return next;
  }
}

/** The event count a canonical payload claims (`toSeq - fromSeq + 1`), read without parsing it; null when it cannot be read. */
export function claimedEventCount(payload: Buffer): number | null {
  // In canonical JSON the keys are sorted and a bare `,"key":` only occurs at the top level
  // (a quote inside a string is always escaped), so the last occurrence is the payload's own.
  const read = (key: string): number | null => {
    const at = payload.lastIndexOf(`,"${key}":`);
    if (at < 0) return null;
    const start = at + key.length + 4;
    const m = /^[0-9]{1,16}/.exec(payload.toString('latin1', start, start + 17));
    return m === null ? null : Number(m[0]);
  };
  const from = read('fromSeq');
  const to = read('toSeq');
  return from === null || to === null ? null : to - from + 1;
}

/**
 * Ingests vendor batches exactly once. The checks, in order (the first failure answers):
 *  1. JSON and JWS shape, protected header {alg: EdDSA, kid, typ: mallpos-batch+jws},
 *     payload bytes within BATCH_BYTES_MAX and the event count it claims within
 *     BATCH_EVENTS_MAX, before anything else is done with it ......... MALFORMED / TOO_LARGE
 *  2. the kid names a registered key, which names the vendor ........ KEY_UNKNOWN / KEY_REVOKED
 *  3. the Ed25519 signature over `protected.payload` ............................ SIGNATURE
 *  4. only now the payload is parsed: RFC 8785 canonical JSON (no byte order mark, no
 *     duplicate keys, numbers in shortest form), at most BATCH_EVENTS_MAX events, the
 *     schema, and the vendor it names is the key's ........ MALFORMED / TOO_LARGE / KEY_UNKNOWN
 *  5. by seq: a retired key signs only up to the seq at which it was retired
 *     (KEY_RETIRED); below the next expected seq, the same bytes are a replay (the
 *     stored ack, nothing recorded) and other bytes a fork (BATCH_FORK, a tamper alarm
 *     recorded); above it, BATCH_GAP {expectedSeq}; at it, prevBatchHash must be the last
 *     batch's hash (BATCH_CHAIN) and the events must continue the vendor's chain and
 *     match the totals (EVENT_CHAIN / TOTALS / MALFORMED).
 * Then each event is judged against the registry (judge.ts), the ack is signed, the batch
 * and its ack are archived, and the batch.ingested event is committed; the ack is
 * returned only once that is durable. A refused batch records nothing, except the alarm
 * of a fork.
 */
export class BatchIngestor {
  private readonly queue = new PerVendorQueue();
  /** Public keys by kid. A kid is its key's JWK thumbprint and is never reused, so an entry never goes stale; the key's status is read from the state on every batch. */
  private readonly keyCache = new Map<string, { x: string; key: KeyObject }>();
  /** The mall's signing key as a node KeyObject, made on the first ack. */
  private ackKey: KeyObject | null = null;

  constructor(
    private readonly store: MallStore,
    private readonly mallKeys: MallKeys,
    private readonly observations: Observations,
    private readonly archive: MallArchive,
    private readonly hooks: IngestHooks = {},
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private publicKey(kid: string, jwk: PublicJwk): KeyObject {
    const cached = this.keyCache.get(kid);
    if (cached !== undefined && cached.x === jwk.x) return cached.key;
    const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`key ${kid} is not an Ed25519 key`);
    this.keyCache.set(kid, { x: jwk.x, key });
    return key;
  }

  /**
   * Checks the Ed25519 signature of a flattened JWS whose protected header and payload are
   * already known to be base64url (so ASCII): the signing input is their bytes joined by a
   * dot (RFC 7515 section 5.2). The signature is decoded as jose decodes it. Runs on the
   * libuv thread pool, as WebCrypto does.
   */
  private verifySignature(jws: FlattenedJws, kid: string, jwk: PublicJwk): Promise<boolean> {
    const signature = BASE64URL_STRICT.test(jws.signature) && jws.signature.length % 4 !== 1 ? Buffer.from(jws.signature, 'base64url') : base64url.decode(jws.signature);
    const key = this.publicKey(kid, jwk);
    const headerLength = jws.protected.length;
    const input = Buffer.allocUnsafe(headerLength + 1 + jws.payload.length);
    input.write(jws.protected, 0, 'latin1');
    input[headerLength] = 0x2e;
    input.write(jws.payload, headerLength + 1, 'latin1');
    return new Promise((resolve, reject) => {
      cryptoVerify(null, input, key, signature, (err, ok) => {
        if (err !== null) reject(err);
        else resolve(ok);
      });
    });
  }

  /**
   * Ingests one batch. `raw`, when given, is the exact request body `body` was parsed
   * from: it is what the archive keeps.
   */
  async ingest(body: unknown, raw?: Buffer): Promise<IngestResult> {
    // 1. shape and size, before anything else is done with the payload
    const shape = jwsShape.safeParse(body);
    if (!shape.success) malformed('the body must be a flattened JWS: {"protected","payload","signature"} and nothing else');
    const jws = shape.data;
    const headerBytes = fromBase64url(jws.protected);
    const headerText = headerBytes === null ? null : utf8(headerBytes);
    let headerJson: unknown = null;
    try {
      headerJson = headerText === null ? null : JSON.parse(headerText);
    } catch {
      headerJson = null;
    }
    const header = protectedHeader.safeParse(headerJson);
    if (!header.success) malformed('the protected header must be base64url JSON with alg and kid');
    if (header.data.alg !== 'EdDSA') malformed(`the batch must be signed with alg EdDSA, not ${header.data.alg.slice(0, 20)}`);
    if (header.data.typ !== BATCH_TYP) malformed(`the protected header must say typ ${BATCH_TYP}`);
    if (header.data.crit !== undefined) malformed('the protected header must not carry crit');
    if (jws.payload.length > Math.ceil((BATCH_BYTES_MAX * 4) / 3) + 4) fail('MALL_ERR_TOO_LARGE', `a batch payload is at most ${BATCH_BYTES_MAX} bytes`);
    const payloadBytes = fromBase64url(jws.payload);
    if (payloadBytes === null) malformed('the payload is not base64url');
    if (payloadBytes.length > BATCH_BYTES_MAX) fail('MALL_ERR_TOO_LARGE', `a batch payload is at most ${BATCH_BYTES_MAX} bytes`);
    const claimedCount = claimedEventCount(payloadBytes);
    if (claimedCount !== null && claimedCount > BATCH_EVENTS_MAX) fail('MALL_ERR_TOO_LARGE', `a batch carries at most ${BATCH_EVENTS_MAX} events, this one says ${claimedCount}`);

    // 2. key, by kid alone: the key names the vendor
    const kid = header.data.kid;
    const validKid = keyId.safeParse(kid).success;
    let key = validKid ? own(this.store.state.keys, kid) : undefined;
    // A key registered through another mall process on the same database: catch up once.
    if (key === undefined && validKid && this.store.kind !== 'embedded') {
      await this.store.flushed();
      key = own(this.store.state.keys, kid);
    }
    if (key === undefined) fail('MALL_ERR_KEY_UNKNOWN', `the mall knows no key ${kid.slice(0, 64)}`, { kid: kid.slice(0, 64) });
    if (key.status === 'revoked') fail('MALL_ERR_KEY_REVOKED', `key ${kid} of ${key.vendor} was revoked at ${key.revokedAt ?? '?'}`, { kid });

    // 3. signature
    let verified = false;
    try {
      verified = await this.verifySignature(jws, kid, key.jwk);
    } catch {
      verified = false;
    }
    if (!verified) fail('MALL_ERR_SIGNATURE', `the batch signature does not verify with key ${kid}`, { kid });

    // 4. only a verified payload is parsed (the vendor is authenticated from here on)
    const vendorId = key.vendor;
    if (payloadBytes[0] === 0xef && payloadBytes[1] === 0xbb && payloadBytes[2] === 0xbf) {
      return this.refuse(vendorId, null, new MallposError('MALL_ERR_MALFORMED', 'the batch payload starts with a byte order mark: it must be RFC 8785 canonical JSON'));
    }
    const payloadText = utf8(payloadBytes);
    const claimed = payloadText === null ? null : parseCanonicalJson(payloadText);
    if (typeof claimed !== 'object' || claimed === null || Array.isArray(claimed)) {
      return this.refuse(vendorId, null, new MallposError('MALL_ERR_MALFORMED', 'the batch payload is not RFC 8785 canonical JSON (sorted keys, no whitespace, no duplicate keys, numbers in shortest form)'));
    }
    const events = (claimed as { events?: unknown }).events;
    if (Array.isArray(events) && events.length > BATCH_EVENTS_MAX) {
      return this.refuse(vendorId, null, new MallposError('MALL_ERR_TOO_LARGE', `a batch carries at most ${BATCH_EVENTS_MAX} events, this one has ${events.length}`));
    }
    const parsed = batchPayloadSchema.safeParse(claimed);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return this.refuse(vendorId, null, new MallposError('MALL_ERR_MALFORMED', `the batch payload is not valid: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim()));
    }
    const payload = parsed.data as BatchPayload;
    // A key of another vendor counts as unknown.
    if (payload.vendor !== vendorId) fail('MALL_ERR_KEY_UNKNOWN', `the mall knows no key ${kid} for vendor ${payload.vendor}`, { kid });

    // 5. in order, one batch of a vendor at a time
    const hash = sha256Hex(payloadBytes);
    return this.queue.run(payload.vendor, async () => {
      const ahead = await this.verifyAhead(payload, hash, kid);
      // A batch that is next and whose events verified is kept as sent before the section, where the archive can.
      const kept = ahead !== null && ahead.result !== null && (await this.archive.batchAhead(payload.vendor, payload.seq, hash, raw ?? jwsText(jws)));
      return this.store.exclusive(() => this.ingestInOrder(jws, raw, payload, hash, key, ahead, kept));
    });
  }

  /**
   * On a shared store the exclusive section is one lock for every mall process, so the
   * work that can be done before it is done before it, against the state as this process
   * knows it: hashing and parsing the batch's events against the vendor's last event hash,
   * then judging the batch and signing its ack (together most of the CPU of a batch). The
   * per-vendor queue has already let this vendor's earlier batches in this process finish,
   * so what they were done against is almost always still current. Inside the section
   * each is used only when it was computed from what the section sees: the events checked
   * from the very hash the vendor's chain ends on, the judgement made with the same last
   * batch of the vendor and the same judgingVersion() (no event since that may change how
   * the batch is judged: state.ts, changesJudging). That gives exactly what the section
   * would compute itself, which it does otherwise. A batch with a reversal is judged in
   * the section: judging it reads the earlier sale's batch from the store. The embedded
   * store's section is no lock, so it does all of this there, as before.
   */
  private async verifyAhead(payload: BatchPayload, hash: string, kid: string): Promise<VerifiedAhead | null> {
    if (this.store.judgingVersion() === null) return null;
    const v = own(this.store.state.vendors, payload.vendor);
    if (v === undefined || payload.seq !== v.lastSeq + 1 || payload.fromSeq !== v.lastEventSeq + 1) return null;
    const prev = v.lastEventHash;
    let result: VerifiedEvents;
    try {
      result = verifyBatchEvents(payload, prev);
    } catch (err) {
      // Anything but a typed refusal is checked again inside the section, where it surfaces as before.
      return isMallposError(err) ? { fromSeq: payload.fromSeq, prev, result: null, error: err, judged: null } : null;
    }
    let judged: Judged | null = null;
    if (payload.prevBatchHash === v.lastBatchHash && !result.events.some((e) => e.type === 'reversal')) {
      try {
        judged = await this.judgeAndSign(payload, hash, kid, result);
      } catch {
        // Judged again inside the section, where any failure surfaces as before.
        judged = null;
      }
    }
    return { fromSeq: payload.fromSeq, prev, result, error: null, judged };
  }

  /** Judges a batch whose events were verified, against the state as it is now, and signs its ack. */
  private async judgeAndSign(payload: BatchPayload, hash: string, kid: string, verified: VerifiedEvents): Promise<Judged> {
    const vendorId = payload.vendor;
    const ingestedAt = this.clock().toISOString();
    const earlierSales = await this.earlierSales(vendorId, verified.events, payload.fromSeq);
    const state = this.store.state;
    const vendor = own(state.vendors, vendorId);
    // The queue keeps this vendor's state still while we awaited; check it anyway.
    assert(vendor?.lastSeq === payload.seq - 1, `batch ${payload.seq} of ${vendorId} is still next`);
    const version = this.store.judgingVersion();
    const lastBatchHash = vendor.lastBatchHash;
    const judgement = judgeBatch({ vendor: vendorId, batchSeq: payload.seq, ingestedAt, events: verified.events, state, earlierSales });
    const registrySeq = state.registrySeq;
    const ack: AckPayload = {
      v: 1,
      vendor: vendorId,
      seq: payload.seq,
      batchHash: hash,
      lastEventSeq: payload.toSeq,
      lastEventHash: verified.lastHash,
      events: verified.events.length,
      flagged: judgement.flagged.map((f) => ({ eventSeq: f.eventSeq, reason: f.reason })),
      ingestedAt,
      registrySeq,
      cleared: clearedByAccount(judgement.clearing),
    };
    const signedAck = this.signAck(ack);
    const data = batchIngestedData(
      { vendor: vendorId, seq: payload.seq, hash, kid, fromSeq: payload.fromSeq, toSeq: payload.toSeq, createdAt: payload.createdAt, lastEventHash: verified.lastHash, ack: signedAck, registrySeq },
      judgement,
    );
    return {
      version, lastBatchHash, ack, signedAck, data,
      flagged: judgement.flagged.length,
      alarms: (judgement.instruments?.alarms ?? []).map((a) => a.message),
    };
  }

  /** Notes a refusal of an authenticated batch for reconcile, then throws it. */
  private async refuse(vendor: string, seq: number | null, err: MallposError): Promise<never> {
    const v = own(this.store.state.vendors, vendor);
    if (v !== undefined) await this.observations.note(vendor, err.code, seq ?? 0, v.lastSeq + 1).catch(() => undefined);
    throw err;
  }

  private async ingestInOrder(jws: FlattenedJws, raw: Buffer | undefined, payload: BatchPayload, hash: string, key: KeyRecord, ahead: VerifiedAhead | null, kept: boolean): Promise<IngestResult> {
    const vendor = own(this.store.state.vendors, payload.vendor);
    assert(vendor !== undefined, `vendor ${payload.vendor} registered`);
    const expectedSeq = vendor.lastSeq + 1;
    const kid = key.kid;
    // The key's status as it is now, after any batch of this vendor before this one.
    const current = own(this.store.state.keys, kid);
    if (current === undefined || current.status === 'revoked') fail('MALL_ERR_KEY_REVOKED', `key ${kid} of ${key.vendor} was revoked`, { kid });
    if (current.status === 'retired' && current.retiredAtSeq !== null && payload.seq > current.retiredAtSeq) {
      return this.refuse(vendor.id, payload.seq, new MallposError('MALL_ERR_KEY_RETIRED', `key ${kid} of ${vendor.id} was retired at batch ${current.retiredAtSeq}: batch ${payload.seq} must be signed with the vendor's active key`, { kid, retiredAtSeq: current.retiredAtSeq }));
    }

    if (payload.seq < expectedSeq) {
      const storedHash = vendor.batchHashes[payload.seq - 1];
      const mallSeq = vendor.batchMallSeqs[payload.seq - 1];
      assert(storedHash !== undefined && mallSeq !== undefined, `batch ${payload.seq} of ${vendor.id} is indexed`);
      if (storedHash === hash) {
        const event = await this.store.read(mallSeq);
        assert(event.type === 'batch.ingested' && event.data.vendor === vendor.id && event.data.seq === payload.seq, `mall event ${mallSeq} is batch ${payload.seq} of ${vendor.id}`);
        this.hooks.onReplayed?.(vendor.id);
        const ackText = JSON.stringify(event.data.ack);
        return { ackText, ack: this.ackPayloadOf(event.data.ack), replayed: true };
      }
      await this.recordFork(vendor.id, payload.seq, storedHash, hash, kid);
      await this.observations.note(vendor.id, 'MALL_ERR_BATCH_FORK', payload.seq, expectedSeq).catch(() => undefined);
      throw new MallposError('MALL_ERR_BATCH_FORK', `batch ${payload.seq} of ${vendor.id} was already ingested with other content: a tamper alarm was recorded`, {
        seq: payload.seq,
        storedHash,
        receivedHash: hash,
      });
    }
    if (payload.seq > expectedSeq) {
      return this.refuse(vendor.id, payload.seq, new MallposError('MALL_ERR_BATCH_GAP', `batch ${payload.seq} of ${vendor.id} came before batch ${expectedSeq}: send batch ${expectedSeq} first`, { expectedSeq }));
    }
    if (payload.prevBatchHash !== vendor.lastBatchHash) {
      return this.refuse(vendor.id, payload.seq, new MallposError('MALL_ERR_BATCH_CHAIN', `batch ${payload.seq} does not link to batch ${vendor.lastSeq}`, { expectedPrevBatchHash: vendor.lastBatchHash }));
    }
    if (payload.fromSeq !== vendor.lastEventSeq + 1) {
      return this.refuse(vendor.id, payload.seq, new MallposError('MALL_ERR_EVENT_CHAIN', `batch ${payload.seq} starts at event ${payload.fromSeq}, the mall expects event ${vendor.lastEventSeq + 1}`, { expectedFromSeq: vendor.lastEventSeq + 1 }));
    }
    let verified;
    try {
      if (ahead !== null && ahead.prev === vendor.lastEventHash && ahead.fromSeq === payload.fromSeq) {
        if (ahead.error !== null) throw ahead.error;
        verified = ahead.result as VerifiedEvents;
      } else {
        verified = verifyBatchEvents(payload, vendor.lastEventHash);
      }
    } catch (err) {
      if (isMallposError(err)) return this.refuse(vendor.id, payload.seq, err);
      throw err;
    }

    const early = ahead?.judged ?? null;
    const judged = early !== null && verified === ahead?.result && early.version === this.store.judgingVersion() && early.lastBatchHash === vendor.lastBatchHash
      ? early
      : await this.judgeAndSign(payload, hash, kid, verified);
    // The signed batch and the ack are kept as evidence before the mall commits to them.
    if (!kept) await this.archive.batch(vendor.id, payload.seq, raw ?? jwsText(jws), judged.signedAck);
    assert(this.store.state.vendors[payload.vendor]?.lastSeq === payload.seq - 1, `batch ${payload.seq} of ${payload.vendor} is still next after signing`);
    await this.store.commit({ type: 'batch.ingested', at: judged.ack.ingestedAt, data: judged.data });
    this.hooks.onIngested?.(vendor.id, verified.events.length, judged.flagged);
    // A double spend of a bearer instrument is reported as it is recorded.
    for (const message of judged.alarms) this.hooks.onAlarm?.(vendor.id, message);
    return { ackText: JSON.stringify(judged.signedAck), ack: judged.ack, replayed: false };
  }

  /**
   * Signs an ack as jws.ts's signJson does (a flattened JWS, protected header
   * {alg, kid, typ}, the payload the ack's JSON text) but synchronously, with node's
   * one-shot Ed25519: Ed25519 signatures are deterministic, so the bytes are the same.
   * It can run inside the store's exclusive section (a batch judged again there), which on
   * PostgreSQL holds the mall's write lock: an await on the thread pool there would let
   * this process's event loop serve other requests while every other worker waits for
   * the lock.
   */
  private signAck(ack: AckPayload): FlattenedJws {
    this.ackKey ??= KeyObject.from(this.mallKeys.privateKey);
    const protectedB64 = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: this.mallKeys.kid, typ: ACK_TYP })).toString('base64url');
    const payloadB64 = Buffer.from(JSON.stringify(ack)).toString('base64url');
    const signature = cryptoSign(null, Buffer.from(`${protectedB64}.${payloadB64}`, 'latin1'), this.ackKey);
    return { protected: protectedB64, payload: payloadB64, signature: signature.toString('base64url') };
  }

  private ackPayloadOf(jws: FlattenedJws): AckPayload {
    return JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as AckPayload;
  }

  /** How the earlier sales named by this batch's reversals ended, read from the batches that held them. */
  private async earlierSales(vendorId: string, events: readonly { type: string; data: unknown }[], fromSeq: number): Promise<Map<number, SaleOutcome>> {
    const out = new Map<number, SaleOutcome>();
    const v = own(this.store.state.vendors, vendorId);
    assert(v !== undefined, `vendor ${vendorId} registered`);
    const read = new Map<number, MallEvent>();
    for (const e of events) {
      if (e.type !== 'reversal') continue;
      const saleSeq = (e.data as { saleSeq?: unknown } | null)?.saleSeq;
      if (typeof saleSeq !== 'number' || !Number.isSafeInteger(saleSeq) || saleSeq < 1 || saleSeq >= fromSeq || out.has(saleSeq)) continue;
      const k = batchIndexOf(v.batchFromSeqs, saleSeq);
      const mallSeq = v.batchMallSeqs[k];
      if (k < 0 || mallSeq === undefined) continue;
      let event = read.get(mallSeq);
      if (event === undefined) {
        event = await this.store.read(mallSeq);
        read.set(mallSeq, event);
      }
      assert(event.type === 'batch.ingested' && event.data.vendor === vendorId, `mall event ${mallSeq} is a batch of ${vendorId}`);
      out.set(saleSeq, saleOutcomeIn(event.data, saleSeq));
    }
    return out;
  }

  private async recordFork(vendor: string, batchSeq: number, storedHash: string, receivedHash: string, kid: string): Promise<void> {
    // A pusher retrying the same forged batch raises one alarm, not one per retry.
    const seen = this.store.state.alarms.some((a) => a.vendor === vendor && a.batchSeq === batchSeq && a.receivedHash === receivedHash);
    if (seen) return;
    const message = `vendor ${vendor} sent a different batch ${batchSeq} (sha256 ${receivedHash.slice(0, 12)}...) than the one ingested (sha256 ${storedHash.slice(0, 12)}...), signed with key ${kid}`;
    await this.store.commit({
      type: 'alarm.recorded',
      at: this.clock().toISOString(),
      data: { id: `alarm-${String(this.store.state.alarmSerial + 1).padStart(6, '0')}`, kind: 'fork', vendor, batchSeq, storedHash, receivedHash, kid, message },
    });
    this.hooks.onAlarm?.(vendor, message);
  }
}
