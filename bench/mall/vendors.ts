import { calculateJwkThumbprint, exportJWK, FlattenedSign, generateKeyPair, type CryptoKey } from 'jose';
import {
  BATCH_EVENTS_MAX,
  BATCH_TYP,
  BATCH_VERSION,
  batchPayloadText,
  batchTotals,
  REDEEMED_ACCOUNT,
  sha256Hex,
  ZERO_HASH,
  type BatchPayload,
  type FeeSchedule,
  type JournalEvent,
  type TokenType,
} from '../../core/index.ts';
import { DEMO_PRODUCTS, demoSunnyProducts, demoTokenTypes } from '../../vendor-server/init.ts';

/**
 * Simulated vendors for the mall bench: each has its own Ed25519 key (kid = JWK
 * thumbprint, as `vendor-server init` makes it), its own token type, and a journal it
 * invents on demand. Batches are cut and signed exactly as vendor-server/sync cuts them:
 * the events' exact text in seq order, each event chained to the previous one by the
 * sha256 of its text, each batch chained to the previous batch by the sha256 of its
 * payload, totals from the postings, a flattened JWS with alg EdDSA, kid and typ
 * mallpos-batch+jws.
 *
 * The sales are the vendor server's sales in shape and size (about 1.4 kB each): three
 * priced lines of the demo catalogue, tokens allocated to lines, postings from the
 * customer's account to `redeemed`, cash for the rest. Every one of them is a sale the
 * mall clears without a flag: mall tokens, the vendor's own tokens, now and then its
 * neighbour's tokens (a reimbursement between vendors) and manufacturer coupons on the
 * manufacturer's own products (a reimbursement by a non-vendor issuer, with a toll).
 */

export const MANUFACTURER = { id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' as const };

export const BENCH_FEES: FeeSchedule = {
  royaltyBps: 250,
  royaltyBpsByVendor: {},
  royaltyBpsByToken: { SUNNY: 100 },
  reimbursementTollMinor: 5,
  customerDataTollMinor: 10,
  exchangeServiceBps: 100,
};

/** Events cut into one batch; the vendor's default (SYNC_DEFAULTS.batchEventsMax). */
export const BATCH_EVENTS = 500;
const CUSTOMERS_PER_VENDOR = 2_000;
const TERMINALS_PER_VENDOR = 4;
const SALE_LINES = 3;

export interface SimVendor {
  index: number;
  id: string;
  name: string;
  /** The vendor's own token type code. */
  token: string;
  /** The previous vendor's token, which this vendor also accepts (a reimbursement when taken). */
  neighbourToken: string;
  privateKey: CryptoKey;
  kid: string;
  publicJwk: Record<string, unknown>;
  /** Chain state after the last batch cut. */
  batchSeq: number;
  batchHash: string;
  eventSeq: number;
  eventHash: string;
  /** Time of the last sale journalled (ms), so the vendor's event times never step back. */
  lastAtMs: number;
  rng: () => number;
}

/** One signed batch ready to send: the exact HTTP body and what the ack must say. */
export interface SignedBatch {
  vendor: string;
  seq: number;
  events: number;
  /** sha256 hex of the payload bytes: the ack's batchHash. */
  hash: string;
  /** Hash of the batch's last event: the ack's lastEventHash. */
  lastEventHash: string;
  /** JSON of the flattened JWS, the body of POST /v1/batches. */
  body: Buffer;
}

/** A small seeded PRNG (mulberry32) so that every run invents the same sales. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function pick<T>(rng: () => number, items: readonly T[]): T {
  const item = items[Math.floor(rng() * items.length)];
  if (item === undefined) throw new Error('assertion failed: pick from a non-empty list');
  return item;
}

function vendorId(i: number): string {
  return `v${String(i + 1).padStart(3, '0')}`;
}

function tokenCode(i: number): string {
  return `V${String(i + 1).padStart(3, '0')}`;
}

export async function makeVendors(count: number): Promise<SimVendor[]> {
  const vendors: SimVendor[] = [];
  for (let i = 0; i < count; i++) {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(jwk);
    vendors.push({
      index: i,
      id: vendorId(i),
      name: `Store ${i + 1}`,
      token: tokenCode(i),
      neighbourToken: tokenCode((i + count - 1) % count),
      privateKey,
      kid,
      publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string, kid, alg: 'EdDSA', use: 'sig' },
      batchSeq: 0,
      batchHash: ZERO_HASH,
      eventSeq: 0,
      eventHash: ZERO_HASH,
      lastAtMs: 0,
      rng: vendorRng(i),
    });
  }
  return vendors;
}

function vendorRng(index: number): () => number {
  return prng(0x9e3779b1 ^ (index + 1));
}

/** The same vendor (keys, token) at the start of its history again, for another mall. */
export function restartChain(v: SimVendor): SimVendor {
  return { ...v, batchSeq: 0, batchHash: ZERO_HASH, eventSeq: 0, eventHash: ZERO_HASH, lastAtMs: 0, rng: vendorRng(v.index) };
}

/**
 * The token types the mall registers: mall tokens and the manufacturer's coupon (as in
 * the demo), and one store token per vendor, accepted there and at the next vendor.
 */
export function benchTokenTypes(vendors: readonly SimVendor[]): TokenType[] {
  const shared = demoTokenTypes('unused').filter((t) => t.kind !== 'vendor');
  const own: TokenType[] = vendors.map((v, i) => ({
    code: v.token,
    name: `${v.name} token`,
    kind: 'vendor',
    issuer: v.id,
    faceValueMinor: 5,
    currency: 'EUR',
    acceptedBy: [v.id, (vendors[(i + 1) % vendors.length] as SimVendor).id].filter((id, k, all) => all.indexOf(id) === k),
  }));
  return [...shared, ...own];
}

interface CatalogItem {
  gtin: string;
  name: string;
  priceMinor: number;
  /** Token prices keyed by MALL, SUNNY and STORE (the vendor's own token, whatever its code). */
  tokens: Record<string, number>;
  sunny: boolean;
}

const SUNNY_GTINS = new Set(demoSunnyProducts().map((g) => g.padStart(14, '0')));
const CATALOG: CatalogItem[] = DEMO_PRODUCTS.map((p) => {
  const tokens: Record<string, number> = {};
  for (const [code, units] of Object.entries(p.tokens)) tokens[code === 'ACME' ? 'STORE' : code] = units;
  return { gtin: p.code, name: p.name, priceMinor: p.priceMinor, tokens, sunny: SUNNY_GTINS.has(p.code.padStart(14, '0')) };
});
const SUNNY_ITEMS = CATALOG.filter((p) => p.sunny);
const MALL_ITEMS = CATALOG.filter((p) => p.tokens['MALL'] !== undefined && !p.sunny);

type SaleEvent = Extract<JournalEvent, { type: 'sale' }>;

/**
 * The vendor's next sale, as its LedgerService would journal it. Line 1 is paid with
 * mall tokens; line 2 with the store's own tokens (every fifth sale with the
 * neighbour's); line 3 with manufacturer coupons when it is one of the manufacturer's
 * products (every fourth sale), otherwise in cash.
 */
function nextSale(v: SimVendor, seq: number, at: string): Omit<SaleEvent, 'prev'> {
  const rng = v.rng;
  const sunnySale = seq % 4 === 0;
  const chosen: CatalogItem[] = [];
  while (chosen.length < SALE_LINES - 1) {
    const p = pick(rng, MALL_ITEMS);
    if (!chosen.includes(p)) chosen.push(p);
  }
  chosen.push(sunnySale ? pick(rng, SUNNY_ITEMS) : pick(rng, CATALOG.filter((p) => !chosen.includes(p))));
  const lineToken = ['MALL', seq % 5 === 0 ? v.neighbourToken : v.token, sunnySale ? 'SUNNY' : null];
  const lines: SaleEvent['data']['lines'] = [];
  const allocations: SaleEvent['data']['allocations'] = [];
  const debits: Record<string, number> = {};
  let totalMinor = 0;
  let coveredMinor = 0;
  for (const [k, p] of chosen.entries()) {
    const qty = 1 + Math.floor(rng() * 3);
    const unitTokenPrices: Record<string, number> = {};
    for (const [code, units] of Object.entries(p.tokens)) unitTokenPrices[code === 'STORE' ? v.token : code] = units;
    // A store that takes its neighbour's tokens prices its goods in them too.
    if (p.tokens['STORE'] !== undefined) unitTokenPrices[v.neighbourToken] = p.tokens['STORE'];
    const line = { lineNo: k + 1, gtin: p.gtin, name: p.name, qty, unitPriceMinor: p.priceMinor, totalMinor: qty * p.priceMinor, unitTokenPrices };
    lines.push(line);
    totalMinor += line.totalMinor;
    const token = lineToken[k] ?? null;
    if (token === null) continue;
    const unitUnits = p.tokens[token === 'MALL' || token === 'SUNNY' ? token : 'STORE'];
    if (unitUnits === undefined) throw new Error(`assertion failed: ${p.name} has a ${token} price`);
    const units = qty * unitUnits;
    allocations.push({ lineNo: line.lineNo, token, units, coversMinor: line.totalMinor });
    debits[token] = (debits[token] ?? 0) + units;
    coveredMinor += line.totalMinor;
  }
  const customer = `cust-${String(1 + Math.floor(rng() * CUSTOMERS_PER_VENDOR)).padStart(6, '0')}`;
  const postings: SaleEvent['postings'] = [];
  const balancesAfter: Record<string, number> = {};
  for (const [token, units] of Object.entries(debits)) {
    postings.push({ account: `customer:${customer}`, token, units: -units });
    postings.push({ account: REDEEMED_ACCOUNT, token, units });
    balancesAfter[token] = Math.floor(rng() * 5_000);
  }
  const dueMinor = totalMinor - coveredMinor;
  const tenderedMinor = dueMinor === 0 ? 0 : Math.ceil(dueMinor / 500) * 500;
  const terminal = `t${String(1 + (seq % TERMINALS_PER_VENDOR)).padStart(3, '0')}`;
  return {
    seq,
    v: 1,
    vendor: v.id,
    at,
    terminal,
    cashier: seq % 2 === 0 ? 'ana' : 'sam',
    key: `${terminal}:sale:${v.id}-${seq}-${Math.floor(rng() * 2 ** 32).toString(16).padStart(8, '0')}`,
    bodyHash: sha256Hex(`${v.id}:${seq}:body`),
    type: 'sale',
    postings,
    data: {
      saleId: `S${String(seq).padStart(10, '0')}`,
      customer,
      currency: 'EUR',
      lines,
      allocations,
      debits,
      totalMinor,
      cash: { dueMinor, tenderedMinor, changeMinor: tenderedMinor - dueMinor },
      balancesAfter,
    },
  };
}

const encoder = new TextEncoder();

/**
 * Journals the vendor's next `count` sales and cuts them into its next signed batch,
 * advancing the vendor's chain state as its pusher does once the mall acked.
 */
export async function nextBatch(v: SimVendor, count = BATCH_EVENTS): Promise<SignedBatch> {
  if (!(count >= 1 && count <= BATCH_EVENTS_MAX)) throw new Error(`assertion failed: a batch holds 1 to ${BATCH_EVENTS_MAX} events, not ${count}`);
  const texts: string[] = [];
  const events: SaleEvent[] = [];
  let prev = v.eventHash;
  const fromSeq = v.eventSeq + 1;
  // The sales happened just now, one a millisecond, ending as the batch is cut: the mall
  // judges event times against their arrival (within a clock skew of minutes), and a
  // batch reaches it within seconds of being cut, as a live store's pusher sends it. A
  // vendor cutting faster than a sale a millisecond runs ahead by at most that much.
  const firstAtMs = Math.max(Date.now() - count + 1, v.lastAtMs + 1);
  for (let seq = fromSeq; seq < fromSeq + count; seq++) {
    const { seq: s, ...rest } = nextSale(v, seq, new Date(firstAtMs + seq - fromSeq).toISOString());
    // The journal writes seq and prev first (platform/storage/journal.ts).
    const event = { seq: s, prev, ...rest } as SaleEvent;
    const text = JSON.stringify(event);
    texts.push(text);
    events.push(event);
    prev = sha256Hex(text);
  }
  const lastAt = firstAtMs + count - 1;
  const payload: BatchPayload = {
    v: BATCH_VERSION,
    vendor: v.id,
    seq: v.batchSeq + 1,
    prevBatchHash: v.batchHash,
    fromSeq,
    toSeq: fromSeq + count - 1,
    createdAt: new Date(lastAt).toISOString(),
    totals: batchTotals(events),
    events: texts,
  };
  // RFC 8785 canonical JSON: the only payload text the mall accepts.
  const bytes = encoder.encode(batchPayloadText(payload));
  const jws = await new FlattenedSign(bytes).setProtectedHeader({ alg: 'EdDSA', kid: v.kid, typ: BATCH_TYP }).sign(v.privateKey);
  const hash = sha256Hex(bytes);
  v.batchSeq = payload.seq;
  v.batchHash = hash;
  v.eventSeq = payload.toSeq;
  v.eventHash = prev;
  v.lastAtMs = lastAt;
  return {
    vendor: v.id,
    seq: payload.seq,
    events: count,
    hash,
    lastEventHash: prev,
    body: Buffer.from(JSON.stringify({ protected: jws.protected, payload: jws.payload, signature: jws.signature })),
  };
}

/**
 * The next `batchesPerVendor` batches of every vendor, as lists in send order per vendor.
 * Generating is not part of any measurement.
 */
export async function nextRound(vendors: readonly SimVendor[], batchesPerVendor: number, eventsPerBatch = BATCH_EVENTS): Promise<SignedBatch[][]> {
  const round: SignedBatch[][] = [];
  for (const v of vendors) {
    const list: SignedBatch[] = [];
    for (let b = 0; b < batchesPerVendor; b++) list.push(await nextBatch(v, eventsPerBatch));
    round.push(list);
  }
  return round;
}
