import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exportArchive } from '../../mall-sync/archive.ts';
import { fileURLToPath } from 'node:url';
import { http, type HttpResult, type Json } from '../helpers/http.ts';
import { runBin, spawnMall as spawnMallOn } from '../helpers/process.ts';
import { tempDir as makeTempDir } from '../helpers/temp.ts';
import { calculateJwkThumbprint, exportJWK, FlattenedSign, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import {
  BATCH_TYP,
  BATCH_VERSION,
  batchPayloadText,
  batchTotals,
  sha256Hex,
  ZERO_HASH,
  type BatchPayload,
  type ExchangeQuote,
  type FeeSchedule,
  type FlattenedJws,
  type JournalEvent,
  type TokenType,
} from '../../core/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall, type InitMallResult } from '../../mall-sync/init.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import { startTestMall } from '../helpers/mall.ts';
import { freshDatabase } from '../helpers/postgres.ts';
import { dataPaths, loadKeys, type VendorKeys } from '../../vendor-server/config.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { LedgerService } from '../../vendor-server/ledger/service.ts';
import { openLedger, type OpenedLedger } from '../../vendor-server/ledger/store.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';
import { createLogger, type Logger } from '../../platform/logger.ts';
import type { Journal } from '../../platform/storage/index.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));


export const tempDir = (prefix = 'mallpos-mall-') => makeTempDir(prefix);

export const silentLogger = () => createLogger({ level: 'silent', name: 'mall-sync' });

export { http, type HttpResult, type Json };

export interface MallRig {
  dir: string;
  init: InitMallResult;
  mall: RunningMall;
  admin: MallAdminClient;
  postBatch: (body: unknown) => Promise<HttpResult>;
  get: (path: string, headers?: Record<string, string>) => Promise<HttpResult>;
  restart: () => Promise<void>;
  close: () => Promise<void>;
}

/** The mall's backends: every suite that takes a `StoreKind` runs once on each. */
export type StoreKind = 'embedded' | 'postgres';
export const STORE_KINDS: readonly StoreKind[] = ['embedded', 'postgres'];

/** Declares a suite once per backend (its title says which). */
export function forEachStore(title: string, suite: (this: Mocha.Suite, store: StoreKind) => void): void {
  for (const store of STORE_KINDS) {
    describe(`${title} [${store}]`, function () {
      suite.call(this, store);
    });
  }
}

/** initMall for a backend: a fresh database on the test run's PostgreSQL cluster for `postgres`. */
export async function initMallOn(dataDir: string, store: StoreKind = 'embedded'): Promise<InitMallResult> {
  return initMall({ dataDir, ...(store === 'postgres' ? { postgres: { databaseUrl: await freshDatabase() } } : {}) });
}

/** A mall on a fresh data directory, listening on 127.0.0.1 with an ephemeral port. */
export async function startMall(opts: { clock?: () => Date; store?: StoreKind; logger?: Logger } = {}): Promise<MallRig> {
  const { dir, cleanup } = await tempDir();
  const init = await initMallOn(dir, opts.store);
  const start = () => startTestMall(dir, 0, { clock: opts.clock, ...(opts.logger === undefined ? {} : { logger: opts.logger }) });
  const rig: MallRig = {
    dir,
    init,
    mall: await start(),
    admin: null as unknown as MallAdminClient,
    postBatch: (body) => http(`${rig.mall.url}/v1/batches`, 'POST', body),
    get: (path, headers = {}) => http(`${rig.mall.url}${path}`, 'GET', undefined, headers),
    async restart() {
      await rig.mall.close();
      rig.mall = await start();
      rig.admin = new MallAdminClient(rig.mall.url, init.adminToken, rig.mall.caPem);
    },
    async close() {
      await rig.mall.close();
      await cleanup();
    },
  };
  rig.admin = new MallAdminClient(rig.mall.url, init.adminToken, rig.mall.caPem);
  return rig;
}

/** Everything of the store that must not change when a batch is refused. */
export function storeFingerprint(mall: RunningMall): string {
  const store = mall.store;
  return JSON.stringify({ state: store.state, journalSeq: store.kind === 'embedded' ? store.journal.lastSeq : store.state.seq });
}

/**
 * The mall's audit archive as a directory: the embedded mall's own, or the one a mall on
 * PostgreSQL writes out of its tables (what `mall-sync export-archive` does).
 */
export async function archiveOf(mall: MallRig): Promise<string> {
  const store = mall.mall.store;
  if (store.kind === 'embedded') return join(mall.dir, 'archive');
  const dir = join(mall.dir, 'exported-archive');
  await rm(dir, { recursive: true, force: true });
  await exportArchive(store, mall.mall.keys, dir);
  return dir;
}

// ---- vendors and batches ---------------------------------------------------------------

export interface TestKey {
  privateKey: CryptoKey;
  kid: string;
  publicJwk: Record<string, unknown>;
}

/** A fresh Ed25519 key as a vendor would have: kid = JWK thumbprint. */
export async function newKey(): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, kid, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string, kid, alg: 'EdDSA', use: 'sig' } };
}

export interface BatchCut {
  payload: BatchPayload;
  /** The exact payload bytes that are signed and hashed. */
  text: string;
  hash: string;
  jws: FlattenedJws;
  lastEventHash: string;
}

export async function signText(text: string, key: CryptoKey, header: Record<string, unknown>): Promise<FlattenedJws> {
  const jws = await new FlattenedSign(new TextEncoder().encode(text)).setProtectedHeader(header as { alg: string }).sign(key);
  return { protected: jws.protected as string, payload: jws.payload, signature: jws.signature };
}

export function signBatch(payload: BatchPayload | string, keys: { privateKey: CryptoKey; kid: string }): Promise<FlattenedJws> {
  const text = typeof payload === 'string' ? payload : batchPayloadText(payload);
  return signText(text, keys.privateKey, { alg: 'EdDSA', kid: keys.kid, typ: BATCH_TYP });
}

/**
 * Cuts batches from a vendor journal as the vendor's pusher does: contiguous durable
 * events, totals from their postings, chained to the previous batch, signed with the
 * vendor's key. `accept` moves the cursor once the mall acked.
 */
export class Batcher {
  batchSeq = 0;
  batchHash = ZERO_HASH;
  eventSeq = 0;
  eventHash = ZERO_HASH;

  constructor(
    readonly journal: Journal,
    readonly vendorId: string,
    public keys: { privateKey: CryptoKey; kid: string },
  ) {}

  /** The events after the cursor (at most `max`), or null when none wait. */
  async cut(max = 2000, createdAt = new Date().toISOString()): Promise<BatchCut | null> {
    const from = this.eventSeq + 1;
    const last = Math.min(this.journal.durableSeq, from + max - 1);
    if (from > last) return null;
    const texts: string[] = [];
    const events: JournalEvent[] = [];
    let lastHash = this.eventHash;
    for await (const rec of this.journal.iterate(from, last)) {
      texts.push(rec.text);
      events.push(JSON.parse(rec.text) as JournalEvent);
      lastHash = rec.hash;
    }
    const payload: BatchPayload = {
      v: BATCH_VERSION,
      vendor: this.vendorId,
      seq: this.batchSeq + 1,
      prevBatchHash: this.batchHash,
      fromSeq: from,
      toSeq: last,
      createdAt,
      totals: batchTotals(events),
      events: texts,
    };
    const text = batchPayloadText(payload);
    return { payload, text, hash: sha256Hex(text), jws: await signBatch(text, this.keys), lastEventHash: lastHash };
  }

  accept(cut: BatchCut): void {
    this.batchSeq = cut.payload.seq;
    this.batchHash = cut.hash;
    this.eventSeq = cut.payload.toSeq;
    this.eventHash = cut.lastEventHash;
  }
}

export interface VendorRig {
  dir: string;
  vendorId: string;
  keys: VendorKeys;
  opened: OpenedLedger;
  ledger: LedgerService;
  batcher: Batcher;
  op: { terminal: string | null; cashier: string | null };
  close: () => Promise<void>;
}

/** A real vendor ledger (initVendor + openLedger + LedgerService) without a server. */
export async function startVendor(vendorId = 'acme', demo = false): Promise<VendorRig> {
  const { dir, cleanup } = await tempDir('mallpos-vendor-');
  await initVendor({ dataDir: dir, vendorId, storeName: `${vendorId} store`, demo, pinHashCost: TEST_PIN_HASH_COST });
  const keys = await loadKeys(dir);
  const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId });
  const ledger = new LedgerService({ vendorId, name: `${vendorId} store`, address: [], currency: 'EUR' }, opened.state, opened.journal);
  return {
    dir,
    vendorId,
    keys,
    opened,
    ledger,
    batcher: new Batcher(opened.journal, vendorId, keys),
    op: { terminal: 't001', cashier: null },
    async close() {
      await opened.journal.close();
      await cleanup();
    },
  };
}

// ---- a known registry --------------------------------------------------------------------

/** GTINs of the scenario's products. */
export const P_PEN = '4006381333931';
export const P_BREAD = '5901234123457';
export const P_JUICE = '9001001000021';

export const SCENARIO_FEES: FeeSchedule = {
  royaltyBps: 250,
  royaltyBpsByVendor: {},
  royaltyBpsByToken: { BOB: 100 },
  reimbursementTollMinor: 7,
  customerDataTollMinor: 0,
  exchangeServiceBps: 0,
};

export function scenarioTokenTypes(): TokenType[] {
  return [
    { code: 'MALL', name: 'Mall token', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' },
    { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: ['acme'] },
    { code: 'BOB', name: 'Bob\'s token', kind: 'vendor', issuer: 'bobs', faceValueMinor: 20, currency: 'EUR', acceptedBy: ['acme', 'bobs'] },
    { code: 'SUNNY', name: 'Sunny coupon', kind: 'manufacturer', issuer: 'sunny-foods', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', products: [P_JUICE] },
  ];
}

/**
 * Registers at the mall: vendor acme (the rig's key), vendor bobs (a throwaway key), the
 * manufacturer sunny-foods, the four token types and the fee schedule.
 */
export async function registerScenario(mall: MallRig, vendor: VendorRig, bobsJwk: Record<string, unknown>): Promise<void> {
  await mall.admin.registerVendor({ id: vendor.vendorId, name: 'ACME Market', jwk: vendor.keys.publicJwk as Record<string, unknown> });
  await mall.admin.registerVendor({ id: 'bobs', name: 'Bob\'s Books', jwk: bobsJwk });
  await mall.admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
  for (const tt of scenarioTokenTypes()) await mall.admin.upsertTokenType(tt);
  await mall.admin.setFees(SCENARIO_FEES);
}

/** The vendor's catalog and its local copy of the token types. */
export async function seedVendorCatalog(v: VendorRig, types: TokenType[] = scenarioTokenTypes()): Promise<void> {
  for (const tt of types) await v.ledger.upsertTokenType(v.op, tt);
  await v.ledger.upsertProduct(v.op, { code: P_PEN, name: 'Pen', priceMinor: 450, tokenPrices: { ACME: 90, MALL: 45, BOB: 23 } });
  await v.ledger.upsertProduct(v.op, { code: P_BREAD, name: 'Bread', priceMinor: 289, tokenPrices: { ACME: 58, MALL: 29, SUNNY: 29 } });
  await v.ledger.upsertProduct(v.op, { code: P_JUICE, name: 'Juice', priceMinor: 249, tokenPrices: { ACME: 50, MALL: 25, SUNNY: 25 } });
}

/**
 * A mall with the scenario registered and vendor acme holding the catalog: where most
 * sync suites start. Whatever was started is closed again when a later step fails.
 */
export async function startScenario(opts: { store?: StoreKind } = {}): Promise<{ mall: MallRig; v: VendorRig }> {
  const mall = await startMall(opts);
  let v: VendorRig | undefined;
  try {
    v = await startVendor('acme');
    await registerScenario(mall, v, (await newKey()).publicJwk);
    await seedVendorCatalog(v);
    return { mall, v };
  } catch (err) {
    await v?.close();
    await mall.close();
    throw err;
  }
}

let keyCounter = 0;
export function opKey(prefix = 'op'): string {
  keyCounter += 1;
  return `${prefix}:test-${process.pid}-${keyCounter}-${Date.now()}`;
}

export async function sell(v: VendorRig, card: string, lines: { code: string; qty: number }[], tenders: { token: string; units?: number }[], cashTenderedMinor = 10_000) {
  return v.ledger.commitSale(v.op, { key: `t001:${opKey('sale')}`, lines, card, tenders, cashTenderedMinor });
}

/** Cuts the next batch (all waiting events), posts it, and moves the cursor on success. */
export async function pushAll(mall: MallRig, v: VendorRig): Promise<{ res: HttpResult; cut: BatchCut }> {
  const cut = await v.batcher.cut();
  if (cut === null) throw new Error('nothing to push');
  const res = await mall.postBatch(cut.jws);
  if (res.status === 200) v.batcher.accept(cut);
  return { res, cut };
}

// ---- python jwcrypto -------------------------------------------------------------------------

let pythonCache: string | null | undefined;

/** A python3 that can import jwcrypto (Debian's python3-jwcrypto lives in /usr/bin/python3). */
export function pythonWithJwcrypto(): string | null {
  if (pythonCache !== undefined) return pythonCache;
  pythonCache = null;
  for (const candidate of ['python3', '/usr/bin/python3', 'python']) {
    const r = spawnSync(candidate, ['-c', 'import jwcrypto'], { stdio: 'ignore' });
    if (r.status === 0) {
      pythonCache = candidate;
      break;
    }
  }
  return pythonCache;
}

const VERIFY_PY = `
import json, sys
from jwcrypto import jwk, jws
req = json.load(sys.stdin)
out = []
for item in req:
    token = jws.JWS()
    token.deserialize(json.dumps(item['jws']))
    try:
        token.verify(jwk.JWK(**item['jwk']))
        out.append({'ok': True, 'payload': token.payload.decode('utf-8'), 'header': token.jose_header})
    except Exception as e:
        out.append({'ok': False, 'error': type(e).__name__})
print(json.dumps(out))
`;

/** Verifies flattened JWS documents with python's jwcrypto in a child process. */
export function verifyWithJwcrypto(items: { jws: FlattenedJws; jwk: Record<string, unknown> }[]): { ok: boolean; payload?: string; header?: Record<string, unknown>; error?: string }[] {
  const python = pythonWithJwcrypto();
  if (python === null) throw new Error('no python3 with jwcrypto: install python3-jwcrypto (Debian) for the interoperability test');
  const r = spawnSync(python, ['-c', VERIFY_PY], { input: JSON.stringify(items), encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`jwcrypto verification failed to run: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: boolean; payload?: string; header?: Record<string, unknown>; error?: string }[];
}

// ---- child processes ---------------------------------------------------------------------

export type { ChildServer as MallChild } from '../helpers/process.ts';
export { killHard } from '../helpers/process.ts';

/** Starts `mall-sync serve` as a child process on an ephemeral port and waits for its URL. */
export function spawnMall(dataDir: string, timeoutMs = 20_000) {
  return spawnMallOn(dataDir, 0, timeoutMs);
}

/** Runs the mall-sync CLI to completion. */
export function runMallCli(args: string[], timeoutMs = 30_000) {
  return runBin('bin/mall-sync.js', args, timeoutMs);
}

/** The header of a vendor-signed request (statements are given only to their vendor). */
export async function vendorAuth(keys: { privateKey: CryptoKey; kid: string }, vendorId: string, audience = 'mallpos-mall'): Promise<Record<string, string>> {
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setSubject(vendorId)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(keys.privateKey);
  return { authorization: `Bearer ${token}` };
}

// ---- tokens between stores: events of the new types, built as core/events.ts defines them ----

/** A posting as a vendor journal writes it. */
export interface RawPosting {
  account: string;
  token: string;
  units: number;
}

/**
 * A vendor's journal reduced to what the mall sees: events of any type, exactly as
 * core/events.ts defines them, hash-chained and cut into signed batches. Used where the
 * store side of an event type is not what a test is about.
 */
export class RawVendor {
  private eventSeq = 0;
  private prev = ZERO_HASH;
  private pending: { text: string; hash: string; postings: RawPosting[] }[] = [];
  private batchSeq = 0;
  private batchHash = ZERO_HASH;
  private saleCounter = 0;

  constructor(
    readonly vendorId: string,
    readonly keys: TestKey,
  ) {}

  /** Appends one event; returns its seq. */
  add(type: string, postings: RawPosting[], data: unknown, at = new Date().toISOString()): number {
    this.eventSeq += 1;
    const event = { seq: this.eventSeq, prev: this.prev, v: 1, vendor: this.vendorId, at, terminal: 't001', cashier: null, key: null, bodyHash: null, type, postings, data };
    const text = JSON.stringify(event);
    const hash = sha256Hex(text);
    this.prev = hash;
    this.pending.push({ text, hash, postings });
    return this.eventSeq;
  }

  register(customer: string, card: string, opts: { consent?: boolean; name?: string; contact?: { email?: string; phone?: string } } = {}): number {
    return this.add('customer.registered', [], {
      id: customer,
      card,
      name: opts.name ?? `Customer ${customer}`,
      ...(opts.consent === undefined ? {} : { consent: opts.consent }),
      ...(opts.contact === undefined ? {} : { contact: opts.contact }),
    });
  }

  /** Tokens from the float to a customer: bought (with a payment) or rewarded. */
  issue(customer: string, token: string, units: number, faceValueMinor: number, payment: unknown = { method: 'card', approvalRef: 'APPROVAL-1' }): number {
    const reward = payment === null;
    return this.add('issuance', [{ account: 'float', token, units: -units }, { account: `customer:${customer}`, token, units }], {
      customer,
      token,
      units,
      reason: reward ? 'reward' : 'purchase',
      cashMinor: reward ? 0 : units * faceValueMinor,
      ...(reward ? {} : { payment }),
      balancesAfter: { [token]: units },
    });
  }

  /** A one-line sale of a pen paid with `units` of `token` (from the wallet under `wallet` authorisations), earning `earned`. */
  sale(customer: string | null, token: string, units: number, opts: { wallet?: { authorisation: string; units: number }[]; earned?: Record<string, number>; totalMinor?: number } = {}): number {
    this.saleCounter += 1;
    const total = opts.totalMinor ?? 450;
    const fromWallet = (opts.wallet ?? []).reduce((n, w) => n + w.units, 0);
    const fromCard = units - fromWallet;
    const postings: RawPosting[] = [];
    if (fromCard > 0) postings.push({ account: `customer:${customer ?? ''}`, token, units: -fromCard });
    if (fromWallet > 0) postings.push({ account: 'mall-wallet', token, units: -fromWallet });
    postings.push({ account: 'redeemed', token, units });
    for (const [t, e] of Object.entries(opts.earned ?? {})) postings.push({ account: 'float', token: t, units: -e }, { account: `customer:${customer ?? ''}`, token: t, units: e });
    return this.add('sale', postings, {
      saleId: `S${String(this.saleCounter).padStart(10, '0')}`,
      customer,
      currency: 'EUR',
      lines: [{ lineNo: 1, gtin: P_PEN, name: 'Pen', qty: 1, unitPriceMinor: total, totalMinor: total, unitTokenPrices: { [token]: units } }],
      allocations: [{ lineNo: 1, token, units, coversMinor: total }],
      debits: { [token]: units },
      totalMinor: total,
      cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
      balancesAfter: null,
      ...(opts.earned === undefined ? {} : { earned: opts.earned }),
      ...(opts.wallet === undefined ? {} : { wallet: opts.wallet.map((w) => ({ authorisation: w.authorisation, token, units: w.units })) }),
    });
  }

  /** The reversal of a sale made by `sale` (every posting negated). */
  reverse(saleSeq: number, customer: string | null, postings: RawPosting[], saleTotalMinor = 450): number {
    return this.add('reversal', postings.map((p) => ({ ...p, units: 0 - p.units })), {
      refundId: `R${saleSeq}`,
      saleId: 'S0000000001',
      saleSeq,
      customer,
      reason: 'test',
      supervisor: 'sup',
      cashRefundMinor: 0,
      saleTotalMinor,
      balancesAfter: null,
    });
  }

  /** The postings of an event added earlier (not yet cut). */
  postingsOf(seq: number): RawPosting[] {
    const first = this.eventSeq - this.pending.length + 1;
    const p = this.pending[seq - first];
    if (p === undefined) throw new Error(`event ${seq} is not pending`);
    return p.postings;
  }

  exchange(customer: string, quote: ExchangeQuote, source: 'card' | 'wallet' = 'card', authorisation: string | null = null, snapshotIssuedAt = new Date().toISOString(), at = new Date().toISOString()): number {
    const from = source === 'wallet' ? 'mall-wallet' : `customer:${customer}`;
    return this.add(
      'exchange',
      [
        { account: from, token: quote.from.token, units: -quote.from.units },
        { account: 'redeemed', token: quote.from.token, units: quote.from.units },
        { account: 'float', token: quote.to.token, units: -quote.to.units },
        { account: `customer:${customer}`, token: quote.to.token, units: quote.to.units },
      ],
      { exchangeId: `x-${this.eventSeq + 1}`, customer, source, authorisation, quote, snapshotIssuedAt, offline: false, balancesAfter: {} },
      at,
    );
  }

  move(customer: string, card: string, direction: 'to-wallet' | 'from-wallet', token: string, units: number, authorisation: string | null = null): number {
    const c = `customer:${customer}`;
    const postings = direction === 'to-wallet' ? [{ account: c, token, units: -units }, { account: 'mall-wallet', token, units }] : [{ account: 'mall-wallet', token, units: -units }, { account: c, token, units }];
    return this.add('wallet.moved', postings, { moveId: `m-${this.eventSeq + 1}`, customer, card, direction, token, units, authorisation, balancesAfter: {} });
  }

  /** Cuts every pending event into the next signed batch. */
  async cut(createdAt = new Date().toISOString()): Promise<BatchCut> {
    if (this.pending.length === 0) throw new Error('nothing to cut');
    const events = this.pending.map((p) => JSON.parse(p.text) as JournalEvent);
    const payload: BatchPayload = {
      v: BATCH_VERSION,
      vendor: this.vendorId,
      seq: this.batchSeq + 1,
      prevBatchHash: this.batchHash,
      fromSeq: this.eventSeq - this.pending.length + 1,
      toSeq: this.eventSeq,
      createdAt,
      totals: batchTotals(events),
      events: this.pending.map((p) => p.text),
    };
    const text = batchPayloadText(payload);
    return { payload, text, hash: sha256Hex(text), jws: await signBatch(text, this.keys), lastEventHash: this.prev };
  }

  /** Posts the pending events as one batch; on 200 the batch is taken as sent (`ack` is the signed ack's payload). */
  async push(mall: MallRig | string): Promise<HttpResult & { ack: Json }> {
    const cut = await this.cut();
    const res = typeof mall === 'string' ? await http(`${mall}/v1/batches`, 'POST', cut.jws) : await mall.postBatch(cut.jws);
    if (res.status === 200) {
      this.batchSeq = cut.payload.seq;
      this.batchHash = cut.hash;
      this.pending = [];
      return { ...res, ack: JSON.parse(Buffer.from(res.body.ack.payload as string, 'base64url').toString('utf8')) };
    }
    return { ...res, ack: null };
  }
}

/** A vendor-signed JWT for a POST: `bh` is the sha256 hex of exactly `rawBody`. */
export async function vendorPostToken(keys: { privateKey: CryptoKey; kid: string }, vendorId: string, rawBody: string): Promise<string> {
  return new SignJWT({ bh: sha256Hex(rawBody) })
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setSubject(vendorId)
    .setAudience('mallpos-mall')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(keys.privateKey);
}

/** A vendor's signed POST to the mall (the body's exact text is what `bh` covers), unless `token` is given. */
export async function vendorPost(mall: MallRig | string, keys: { privateKey: CryptoKey; kid: string }, vendorId: string, path: string, body: unknown, token?: string): Promise<HttpResult> {
  const raw = JSON.stringify(body);
  const jwt = token ?? (await vendorPostToken(keys, vendorId, raw));
  return http(`${typeof mall === 'string' ? mall : mall.mall.url}${path}`, 'POST', raw, { authorization: `Bearer ${jwt}` });
}

/** Two stores, a manufacturer and token types for exchanges: ACME (acme), BOB (bobs), MALL (the mall). */
export async function registerEconomy(mall: Pick<MallRig, 'admin'>, fees: Partial<FeeSchedule> = {}): Promise<{ acme: RawVendor; bobs: RawVendor }> {
  const acme = new RawVendor('acme', await newKey());
  const bobs = new RawVendor('bobs', await newKey());
  await mall.admin.registerVendor({ id: 'acme', name: 'ACME Market', jwk: acme.keys.publicJwk });
  await mall.admin.registerVendor({ id: 'bobs', name: 'Bob\'s Books', jwk: bobs.keys.publicJwk });
  await mall.admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
  for (const tt of scenarioTokenTypes()) await mall.admin.upsertTokenType({ ...tt, acceptedBy: tt.code === 'ACME' ? ['acme'] : tt.acceptedBy });
  await mall.admin.setFees({ ...SCENARIO_FEES, exchangeServiceBps: 100, customerDataTollMinor: 25, ...fees });
  return { acme, bobs };
}

/**
 * Two customers of acme with 100 MALL each in the mall wallet and a wallet PIN each (C1
 * with `pins[0]`, C2 with `pins[1]`), and C2 registered at bobs too: the bidders of the
 * mall-lot tests. acme bought its 500 MALL from the mall. Throws when the mall refuses a step.
 */
export async function fundBidders(mall: MallRig, acme: RawVendor, bobs: RawVendor, pins: readonly [string, string]): Promise<void> {
  const allot = await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 500, reference: 'float' });
  acme.add('allotment', [{ account: 'issuer:mall', token: 'MALL', units: -500 }, { account: 'float', token: 'MALL', units: 500 }], { token: 'MALL', units: 500, issuer: 'mall', reference: allot.id });
  for (const [c, card] of [['c1', 'C1'], ['c2', 'C2']] as const) {
    acme.register(c, card);
    acme.issue(c, 'MALL', 100, 10);
    acme.move(c, card, 'to-wallet', 'MALL', 100);
  }
  const pushed = await acme.push(mall);
  if (pushed.ack.flagged.length !== 0) throw new Error(`the mall flagged acme's set-up: ${JSON.stringify(pushed.ack.flagged)}`);
  bobs.register('b2', 'C2');
  const bobsPushed = await bobs.push(mall);
  if (bobsPushed.status !== 200) throw new Error(`bobs' set-up: HTTP ${bobsPushed.status}`);
  for (const [key, card, pin] of [['acme:pin-1', 'C1', pins[0]], ['acme:pin-2', 'C2', pins[1]]] as const) {
    const set = await vendorPost(mall, acme.keys, 'acme', '/v1/vendors/acme/wallet/pin', { key, card, pin });
    if (set.status !== 200) throw new Error(`wallet PIN of ${card}: HTTP ${set.status} ${set.text}`);
  }
}
