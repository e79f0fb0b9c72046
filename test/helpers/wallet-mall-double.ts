import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express, { type Request, type Response } from 'express';
import { decodeProtectedHeader, flattenedVerify, FlattenedSign, importJWK, jwtVerify, type JWK } from 'jose';
import { z } from 'zod';
import {
  ACK_TYP,
  BATCH_TYP,
  bodyHash,
  ERRORS,
  SNAPSHOT_TYP,
  sha256Hex,
  ZERO_HASH,
  type AckPayload,
  type BatchPayload,
  type ErrorCode,
  type FeeSchedule,
  type FlattenedJws,
  type JournalEvent,
  type SnapshotAllotment,
  type SnapshotPayload,
  type TokenType,
} from '../../core/index.ts';
import type { WalletAuthorisedData } from '../../mall-sync/events.ts';
import { createSigningKey, type SigningKey } from '../../platform/key-files.ts';
import { createTlsIdentity } from '../../platform/tls.ts';
import { loadConfig, writeConfig } from '../../vendor-server/config.ts';
import { trustAuthority } from './http.ts';

/**
 * A small mall that implements exactly the vendor-facing endpoints of the contract for
 * tokens between stores (docs/PROTOCOL.md, "Vendor -> mall: wallet and customer data"),
 * plus what a linked store needs to run against it: the signed snapshot, batch ingest
 * with signed acks, `/health` and `/v1/mall-key`. Requests are checked as the mall checks
 * them: a vendor JWT signed with the vendor's registered key (audience `mallpos-mall`,
 * subject the vendor, at most 5 minutes old) and, for a POST, a `bh` claim equal to the
 * sha256 hex of the raw body. Every POST is idempotent by its `key`: the same key and body
 * get the stored answer, the same key with another body is refused.
 *
 * The wallet: balances per card and token, holds (authorisations) that make units
 * unavailable until captured, released or expired. A capture by the store or by the batch
 * carrying the event is one capture, whichever comes first. A move into the wallet is
 * credited only when its batch arrives.
 */

export interface Hold extends Pick<WalletAuthorisedData, 'id' | 'vendor' | 'card' | 'token' | 'units' | 'purpose'> {
  expiresAtMs: number;
  state: 'open' | 'captured' | 'released' | 'expired';
  /** Who captured it: the store's call or the batch. */
  capturedBy: 'store' | 'batch' | null;
}

export interface DirectoryEntry {
  home: string;
  customerId: string;
  name: string;
  contact: { email?: string; phone?: string };
  consent: boolean;
  registeredAt: string;
  summary: { sales: number; spentMinor: number; currency: string; firstAt: string | null; lastAt: string | null };
}

interface Stored {
  vendor: string;
  hash: string;
  status: number;
  body: unknown;
}

class Refusal extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function refuse(code: ErrorCode, message: string): never {
  throw new Refusal(code, message);
}

const card = z.string().regex(/^C[0-9]{10}$/);
const key = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/);
const units = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const pin = z.string().regex(/^[0-9]{4,12}$/);
const authoriseBody = z.strictObject({ key, card, token: z.string().regex(/^[A-Z][A-Z0-9]{1,11}$/), units, purpose: z.enum(['sale', 'exchange', 'withdraw']), pin: pin.optional() });
const pinBody = z.strictObject({ key, card, pin, oldPin: pin.optional() });
const releaseBody = z.strictObject({ key });
const captureBody = z.strictObject({ key, eventSeq: units });
const dataBody = z.strictObject({ key, card });

export interface WalletMallDouble {
  url: string;
  caPem: string;
  keys: SigningKey;
  /** Registers a vendor and its public key (as the mall's registry does). */
  addVendor(id: string, name: string, jwk: Record<string, unknown>): Promise<void>;
  tokenTypes: TokenType[];
  fees: FeeSchedule;
  allotments: SnapshotAllotment[];
  /** The issuedAt of the snapshots served; null for the time of each request. */
  snapshotIssuedAt: string | null;
  /** A customer known to the mall's directory, as if registered at `home` by a batch. */
  addCustomer(cardNo: string, entry: Omit<DirectoryEntry, 'registeredAt' | 'summary'> & { summary?: DirectoryEntry['summary'] }): void;
  directory: Map<string, DirectoryEntry>;
  /** Credits a wallet directly (tests' starting balances). */
  credit(cardNo: string, token: string, n: number): void;
  /**
   * Wallet PINs by card (set directly for tests' starting wallets, or by the store's PIN
   * request). A hold needs the right one, as at the mall; wrong ones are only counted in
   * `wrongPins` (the real mall's lockout is tested against the real mall).
   */
  pins: Map<string, string>;
  wrongPins: number;
  balance(cardNo: string, token: string): number;
  holds: Map<string, Hold>;
  /** Open holds' units for a card and token. */
  held(cardNo: string, token: string): number;
  tolls: { vendor: string; card: string; home: string; tollMinor: number; at: string }[];
  flagged: { vendor: string; eventSeq: number; reason: string }[];
  alarms: string[];
  /** Every event the batches brought, in order. */
  events: JournalEvent[];
  /** How many authorise requests created a new hold (idempotent retries excluded). */
  holdsCreated: number;
  /** How many snapshots were served (a store that started has pulled one). */
  snapshotsServed: number;
  /** Awaited before each authorisation is decided: a test holds it to let something else happen first. */
  authoriseGate: (() => Promise<void>) | null;
  /** Answers every vendor request with this error (a mall whose database is away: 503 MALL_ERR_UNAVAILABLE). */
  failing: { status: number; code: string } | null;
  /** Unreachable: every connection is dropped at once. */
  setDown(down: boolean): void;
  /** Moves the double's clock on (expiry of holds). */
  advance(ms: number): void;
  /** Releases every open hold whose time is up (also done on every request and by a timer). */
  expireHolds(): void;
  /** Points a store's config at this double: its URL, key and authority pinned. */
  linkVendor(vendorDir: string, opts?: { snapshotMaxAgeHours?: number; batchAgeMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function startWalletMallDouble(dir: string, opts: { ttlMs?: number } = {}): Promise<WalletMallDouble> {
  const tls = await createTlsIdentity(join(dir, 'tls'), 'Wallet mall double authority', ['127.0.0.1']);
  const keys = await createSigningKey(join(dir, 'mall-key.jwk.json'), 'mall key', 'MALL_ERR_CONFIG');
  const ttlMs = opts.ttlMs ?? 900_000;
  let offsetMs = 0;
  const now = () => Date.now() + offsetMs;
  let down = false;
  const vendors = new Map<string, { name: string; kid: string; jwk: Record<string, unknown>; batchSeq: number; batchHash: string; acks: Map<number, { hash: string; jws: FlattenedJws }> }>();
  const wallets = new Map<string, Map<string, number>>();
  const stored = new Map<string, Stored>();
  let holdSerial = 0;
  let requestSerial = 0;

  const d: WalletMallDouble = {
    url: '',
    caPem: tls.caPem,
    keys,
    async addVendor(id, name, jwk) {
      const { ed25519Thumbprint } = await import('../../platform/key-files.ts');
      vendors.set(id, { name, kid: await ed25519Thumbprint(jwk['x'] as string), jwk, batchSeq: 0, batchHash: ZERO_HASH, acks: new Map() });
    },
    tokenTypes: [],
    fees: { royaltyBps: 250, royaltyBpsByVendor: {}, royaltyBpsByToken: {}, reimbursementTollMinor: 5, customerDataTollMinor: 10, exchangeServiceBps: 100 },
    allotments: [],
    snapshotIssuedAt: null,
    addCustomer(cardNo, entry) {
      d.directory.set(cardNo, { ...entry, registeredAt: new Date(now()).toISOString(), summary: entry.summary ?? { sales: 0, spentMinor: 0, currency: 'EUR', firstAt: null, lastAt: null } });
    },
    directory: new Map(),
    credit(cardNo, token, n) {
      const w = wallets.get(cardNo) ?? new Map<string, number>();
      w.set(token, (w.get(token) ?? 0) + n);
      wallets.set(cardNo, w);
    },
    balance(cardNo, token) {
      return wallets.get(cardNo)?.get(token) ?? 0;
    },
    pins: new Map(),
    wrongPins: 0,
    holds: new Map(),
    held(cardNo, token) {
      let n = 0;
      for (const h of d.holds.values()) if (h.card === cardNo && h.token === token && h.state === 'open') n += h.units;
      return n;
    },
    tolls: [],
    flagged: [],
    alarms: [],
    events: [],
    holdsCreated: 0,
    authoriseGate: null,
    snapshotsServed: 0,
    failing: null,
    setDown(v) {
      down = v;
    },
    advance(ms) {
      offsetMs += ms;
      d.expireHolds();
    },
    expireHolds() {
      for (const h of d.holds.values()) if (h.state === 'open' && h.expiresAtMs <= now()) h.state = 'expired';
    },
    async linkVendor(vendorDir, o = {}) {
      const config = await loadConfig(vendorDir);
      await writeConfig(vendorDir, {
        ...config,
        mall: { url: d.url, jwk: keys.publicJwk as unknown as Record<string, unknown>, caPem: tls.caPem, snapshotMaxAgeHours: o.snapshotMaxAgeHours ?? 72, batchEventsMax: 500, batchAgeMs: o.batchAgeMs ?? 1000 },
      });
    },
    close: () => Promise.resolve(),
  };

  const capture = (h: Hold, by: 'store' | 'batch'): boolean => {
    if (h.state === 'captured') return true;
    if (h.state === 'open' || d.balance(h.card, h.token) >= h.units) {
      // An open hold is covered by construction; a late one only if the wallet still covers it.
      d.credit(h.card, h.token, -h.units);
      h.state = 'captured';
      h.capturedBy = by;
      return true;
    }
    d.alarms.push(`store ${h.vendor} used authorisation ${h.id} of card ${h.card} after it lapsed, and the wallet no longer covers it`);
    return false;
  };

  const vendorAuth = async (req: Request, vendor: string, raw: Buffer | null): Promise<void> => {
    const v = vendors.get(vendor);
    if (v === undefined) refuse('MALL_ERR_VENDOR_UNKNOWN', 'no such vendor at this mall');
    const header = req.header('authorization') ?? '';
    const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    let payload: Record<string, unknown>;
    try {
      if (decodeProtectedHeader(token).kid !== v.kid) throw new Error('another key');
      ({ payload } = await jwtVerify(token, await importJWK(v.jwk as JWK, 'EdDSA'), { algorithms: ['EdDSA'], audience: 'mallpos-mall', subject: vendor, maxTokenAge: '5m' }));
    } catch {
      return refuse('MALL_ERR_UNAUTHENTICATED', 'a vendor-signed request is needed: the token does not verify');
    }
    if (raw !== null && payload['bh'] !== sha256Hex(raw)) refuse('MALL_ERR_UNAUTHENTICATED', 'the token is not for this body (bh)');
  };

  /** The idempotent POST: the stored answer for a key seen before with the same body. */
  const once = (vendor: string, body: { key: string }, run: () => { status: number; body: unknown }): { status: number; body: unknown } => {
    const k = `${vendor}\u0000${body.key}`;
    // The PINs are no part of a request's identity, as at the mall.
    const { pin: _pin, oldPin: _oldPin, ...identity } = body as { key: string; pin?: string; oldPin?: string };
    const hash = bodyHash(identity);
    const seen = stored.get(k);
    if (seen !== undefined) {
      if (seen.hash !== hash) refuse('MALL_ERR_VALIDATION', 'this idempotency key was already used for another request');
      return { status: seen.status, body: seen.body };
    }
    const answer = run();
    stored.set(k, { vendor, hash, ...answer });
    return answer;
  };

  const walletView = (cardNo: string) => {
    const balances = Object.create(null) as Record<string, number>;
    const held = Object.create(null) as Record<string, number>;
    for (const [t, n] of wallets.get(cardNo) ?? []) if (n !== 0) balances[t] = n;
    for (const h of d.holds.values()) if (h.card === cardNo && h.state === 'open') held[h.token] = (held[h.token] ?? 0) + h.units;
    return { card: cardNo, balances, held, asOf: new Date(now()).toISOString() };
  };
  const knownCard = (cardNo: string) => d.directory.has(cardNo) || wallets.has(cardNo);
  const ownHold = (vendor: string, id: string): Hold => {
    const h = d.holds.get(id);
    if (h === undefined || h.vendor !== vendor) refuse('MALL_ERR_AUTHORISATION_UNKNOWN', 'no such wallet authorisation for this store');
    return h;
  };

  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    if (down) {
      req.socket.destroy();
      return;
    }
    d.expireHolds();
    if (d.failing !== null && req.path.startsWith('/v1/vendors/')) {
      res.status(d.failing.status).json({ error: { code: d.failing.code, message: 'the mall cannot serve this now' } });
      return;
    }
    next();
  });
  app.use(express.raw({ type: () => true, limit: 8 * 1024 * 1024 }));
  const route =
    (run: (req: Request, raw: Buffer) => Promise<{ status?: number; body: unknown }> | { status?: number; body: unknown }) =>
    (req: Request, res: Response) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      Promise.resolve()
        .then(() => run(req, raw))
        .then(
          (out) => res.status(out.status ?? 200).json(out.body),
          (err: unknown) => {
            if (err instanceof Refusal) res.status(ERRORS[err.code].status).json({ error: { code: err.code, message: err.message } });
            else res.status(500).json({ error: { code: 'MALL_ERR_INTERNAL', message: (err as Error).message } });
          },
        );
    };
  const json = <T extends z.ZodType>(schema: T, raw: Buffer): z.output<T> => {
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      return refuse('MALL_ERR_VALIDATION', 'the body is not JSON');
    }
    const r = schema.safeParse(v);
    if (!r.success) refuse('MALL_ERR_VALIDATION', r.error.issues[0]?.message ?? 'not valid');
    return r.data;
  };
  const vendorOf = (req: Request): string => String(req.params['vendor'] ?? '');
  /** A GET signed by the vendor the path names. */
  const vendorGet = (path: string, run: (vendor: string, req: Request) => Promise<{ body: unknown }> | { body: unknown }) =>
    app.get(
      path,
      route(async (req) => {
        const vendor = vendorOf(req);
        await vendorAuth(req, vendor, null);
        return run(vendor, req);
      }),
    );
  /**
   * An idempotent POST signed by the vendor the path names, over this body: the body must
   * fit the schema, and a key seen before gets its stored answer. `gate` runs before that.
   */
  const vendorPost = <T extends z.ZodType<{ key: string }>>(
    path: string,
    schema: T,
    run: (vendor: string, body: z.output<T>, req: Request) => { status: number; body: unknown },
    gate?: () => Promise<void> | undefined,
  ) =>
    app.post(
      path,
      route(async (req, raw) => {
        const vendor = vendorOf(req);
        await vendorAuth(req, vendor, raw);
        const body = json(schema, raw);
        if (gate !== undefined) await gate();
        return once(vendor, body, () => run(vendor, body, req));
      }),
    );

  app.get('/health', route(() => ({ body: { ok: true } })));
  app.get('/v1/mall-key', route(() => ({ body: { kid: keys.kid, jwk: keys.publicJwk } })));
  vendorGet('/v1/vendors/:vendor/snapshot', async (vendor) => {
    const payload: SnapshotPayload = {
      v: 1,
      vendor,
      issuedAt: d.snapshotIssuedAt ?? new Date(now()).toISOString(),
      mall: { kid: keys.kid, jwk: keys.publicJwk as unknown as Record<string, unknown> },
      tokenTypes: d.tokenTypes,
      fees: d.fees,
      vendors: [...vendors].map(([id, v]) => ({ id, name: v.name, keys: [{ kid: v.kid, jwk: v.jwk, status: 'active' as const, revokedAt: null }] })),
      allotments: d.allotments.filter((a) => a.vendor === vendor),
    };
    const jws = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: SNAPSHOT_TYP }).sign(keys.privateKey);
    d.snapshotsServed += 1;
    return { body: { snapshot: jws } };
  });

  app.post(
    '/v1/batches',
    route(async (_req, raw) => {
      const jws = JSON.parse(raw.toString('utf8')) as FlattenedJws;
      const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString('utf8')) as { kid?: string; typ?: string };
      const entry = [...vendors].find(([, v]) => v.kid === header.kid);
      if (entry === undefined || header.typ !== BATCH_TYP) refuse('MALL_ERR_UNAUTHENTICATED', 'the batch is not signed by a registered vendor key');
      const [vendor, v] = entry;
      const { payload: bytes } = await flattenedVerify(jws, await importJWK(v.jwk as JWK, 'EdDSA'), { algorithms: ['EdDSA'] });
      const hash = sha256Hex(bytes);
      const batch = JSON.parse(new TextDecoder().decode(bytes)) as BatchPayload;
      if (batch.vendor !== vendor) refuse('MALL_ERR_UNAUTHENTICATED', 'the batch names another vendor');
      const earlier = v.acks.get(batch.seq);
      if (earlier !== undefined) {
        if (earlier.hash !== hash) refuse('MALL_ERR_BATCH_GAP', 'another batch with this seq was ingested');
        return { body: { ack: earlier.jws, replayed: true } };
      }
      if (batch.seq !== v.batchSeq + 1 || batch.prevBatchHash !== v.batchHash) refuse('MALL_ERR_BATCH_GAP', `expected batch ${v.batchSeq + 1}`);
      const flagged: { eventSeq: number; reason: string }[] = [];
      for (const text of batch.events) {
        const e = JSON.parse(text) as JournalEvent;
        d.events.push(e);
        const useHold = (id: string | null, what: string) => {
          const h = id === null ? undefined : d.holds.get(id);
          if (h === undefined || h.vendor !== vendor) flagged.push({ eventSeq: e.seq, reason: `${what} names no authorisation of this store` });
          else if (!capture(h, 'batch')) flagged.push({ eventSeq: e.seq, reason: `${what}: authorisation ${h.id} lapsed and the wallet no longer covers it` });
        };
        if (e.type === 'customer.registered' && !d.directory.has(e.data.card)) {
          d.directory.set(e.data.card, { home: vendor, customerId: e.data.id, name: e.data.name, contact: e.data.contact ?? {}, consent: e.data.consent === true, registeredAt: e.at, summary: { sales: 0, spentMinor: 0, currency: 'EUR', firstAt: null, lastAt: null } });
        }
        if (e.type === 'wallet.moved' && e.data.direction === 'to-wallet') d.credit(e.data.card, e.data.token, e.data.units);
        if (e.type === 'wallet.moved' && e.data.direction === 'from-wallet') useHold(e.data.authorisation, 'a move from the wallet');
        if (e.type === 'exchange' && e.data.source === 'wallet') useHold(e.data.authorisation, 'an exchange from the wallet');
        if (e.type === 'sale' && e.data.wallet !== undefined) for (const w of e.data.wallet) useHold(w.authorisation, 'a sale paid from the wallet');
      }
      for (const f of flagged) d.flagged.push({ vendor, ...f });
      const last = batch.events[batch.events.length - 1] ?? '';
      const ack: AckPayload = {
        v: 1,
        vendor,
        seq: batch.seq,
        batchHash: hash,
        lastEventSeq: batch.toSeq,
        lastEventHash: sha256Hex(last),
        events: batch.events.length,
        flagged,
        ingestedAt: new Date(now()).toISOString(),
        registrySeq: 0,
        cleared: {},
      };
      const ackJws = (await new FlattenedSign(new TextEncoder().encode(JSON.stringify(ack))).setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: ACK_TYP }).sign(keys.privateKey)) as FlattenedJws;
      v.batchSeq = batch.seq;
      v.batchHash = hash;
      v.acks.set(batch.seq, { hash, jws: ackJws });
      return { body: { ack: ackJws, replayed: false } };
    }),
  );

  vendorPost(
    '/v1/vendors/:vendor/wallet/authorisations',
    authoriseBody,
    (vendor, body) => {
      if (!knownCard(body.card)) refuse('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${body.card}`);
      const set = d.pins.get(body.card);
      if (set === undefined) refuse('MALL_ERR_WALLET_PIN_NOT_SET', 'this wallet has no PIN yet');
      if (body.pin === undefined) refuse('MALL_ERR_WALLET_PIN_REQUIRED', 'the wallet PIN is needed');
      if (body.pin !== set) {
        d.wrongPins += 1;
        refuse('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${body.card}`);
      }
      if (!d.tokenTypes.some((t) => t.code === body.token)) refuse('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${body.token}`);
      const available = d.balance(body.card, body.token) - d.held(body.card, body.token);
      if (available < body.units) refuse('MALL_ERR_WALLET_INSUFFICIENT', `not enough ${body.token} in the mall wallet: ${body.units - available} short`);
      holdSerial += 1;
      d.holdsCreated += 1;
      const h: Hold = { id: `wa-${holdSerial}`, vendor, card: body.card, token: body.token, units: body.units, purpose: body.purpose, expiresAtMs: now() + ttlMs, state: 'open', capturedBy: null };
      d.holds.set(h.id, h);
      return { status: 200, body: { authorisation: { id: h.id, card: h.card, token: h.token, units: h.units, expiresAt: new Date(h.expiresAtMs).toISOString() }, wallet: walletView(body.card) } };
    },
    () => d.authoriseGate?.(),
  );
  vendorPost('/v1/vendors/:vendor/wallet/authorisations/:id/release', releaseBody, (vendor, _body, req) => {
    const h = ownHold(vendor, String(req.params['id']));
    if (h.state === 'captured') refuse('MALL_ERR_AUTHORISATION_SPENT', 'the wallet authorisation was already captured');
    if (h.state === 'open') h.state = 'released';
    return { status: 200, body: { released: true } };
  });
  vendorPost('/v1/vendors/:vendor/wallet/authorisations/:id/capture', captureBody, (vendor, _body, req) => {
    const h = ownHold(vendor, String(req.params['id']));
    if (h.state === 'released') refuse('MALL_ERR_AUTHORISATION_SPENT', 'the wallet authorisation was released');
    if (!capture(h, 'store')) refuse('MALL_ERR_AUTHORISATION_SPENT', 'the wallet authorisation lapsed and the wallet no longer covers it');
    return { status: 200, body: { captured: true } };
  });
  vendorGet('/v1/vendors/:vendor/wallet/:card', (_vendor, req) => {
    const c = String(req.params['card']);
    if (!knownCard(c)) refuse('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    return { body: { ...walletView(c), pinSet: d.pins.has(c), locked: false } };
  });
  vendorPost('/v1/vendors/:vendor/wallet/pin', pinBody, (_vendor, body) => {
    if (!knownCard(body.card)) refuse('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    const set = d.pins.get(body.card);
    if (set !== undefined && body.oldPin === undefined) refuse('MALL_ERR_WALLET_PIN_REQUIRED', 'this wallet already has a PIN: changing it needs the old one');
    if (set === undefined && body.oldPin !== undefined) refuse('MALL_ERR_WALLET_PIN_NOT_SET', 'this wallet has no PIN to change');
    if (set !== undefined && body.oldPin !== set) {
      d.wrongPins += 1;
      refuse('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${body.card}`);
    }
    d.pins.set(body.card, body.pin);
    return { status: 200, body: { card: body.card, pinSet: true } };
  });
  vendorPost('/v1/vendors/:vendor/customer-data', dataBody, (vendor, body) => {
    const entry = d.directory.get(body.card);
    if (entry === undefined) refuse('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    if (entry.home === vendor) refuse('MALL_ERR_VALIDATION', 'this card is your own customer: ask your own records');
    if (!entry.consent) refuse('MALL_ERR_NO_CONSENT', 'the customer has not agreed to share their data with other stores');
    requestSerial += 1;
    const tollMinor = d.fees.customerDataTollMinor;
    d.tolls.push({ vendor, card: body.card, home: entry.home, tollMinor, at: new Date(now()).toISOString() });
    return {
      status: 200,
      body: { requestId: `cd-${requestSerial}`, card: body.card, home: { vendorId: entry.home, name: vendors.get(entry.home)?.name ?? entry.home }, name: entry.name, contact: entry.contact, summary: entry.summary, tollMinor },
    };
  });

  const server: Server = createServer({ key: tls.keyPem, cert: tls.certPem }, app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  d.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  trustAuthority(d.url, tls.caPem);
  const timer = setInterval(() => d.expireHolds(), 200);
  timer.unref();
  d.close = () =>
    new Promise<void>((resolve) => {
      clearInterval(timer);
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return d;
}
