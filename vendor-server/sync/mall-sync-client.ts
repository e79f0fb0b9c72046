import { appendFile, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FlattenedSign, flattenedVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import {
  ACK_TYP,
  BATCH_EVENTS_MAX,
  BATCH_TYP,
  BATCH_VERSION,
  batchPayloadText,
  batchTotals,
  fail,
  MallposError,
  SNAPSHOT_TYP,
  STATEMENT_TYP,
  sha256Hex,
  ZERO_HASH,
  type AckPayload,
  type BatchPayload,
  type FlattenedJws,
  type JournalEvent,
  type SnapshotPayload,
} from '../../core/index.ts';
import type { VendorKeys } from '../config.ts';
import type { LedgerService } from '../ledger/service.ts';
import type { Logger } from '../../platform/logger.ts';
import { DurableJSONFile, writeFileDurable } from '../../platform/storage/index.ts';
import { ed25519Thumbprint, type PublicSigningJwk } from '../../platform/key-files.ts';
import { isCertificateError, isSelfSignedAuthority, keepAliveAgent, tlsRequest, type TlsResponse } from '../../platform/tls.ts';
import { vendorJwt } from './mall-requests.ts';

export interface SyncOptions {
  mallUrl: string;
  /** The mall's signing key, pinned at link time: nothing the mall signs is believed without it. */
  mallJwk: JWK;
  /** The mall's TLS certificate authority (PEM), pinned at link time: the only one trusted. */
  mallCaPem: string;
  batchEventsMax: number;
  batchBytesMax: number;
  batchAgeMs: number;
  snapshotMaxAgeHours: number;
  snapshotEveryMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  requestTimeoutMs: number;
}

export const SYNC_DEFAULTS: Omit<SyncOptions, 'mallUrl' | 'mallJwk' | 'mallCaPem'> = {
  batchEventsMax: 500,
  batchBytesMax: 1024 * 1024,
  batchAgeMs: 1_000,
  snapshotMaxAgeHours: 72,
  snapshotEveryMs: 60_000,
  backoffBaseMs: 500,
  backoffMaxMs: 60_000,
  requestTimeoutMs: 10_000,
};

/** What the vendor knows of its sync with the mall; persisted durably after every ack. */
export interface SyncCursor {
  batchSeq: number;
  batchHash: string;
  eventSeq: number;
  eventHash: string;
  lastAckAt: string | null;
  mallJwk: JWK | null;
}

interface PendingBatch {
  seq: number;
  hash: string;
  fromSeq: number;
  toSeq: number;
  lastEventHash: string;
  jws: FlattenedJws;
}

export interface SyncStatus {
  configured: boolean;
  mallUrl: string | null;
  eventsWaiting: number;
  oldestWaitingAt: string | null;
  oldestWaitingAgeS: number | null;
  lastAckSeq: number;
  lastAckAt: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  retryInMs: number | null;
  snapshotIssuedAt: string | null;
  snapshotAgeS: number | null;
  snapshotStale: boolean;
  flaggedEvents: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/**
 * The vendor's outbox to the mall. It cuts the durable journal into batches (bounded by
 * events, bytes and age), signs each as a flattened JWS with the vendor key, writes it
 * to disk before the first send (a resend after a crash is then byte-identical, so the
 * mall sees a replay, never a fork), pushes it with exponential backoff and full
 * jitter, verifies and stores the mall's signed ack, and advances a durable cursor.
 * It also pulls the mall's signed snapshot, caches it, records new allotments into the
 * float exactly once, and says when the cached snapshot is too old to rely on.
 */
export class MallSync {
  private cursor: SyncCursor;
  private pending: PendingBatch | null = null;
  private snapshot: SnapshotPayload | null = null;
  private mallKey: CryptoKey | null = null;
  private lastError: { message: string; at: string } | null = null;
  private retryAt: number | null = null;
  private failures = 0;
  private flagged = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** The connections to the mall, kept open between batches, cursors and snapshots. */
  private readonly agent = keepAliveAgent();
  private stopped = false;
  /** Why shipping to the mall was stopped (the ledger on disk failed its integrity check), or null. */
  private halted: string | null = null;
  private lastSnapshotPull = 0;
  /** Set when an event must reach the mall at once (a move into the wallet): the next cut does not wait for more. */
  private urgent = false;
  private oldest: { seq: number; at: string } | null = null;
  private readonly cursorFile: DurableJSONFile<SyncCursor>;

  private constructor(
    private readonly dir: string,
    private readonly opts: SyncOptions,
    private readonly ledger: LedgerService,
    private readonly keys: VendorKeys,
    private readonly logger: Logger,
    cursor: SyncCursor,
  ) {
    this.cursor = cursor;
    this.cursorFile = new DurableJSONFile<SyncCursor>(join(dir, 'cursor.json'));
  }

  static async open(dataDir: string, opts: SyncOptions, ledger: LedgerService, keys: VendorKeys, logger: Logger): Promise<MallSync> {
    const dir = join(dataDir, 'sync');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const cursor = (await new DurableJSONFile<SyncCursor>(join(dir, 'cursor.json')).read()) ?? {
      batchSeq: 0,
      batchHash: ZERO_HASH,
      eventSeq: 0,
      eventHash: ZERO_HASH,
      lastAckAt: null,
      mallJwk: null,
    };
    const sync = new MallSync(dir, opts, ledger, keys, logger, cursor);
    const pendingText = await readFile(join(dir, 'pending-batch.json'), 'utf8').catch(() => null);
    if (pendingText !== null) sync.pending = JSON.parse(pendingText) as PendingBatch;
    const snapText = await readFile(join(dir, 'snapshot.json'), 'utf8').catch(() => null);
    if (snapText !== null) sync.snapshot = (JSON.parse(snapText) as { payload: SnapshotPayload }).payload;
    return sync;
  }

  start(tickMs = 200): void {
    this.timer = setInterval(() => void this.tick(), tickMs);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    await this.running;
    this.agent.destroy();
  }

  /**
   * Stops shipping batches to the mall for the rest of the process's life: a ledger
   * whose history failed its integrity check must not be claimed to the mall.
   */
  halt(reason: string): void {
    this.halted = reason;
    this.lastError = { message: `shipping to the mall stopped: ${reason}`, at: new Date().toISOString() };
  }

  /** Why shipping was stopped, or null while it runs. */
  get haltedReason(): string | null {
    return this.halted;
  }

  /** One round: pull the snapshot when due, then push whatever is waiting. */
  tick(): Promise<void> {
    if (this.running !== null || this.stopped) return this.running ?? Promise.resolve();
    this.running = this.round()
      .catch((err: unknown) => this.noteError(err))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  /** Pushes until nothing is waiting (or an error); used by tests and at shutdown. */
  async drain(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      this.retryAt = null;
      await this.tick();
      if (this.pending === null && this.ledger.journal.durableSeq <= this.cursor.eventSeq) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  private async round(): Promise<void> {
    if (Date.now() - this.lastSnapshotPull >= this.opts.snapshotEveryMs) {
      this.lastSnapshotPull = Date.now();
      await this.pullSnapshot().catch((err: unknown) => this.noteError(err));
    }
    if (this.halted !== null) return;
    if (this.retryAt !== null && Date.now() < this.retryAt) return;
    for (let i = 0; i < 100 && !this.stopped; i++) {
      if (this.pending === null && !(await this.cut())) return;
      await this.push();
    }
  }

  private noteError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.lastError = { message, at: new Date().toISOString() };
    this.failures += 1;
    // Full jitter: a random wait up to the exponential bound, so many stores do not retry in step.
    const bound = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** Math.min(this.failures, 20));
    this.retryAt = Date.now() + Math.floor(Math.random() * bound);
    this.logger.warn({ err: message, retryInMs: this.retryAt - Date.now() }, 'mall sync failed; will retry');
  }

  private async fetchJson(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<unknown> {
    let res: TlsResponse;
    try {
      res = await tlsRequest(`${this.opts.mallUrl}${path}`, { ...init, ca: this.opts.mallCaPem, timeoutMs: this.opts.requestTimeoutMs, agent: this.agent });
    } catch (err) {
      const what = isCertificateError(err) ? 'the mall does not present the certificate it was linked with' : 'the mall is unreachable';
      throw new HttpError(0, 'NETWORK', `${what}: ${(err as Error).message}`);
    }
    let body: { error?: { code: string; message: string; details?: Record<string, unknown> } } | null = null;
    try {
      body = res.json();
    } catch {
      body = null;
    }
    if (!res.ok) {
      throw new HttpError(res.status, body?.error?.code ?? `HTTP_${res.status}`, `the mall refused: ${body?.error?.message ?? `HTTP ${res.status}`} [${body?.error?.code ?? res.status}]`, body?.error?.details);
    }
    return body;
  }

  private async key(): Promise<CryptoKey> {
    if (this.mallKey !== null) return this.mallKey;
    this.mallKey = (await importJWK(this.opts.mallJwk, 'EdDSA')) as CryptoKey;
    return this.mallKey;
  }

  /** Verifies a document signed by the mall and returns its payload. */
  async verifyMall<T>(jws: FlattenedJws, typ: string): Promise<T> {
    const { payload, protectedHeader } = await flattenedVerify(jws, await this.key(), { algorithms: ['EdDSA'] }).catch(() => {
      throw new MallposError('VND_ERR_MALL_SIGNATURE', 'a document from the mall does not carry a valid mall signature');
    });
    if (protectedHeader?.typ !== typ) throw new MallposError('VND_ERR_MALL_SIGNATURE', `expected a ${typ} from the mall`);
    return JSON.parse(new TextDecoder().decode(payload)) as T;
  }

  /**
   * The time of the oldest waiting event. Every tick and every status asks for it, and it
   * changes only when a batch is acknowledged, so it is read from the journal once per seq.
   */
  private async eventTime(seq: number): Promise<string> {
    if (this.oldest?.seq !== seq) {
      const at = (JSON.parse((await this.ledger.journal.read(seq)).text) as JournalEvent).at;
      this.oldest = { seq, at };
    }
    return this.oldest.at;
  }

  /** Cuts the next batch from durable events, when enough have waited long enough. */
  private async cut(): Promise<boolean> {
    const journal = this.ledger.journal;
    const from = this.cursor.eventSeq + 1;
    const durable = journal.durableSeq;
    if (from > durable) return false;
    const waiting = durable - from + 1;
    if (waiting < this.opts.batchEventsMax && !this.urgent) {
      if (Date.now() - Date.parse(await this.eventTime(from)) < this.opts.batchAgeMs) return false;
    }
    this.urgent = false;
    const texts: string[] = [];
    const events: JournalEvent[] = [];
    let bytes = 0;
    let lastHash = this.cursor.eventHash;
    const to = Math.min(durable, from + Math.min(this.opts.batchEventsMax, BATCH_EVENTS_MAX) - 1);
    for await (const rec of journal.iterate(from, to)) {
      if (texts.length > 0 && bytes + rec.text.length > this.opts.batchBytesMax) break;
      texts.push(rec.text);
      events.push(JSON.parse(rec.text) as JournalEvent);
      bytes += rec.text.length;
      lastHash = rec.hash;
    }
    const payload: BatchPayload = {
      v: BATCH_VERSION,
      vendor: this.ledger.store.vendorId,
      seq: this.cursor.batchSeq + 1,
      prevBatchHash: this.cursor.batchHash,
      fromSeq: from,
      toSeq: from + texts.length - 1,
      createdAt: new Date().toISOString(),
      totals: batchTotals(events),
      events: texts,
    };
    // RFC 8785 canonical JSON: the only payload text the mall accepts.
    const bytesOut = new TextEncoder().encode(batchPayloadText(payload));
    const jws = (await new FlattenedSign(bytesOut)
      .setProtectedHeader({ alg: 'EdDSA', kid: this.keys.kid, typ: BATCH_TYP })
      .sign(this.keys.privateKey)) as FlattenedJws;
    const pending: PendingBatch = { seq: payload.seq, hash: sha256Hex(bytesOut), fromSeq: payload.fromSeq, toSeq: payload.toSeq, lastEventHash: lastHash, jws };
    // On disk before the first send: a resend after a crash must be the same bytes.
    await writeFileDurable(join(this.dir, 'pending-batch.json'), JSON.stringify(pending));
    this.pending = pending;
    return true;
  }

  private async push(): Promise<void> {
    const pending = this.pending;
    if (pending === null) return;
    let body: { ack: FlattenedJws; replayed: boolean };
    try {
      body = (await this.fetchJson('/v1/batches', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(pending.jws),
      })) as { ack: FlattenedJws; replayed: boolean };
    } catch (err) {
      if (err instanceof HttpError && err.code === 'MALL_ERR_BATCH_GAP') {
        this.logger.error({ expected: err.details?.['expectedSeq'], sent: pending.seq }, 'the mall expects another batch seq: the mall and this store disagree on what was synced');
      }
      throw err;
    }
    const ack = await this.verifyMall<AckPayload>(body.ack, ACK_TYP);
    if (ack.vendor !== this.ledger.store.vendorId || ack.seq !== pending.seq || ack.batchHash !== pending.hash) {
      fail('VND_ERR_MALL_SIGNATURE', `the mall's ack does not match batch ${pending.seq}`);
    }
    await this.storeAck(body.ack, ack);
    this.flagged += ack.flagged.length;
    if (ack.flagged.length > 0) this.logger.warn({ batch: ack.seq, flagged: ack.flagged }, 'the mall flagged events of this batch');
    this.cursor = {
      ...this.cursor,
      batchSeq: pending.seq,
      batchHash: pending.hash,
      eventSeq: pending.toSeq,
      eventHash: pending.lastEventHash,
      lastAckAt: ack.ingestedAt,
    };
    await this.cursorFile.write(this.cursor);
    await rm(join(this.dir, 'pending-batch.json'), { force: true });
    this.pending = null;
    this.failures = 0;
    this.retryAt = null;
    this.lastError = null;
  }

  private async storeAck(jws: FlattenedJws, ack: AckPayload): Promise<void> {
    const file = join(this.dir, 'acks.jsonl');
    await appendFile(file, `${JSON.stringify({ seq: ack.seq, ack: jws })}\n`, { mode: 0o600 });
    const handle = await open(file, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Pulls, verifies and caches the mall's snapshot, then records new allotments once each. */
  async pullSnapshot(): Promise<SnapshotPayload> {
    // The mall gives a snapshot only to its vendor: the request is signed with the vendor key.
    const body = (await this.fetchJson(`/v1/vendors/${this.ledger.store.vendorId}/snapshot`, { headers: await this.vendorRequestHeaders() })) as { snapshot: FlattenedJws };
    const snapshot = await this.verifyMall<SnapshotPayload>(body.snapshot, SNAPSHOT_TYP);
    if (snapshot.vendor !== this.ledger.store.vendorId) fail('VND_ERR_MALL_SIGNATURE', 'the snapshot is for another vendor');
    await writeFileDurable(join(this.dir, 'snapshot.json'), JSON.stringify({ jws: body.snapshot, payload: snapshot }));
    this.snapshot = snapshot;
    await this.applySnapshot(snapshot);
    return snapshot;
  }

  private async applySnapshot(snapshot: SnapshotPayload): Promise<void> {
    const op = { terminal: null, cashier: null };
    for (const tt of snapshot.tokenTypes) {
      const mine = this.ledger.state.tokenTypes[tt.code];
      if (mine === undefined || JSON.stringify(mine) !== JSON.stringify(tt)) await this.ledger.upsertTokenType(op, tt);
    }
    for (const a of snapshot.allotments) {
      if (a.vendor !== this.ledger.store.vendorId) continue;
      // The allotment id is the idempotency key: recorded into the float exactly once.
      await this.ledger.recordAllotment(op, `mall:${a.id}`, { token: a.token, units: a.units, reference: a.id });
    }
  }

  /** The cached mall snapshot (face values, fee schedule), or null before the first pull. */
  cachedSnapshot(): SnapshotPayload | null {
    return this.snapshot;
  }

  /** The seq of the last journal event the mall has acknowledged. */
  get ackedEventSeq(): number {
    return this.cursor.eventSeq;
  }

  /** Cuts and pushes a batch of whatever is durable now, without waiting for the batch to fill or age. */
  pushSoon(): void {
    this.urgent = true;
    this.retryAt = null;
    void this.tick();
  }

  /** Refuses tokens that depend on the mall's registry when the cached snapshot is too old. */
  checkRegistryFresh(token: string, now = new Date()): void {
    const tt = this.ledger.state.tokenTypes[token];
    if (tt === undefined || tt.issuer === this.ledger.store.vendorId) return;
    if (this.snapshotStale(now)) {
      fail(
        'VND_ERR_SNAPSHOT_STALE',
        `${token} tokens cannot be taken now: the store has not heard from the mall for more than ${this.opts.snapshotMaxAgeHours} hours`,
        { token },
      );
    }
  }

  snapshotStale(now = new Date()): boolean {
    if (this.snapshot === null) return true;
    return now.getTime() - Date.parse(this.snapshot.issuedAt) > this.opts.snapshotMaxAgeHours * 3_600_000;
  }

  /** A short-lived JWT signed with the vendor key: the mall gives a vendor's snapshot, cursor and statements only to it. */
  private async vendorRequestHeaders(): Promise<Record<string, string>> {
    return { authorization: `Bearer ${await vendorJwt(this.keys, this.ledger.store.vendorId, '5m')}` };
  }

  async fetchStatement(from: string, to: string): Promise<unknown> {
    const body = (await this.fetchJson(`/v1/vendors/${this.ledger.store.vendorId}/statements?from=${from}&to=${to}`, {
      headers: await this.vendorRequestHeaders(),
    })) as { statement: FlattenedJws };
    return this.verifyMall(body.statement, STATEMENT_TYP);
  }

  async status(now = new Date()): Promise<SyncStatus> {
    const journal = this.ledger.journal;
    const waiting = Math.max(0, journal.lastSeq - this.cursor.eventSeq);
    let oldestAt: string | null = null;
    if (waiting > 0 && this.cursor.eventSeq + 1 <= journal.durableSeq) {
      oldestAt = await this.eventTime(this.cursor.eventSeq + 1);
    }
    return {
      configured: true,
      mallUrl: this.opts.mallUrl,
      eventsWaiting: waiting,
      oldestWaitingAt: oldestAt,
      oldestWaitingAgeS: oldestAt === null ? null : Math.max(0, Math.round((now.getTime() - Date.parse(oldestAt)) / 1000)),
      lastAckSeq: this.cursor.batchSeq,
      lastAckAt: this.cursor.lastAckAt,
      lastError: this.lastError?.message ?? null,
      lastErrorAt: this.lastError?.at ?? null,
      retryInMs: this.retryAt === null ? null : Math.max(0, this.retryAt - now.getTime()),
      snapshotIssuedAt: this.snapshot?.issuedAt ?? null,
      snapshotAgeS: this.snapshot === null ? null : Math.round((now.getTime() - Date.parse(this.snapshot.issuedAt)) / 1000),
      snapshotStale: this.snapshotStale(now),
      flaggedEvents: this.flagged,
    };
  }
}

export function unconfiguredStatus(journalLastSeq: number): SyncStatus {
  return {
    configured: false,
    mallUrl: null,
    eventsWaiting: journalLastSeq,
    oldestWaitingAt: null,
    oldestWaitingAgeS: null,
    lastAckSeq: 0,
    lastAckAt: null,
    lastError: null,
    lastErrorAt: null,
    retryInMs: null,
    snapshotIssuedAt: null,
    snapshotAgeS: null,
    snapshotStale: false,
    flaggedEvents: 0,
  };
}

export interface LinkMallInput {
  url: string;
  /** The mall's certificate authority (PEM), from the mall's operator. */
  caPem: string;
  /** The mall's public key (JWK), or only its RFC 7638 thumbprint; one of the two. */
  jwk?: Record<string, unknown> | undefined;
  thumbprint?: string | undefined;
  timeoutMs?: number;
}

/**
 * Checks a mall before a store links to it: it must present a certificate from the given
 * authority, and serve exactly the given key (or a key with the given thumbprint). No
 * trust on first use: a wrong key or certificate is VND_ERR_MALL_IDENTITY and nothing
 * is linked. Returns the public key to pin.
 */
export async function checkMallIdentity(input: LinkMallInput): Promise<{ jwk: PublicSigningJwk; kid: string }> {
  const url = input.url.replace(/\/+$/, '');
  if (!url.startsWith('https://')) fail('VND_ERR_CONFIG', `the mall is reached over TLS: ${url} is not an https:// address`);
  if (!isSelfSignedAuthority(input.caPem)) fail('VND_ERR_CONFIG', 'the mall certificate authority given is not a certificate authority (PEM)');
  let expected: string;
  if (input.jwk !== undefined) {
    const x = input.jwk['x'];
    if (input.jwk['kty'] !== 'OKP' || input.jwk['crv'] !== 'Ed25519' || typeof x !== 'string' || 'd' in input.jwk) fail('VND_ERR_CONFIG', 'the mall key given is not an Ed25519 public key (JWK)');
    expected = await ed25519Thumbprint(x);
  } else if (input.thumbprint !== undefined) {
    expected = input.thumbprint.trim();
  } else {
    return fail('VND_ERR_CONFIG', 'give the mall\'s key: a JWK file or its thumbprint');
  }
  let res: TlsResponse;
  try {
    res = await tlsRequest(`${url}/v1/mall-key`, { ca: input.caPem, timeoutMs: input.timeoutMs ?? 10_000, bodyBytesMax: 64 * 1024 });
  } catch (err) {
    if (isCertificateError(err)) fail('VND_ERR_MALL_IDENTITY', `the server at ${url} does not present a certificate from the given mall authority: ${(err as Error).message}`);
    return fail('VND_ERR_MALL_UNREACHABLE', `cannot reach the mall at ${url}: ${(err as Error).message}`);
  }
  let served: { jwk?: { kty?: unknown; crv?: unknown; x?: unknown } } = {};
  try {
    served = res.json();
  } catch {
    served = {};
  }
  const x = served.jwk?.x;
  if (!res.ok || served.jwk?.kty !== 'OKP' || served.jwk.crv !== 'Ed25519' || typeof x !== 'string') fail('VND_ERR_MALL_IDENTITY', `${url} did not answer with a mall key`);
  const kid = await ed25519Thumbprint(x);
  if (kid !== expected) fail('VND_ERR_MALL_IDENTITY', `the mall at ${url} serves key ${kid}, not the key ${expected} it was given`);
  return { jwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' }, kid };
}
