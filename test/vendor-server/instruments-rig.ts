import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import express, { type Request, type Response } from 'express';
import { FlattenedSign } from 'jose';
import {
  bodyHash,
  DEFAULT_INSTRUMENT_POLICY,
  ERRORS,
  instrumentCode,
  SNAPSHOT_TYP,
  type ErrorCode,
  type InstrumentDirectory,
  type InstrumentKind,
  type InstrumentPolicy,
  type InstrumentStatus,
  type SnapshotPayload,
  type TokenType,
} from '../../core/index.ts';
import { signInstrument } from '../../platform/instruments.ts';
import { createSigningKey, type SigningKey } from '../../platform/key-files.ts';
import { createTlsIdentity } from '../../platform/tls.ts';
import { dataPaths, loadConfig, loadKeys, writeConfig } from '../../vendor-server/config.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

/**
 * A store ready to take gift certificates and coupons: the demo store (ACME), linked to
 * a small mall that serves a signed snapshot with an instrument key directory and the
 * contract's instrument endpoints (reserve, release, status; docs/PROTOCOL.md "Bearer
 * instruments"), each idempotent by its key. The mall can be taken down (connections cut)
 * to make the store judge instruments offline. Issuers: the mall (gift certificates in
 * MALL), Sunny Foods (coupons in SUNNY) and the store itself (gift certificates in ACME).
 */

export interface IssuedRecord {
  kind: InstrumentKind;
  issuer: string;
  serial: string;
  token: string;
  faceUnits: number;
  remainingUnits: number;
  heldUnits: number;
  state: InstrumentStatus['state'];
  expiresAt: string;
  compact: string;
}

export interface InstrumentMall {
  url: string;
  caPem: string;
  mallKey: SigningKey;
  /** The mall's instrument key (issuer `mall`, gift certificates) and Sunny Foods' (coupons). */
  mallInstrumentKey: SigningKey;
  sunnyKey: SigningKey;
  policy: InstrumentPolicy;
  tokenTypes: TokenType[];
  /** Store keys listed for gift certificates, by vendor id. */
  storeKeys: Map<string, SigningKey['publicJwk'] & { kid: string }>;
  instruments: Map<string, IssuedRecord>;
  reservations: Map<string, { id: string; vendor: string; code: string; units: number; state: 'held' | 'released' }>;
  reserveCalls: number;
  down: boolean;
  snapshot(vendor: string): SnapshotPayload;
  /** The mall learns of a certificate a store signed and sold, as from the batch that carries the sale. */
  learn(issuer: string, code: string, compact: string, token: string, units: number): void;
  /** A mall gift certificate (or a Sunny coupon), signed now, known to the mall as sold. */
  issue(kind: InstrumentKind, units: number, opts?: { expiresInS?: number; serial?: string; issuedAgoS?: number }): Promise<{ code: string; compact: string }>;
  close(): Promise<void>;
}

class Refusal extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

let serials = 0;

export async function startInstrumentMall(dir: string, policy: InstrumentPolicy = DEFAULT_INSTRUMENT_POLICY): Promise<InstrumentMall> {
  const tls = await createTlsIdentity(join(dir, 'tls'), 'Instrument mall double authority', ['127.0.0.1']);
  const mallKey = await createSigningKey(join(dir, 'mall-key.jwk.json'), 'mall key', 'MALL_ERR_CONFIG');
  const mallInstrumentKey = await createSigningKey(join(dir, 'mall-instrument-key.jwk.json'), 'mall instrument key', 'MALL_ERR_CONFIG');
  const sunnyKey = await createSigningKey(join(dir, 'sunny-key.jwk.json'), 'sunny key', 'MALL_ERR_CONFIG');
  const stored = new Map<string, { hash: string; status: number; body: unknown }>();
  let reservationSerial = 0;

  const statusOf = (r: IssuedRecord): InstrumentStatus => ({
    code: instrumentCode(r.issuer, r.serial),
    issuer: r.issuer,
    serial: r.serial,
    kind: r.kind,
    token: r.token,
    faceUnits: r.faceUnits,
    remainingUnits: r.remainingUnits - r.heldUnits,
    heldUnits: r.heldUnits,
    state: r.state,
    expiresAt: r.expiresAt,
    soldBy: null,
    doubleSpent: false,
    compact: r.compact,
    asOf: new Date().toISOString(),
  });

  const m: InstrumentMall = {
    url: '',
    caPem: tls.caPem,
    mallKey,
    mallInstrumentKey,
    sunnyKey,
    policy,
    tokenTypes: demoTokenTypes('acme'),
    storeKeys: new Map(),
    instruments: new Map(),
    reservations: new Map(),
    reserveCalls: 0,
    down: false,
    snapshot(vendor) {
      const directory: InstrumentDirectory = {
        keys: [
          { kid: mallInstrumentKey.kid, issuer: 'mall', kinds: ['gift'], jwk: { kty: 'OKP', crv: 'Ed25519', x: mallInstrumentKey.publicJwk.x }, validFrom: '2020-01-01T00:00:00.000Z', validTo: null },
          { kid: sunnyKey.kid, issuer: 'sunny-foods', kinds: ['coupon'], jwk: { kty: 'OKP', crv: 'Ed25519', x: sunnyKey.publicJwk.x }, validFrom: '2020-01-01T00:00:00.000Z', validTo: null },
          ...[...m.storeKeys].map(([issuer, jwk]) => ({ kid: jwk.kid, issuer, kinds: ['gift' as const], jwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x: jwk.x }, validFrom: '2020-01-01T00:00:00.000Z', validTo: null })),
        ],
        policy: m.policy,
      };
      return {
        v: 1,
        vendor,
        issuedAt: new Date().toISOString(),
        mall: { kid: mallKey.kid, jwk: mallKey.publicJwk as unknown as Record<string, unknown> },
        tokenTypes: m.tokenTypes,
        fees: { royaltyBps: 250, royaltyBpsByVendor: {}, royaltyBpsByToken: {}, reimbursementTollMinor: 5, customerDataTollMinor: 10, exchangeServiceBps: 100 },
        vendors: [],
        allotments: [],
        instruments: directory,
      };
    },
    async issue(kind, units, opts = {}) {
      const nowS = Math.floor(Date.now() / 1000) - (opts.issuedAgoS ?? 0);
      serials += 1;
      const serial = opts.serial ?? `T${String(process.pid % 1000).padStart(3, '0')}${String(serials).padStart(6, '0')}`;
      const issuer = kind === 'gift' ? 'mall' : 'sunny-foods';
      const token = kind === 'gift' ? 'MALL' : 'SUNNY';
      const x = nowS + (opts.expiresInS ?? 365 * 86_400);
      const compact = await signInstrument(kind, { i: issuer, s: serial, t: token, u: units, a: nowS, x }, kind === 'gift' ? mallInstrumentKey : sunnyKey);
      const code = instrumentCode(issuer, serial);
      m.instruments.set(code, { kind, issuer, serial, token, faceUnits: units, remainingUnits: units, heldUnits: 0, state: 'live', expiresAt: new Date(x * 1000).toISOString(), compact });
      return { code, compact };
    },
    learn(issuer, code, compact, token, units) {
      const serial = code.split('-').at(-2) ?? '';
      m.instruments.set(code, { kind: 'gift', issuer, serial, token, faceUnits: units, remainingUnits: units, heldUnits: 0, state: 'live', expiresAt: new Date(Date.now() + 365 * 86_400_000).toISOString(), compact });
    },
    close: () => Promise.resolve(),
  };

  const app = express();
  app.disable('x-powered-by');
  app.use((req, _res, next) => {
    if (m.down) {
      req.socket.destroy();
      return;
    }
    next();
  });
  app.use(express.json({ limit: '64kb' }));
  const route = (run: (req: Request) => unknown) => (req: Request, res: Response) => {
    Promise.resolve()
      .then(() => run(req))
      .then(
        (body) => res.status(200).json(body),
        (err: unknown) => {
          if (err instanceof Refusal) res.status(ERRORS[err.code].status).json({ error: { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) } });
          else res.status(500).json({ error: { code: 'MALL_ERR_INTERNAL', message: (err as Error).message } });
        },
      );
  };
  /** The idempotent POST of the contract: a key seen before answers what it answered, another body is refused. */
  const once = (vendor: string, body: { key: string }, run: () => unknown): unknown => {
    const k = `${vendor}\u0000${body.key}`;
    const hash = bodyHash(body);
    const seen = stored.get(k);
    if (seen !== undefined) {
      if (seen.hash !== hash) throw new Refusal('MALL_ERR_VALIDATION', 'this idempotency key was already used for another request');
      return seen.body;
    }
    const answer = run();
    stored.set(k, { hash, status: 200, body: answer });
    return answer;
  };
  const vendorOf = (req: Request) => String(req.params['vendor'] ?? '');

  app.get('/health', route(() => ({ ok: true })));
  app.get(
    '/v1/vendors/:vendor/snapshot',
    route(async (req) => {
      const payload = m.snapshot(vendorOf(req));
      const jws = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'EdDSA', kid: mallKey.kid, typ: SNAPSHOT_TYP }).sign(mallKey.privateKey);
      return { snapshot: jws };
    }),
  );
  app.post(
    '/v1/vendors/:vendor/instruments/reservations',
    route((req) => {
      const vendor = vendorOf(req);
      const body = req.body as { key: string; instrument: string; units: number };
      return once(vendor, body, () => {
        m.reserveCalls += 1;
        const r = [...m.instruments.values()].find((i) => i.compact === body.instrument);
        if (r === undefined) throw new Refusal('MALL_ERR_INSTRUMENT_UNKNOWN', 'the mall has no record of this gift certificate or coupon');
        if (r.state === 'voided') throw new Refusal('MALL_ERR_INSTRUMENT_VOIDED', 'this gift certificate was voided');
        const left = r.remainingUnits - r.heldUnits;
        if (left <= 0 || r.state === 'spent') throw new Refusal('MALL_ERR_INSTRUMENT_SPENT', 'this coupon was already used, or nothing remains on this gift certificate');
        if (body.units > left) throw new Refusal('MALL_ERR_INSTRUMENT_INSUFFICIENT', `only ${left} remain`, { remainingUnits: left });
        reservationSerial += 1;
        const id = `ir-${String(reservationSerial).padStart(6, '0')}`;
        const code = instrumentCode(r.issuer, r.serial);
        // The double takes a reservation as redeemed at once: a capture by the batch changes nothing more here.
        r.remainingUnits -= r.kind === 'coupon' ? r.remainingUnits : body.units;
        if (r.remainingUnits === 0) r.state = 'spent';
        m.reservations.set(id, { id, vendor, code, units: body.units, state: 'held' });
        return { reservation: { id, code, token: r.token, units: body.units, state: 'held', expiresAt: new Date(Date.now() + 900_000).toISOString() }, instrument: statusOf(r) };
      });
    }),
  );
  app.post(
    '/v1/vendors/:vendor/instruments/reservations/:id/release',
    route((req) => {
      const vendor = vendorOf(req);
      const body = req.body as { key: string };
      return once(vendor, body, () => {
        const res = m.reservations.get(String(req.params['id']));
        if (res === undefined || res.vendor !== vendor) throw new Refusal('MALL_ERR_RESERVATION_UNKNOWN', 'no such reservation for this store');
        const r = m.instruments.get(res.code);
        if (res.state === 'held' && r !== undefined) {
          r.remainingUnits += r.kind === 'coupon' ? r.faceUnits : res.units;
          r.state = 'live';
        }
        res.state = 'released';
        return { reservation: { ...res, state: 'released' } };
      });
    }),
  );
  app.post(
    '/v1/vendors/:vendor/instruments/:code/void',
    route((req) => {
      const vendor = vendorOf(req);
      const body = req.body as { key: string; reason: string };
      return once(vendor, body, () => {
        const r = m.instruments.get(String(req.params['code']));
        if (r === undefined) throw new Refusal('MALL_ERR_INSTRUMENT_UNKNOWN', 'the mall has no record of this gift certificate or coupon');
        if (r.issuer !== vendor || r.remainingUnits !== r.faceUnits || r.heldUnits > 0 || r.state === 'voided') throw new Refusal('MALL_ERR_INSTRUMENT_NOT_VOIDABLE', 'only an unsold certificate, or one this store sold and nobody redeemed, can be voided');
        r.state = 'voided';
        return statusOf(r);
      });
    }),
  );
  app.get(
    '/v1/vendors/:vendor/instruments/:code',
    route((req) => {
      const r = m.instruments.get(String(req.params['code']));
      if (r === undefined) throw new Refusal('MALL_ERR_INSTRUMENT_UNKNOWN', 'the mall has no record of this gift certificate or coupon');
      return statusOf(r);
    }),
  );

  const server: Server = createServer({ key: tls.keyPem, cert: tls.certPem }, app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  m.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  m.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return m;
}

/**
 * The demo store linked to `mall`, its key listed for gift certificates, and the mall's
 * snapshot already in its cache (as after a pull), so that it can judge instruments from
 * its first request even with the mall down.
 */
export async function linkInstrumentStore(vendorDir: string, mall: InstrumentMall): Promise<InitResult> {
  const init = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
  const keys = await loadKeys(vendorDir);
  mall.storeKeys.set('acme', { ...keys.publicJwk, kid: keys.kid });
  const config = await loadConfig(vendorDir);
  await writeConfig(vendorDir, { ...config, mall: { url: mall.url, jwk: mall.mallKey.publicJwk as unknown as Record<string, unknown>, caPem: mall.caPem, snapshotMaxAgeHours: 72, batchEventsMax: 500, batchAgeMs: 100 } });
  const syncDir = join(dataPaths(vendorDir).ledgerDir, 'sync');
  await mkdir(syncDir, { recursive: true, mode: 0o700 });
  await writeFile(join(syncDir, 'snapshot.json'), JSON.stringify({ jws: null, payload: mall.snapshot('acme') }), { mode: 0o600 });
  return init;
}
