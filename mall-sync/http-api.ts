import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { fail, isMallposError, keyId, MallposError, sha256Hex, type WireError } from '../core/index.ts';
import { route } from '../platform/http.ts';
import type { Logger } from '../platform/logger.ts';
import { matchesHash, type MallConfig } from './config.ts';
import type { CustomerDataService } from './customer-data.ts';
import { mountEconomyRoutes } from './economy-api.ts';
import { mountInstrumentRoutes } from './instruments-api.ts';
import { mountLotRoutes } from './lots-api.ts';
import type { MallLotService } from './lots.ts';
import type { InstrumentService } from './instruments.ts';
import { pathParam, vendorParam } from './http-params.ts';
import type { BatchIngestor } from './ingest.ts';
import type { MallMetrics } from './metrics.ts';
import { idempotencyKeySchema, parseAdmin } from './schemas.ts';
import type { MallService } from './service.ts';
import type { WalletService } from './wallet.ts';
import { mountReceiptRoutes } from './receipt-page.ts';
import type { ReceiptVerifier } from './receipt-verify.ts';

export interface MallApiDeps {
  config: MallConfig;
  service: MallService;
  ingestor: BatchIngestor;
  metrics: MallMetrics;
  logger: Logger;
  /** The token of the process that owns the data directory (for local CLI commands). */
  controlToken: string;
  startedAt: number;
  wallet: WalletService;
  customerData: CustomerDataService;
  /** Checks receipts' signed proofs (public: POST /v1/receipts/verify, GET /receipts). */
  receipts: ReceiptVerifier;
  instruments: InstrumentService;
  lots: MallLotService;
}

/** Bodies of the admin API are small (a token type with 10,000 GTINs fits). */
export const ADMIN_BODY_BYTES_MAX = 1024 * 1024;

function kidParam(req: Request): string {
  const v = pathParam(req, 'kid');
  if (!keyId.safeParse(v).success) fail('MALL_ERR_NOT_FOUND', 'no such key');
  return v;
}

function query(req: Request, name: string): string | undefined {
  const v = req.query[name];
  return typeof v === 'string' ? v : undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function wireOf(err: unknown, logger: Logger): { status: number; wire: WireError } {
  if (isMallposError(err)) return { status: err.status, wire: err.toWire() };
  logger.error({ err }, 'unexpected error');
  return { status: 500, wire: { code: 'MALL_ERR_INTERNAL', message: 'internal error' } };
}

/**
 * The mall's HTTP interface. Public (the vendor <-> mall contract, docs/PROTOCOL.md):
 * POST /v1/batches, GET /v1/vendors/:vendor/{snapshot,cursor,statements},
 * GET /v1/mall-key, /health, /metrics; receipt checks: POST /v1/receipts/verify, GET /receipts.
 * Admin (Bearer admin credential): /admin/...
 * Errors are `{ "error": { code, message, details? } }` with the catalogue's status.
 */
export const VENDOR_REQUEST_AUDIENCE = 'mallpos-mall';

/** The raw body of a batch request, between the body parser and the handler. */
const rawBodies = new WeakMap<object, Buffer>();

export function createMallApi(deps: MallApiDeps): express.Express {
  const { service, ingestor, metrics, logger, config } = deps;
  const store = service.store;
  /** Before a read: every event any mall process committed, and the refusals it noted. */
  const caughtUp = () => store.flushed().then(() => service.observations.refresh());
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);

  // ---- vendor <-> mall ------------------------------------------------------------

  // `verify` only keeps the body's bytes (after any Content-Encoding), for the archive.
  const batchBody = express.json({
    limit: config.batchBodyBytesMax,
    strict: true,
    type: () => true,
    verify: (req, _res, buf) => {
      rawBodies.set(req, buf);
    },
  });
  app.post('/v1/batches', batchBody, (req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    const raw = rawBodies.get(req);
    rawBodies.delete(req);
    ingestor.ingest(req.body, raw).then(
      (result) => {
        metrics.ingestLatency.observe((performance.now() - started) / 1000);
        if (result.replayed) metrics.replays.inc();
        res.status(200).type('application/json').send(`{"ack":${result.ackText},"replayed":${result.replayed}}`);
      },
      (err: unknown) => next(err),
    );
  });

  /**
   * A vendor's snapshot, cursor and statements are its own business: the request carries
   * a short-lived JWT signed by one of the vendor's registered, unrevoked keys (aud
   * "mallpos-mall", sub the vendor, at most 5 minutes old). An unknown vendor is 404.
   */
  const vendorAuth = async (req: Request, vendor: string, rawBody?: Buffer): Promise<void> => {
    service.vendorView(vendor);
    const header = req.header('authorization') ?? '';
    const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    function refuse(why: string): never {
      return fail('MALL_ERR_UNAUTHENTICATED', `a vendor-signed request is needed: ${why}`);
    }
    if (token === '' || token.length > 4096) refuse('no token');
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      refuse('the token is malformed');
    }
    const key = kid === undefined || !keyId.safeParse(kid).success ? undefined : service.state.keys[kid];
    if (key === undefined || key.vendor !== vendor) refuse(`the key is not one of ${vendor}'s`);
    if (key.status === 'revoked') refuse('the key is revoked');
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, await importJWK(key.jwk as JWK, 'EdDSA'), { algorithms: ['EdDSA'], audience: VENDOR_REQUEST_AUDIENCE, subject: vendor, maxTokenAge: '5m' }));
    } catch {
      refuse('the token does not verify or has expired');
    }
    // A POST is signed for its body: the token's bh is the sha256 hex of the bytes sent.
    if (rawBody !== undefined && claims['bh'] !== sha256Hex(rawBody)) refuse('the token\'s bh claim is not the sha256 of this request\'s body');
  };

  app.get(
    '/v1/vendors/:vendor/snapshot',
    route(async (req) => {
      const vendor = vendorParam(req);
      await caughtUp();
      await vendorAuth(req, vendor);
      return { snapshot: await service.signedSnapshot(vendor) };
    }),
  );
  app.get(
    '/v1/vendors/:vendor/cursor',
    route(async (req) => {
      const vendor = vendorParam(req);
      await caughtUp();
      await vendorAuth(req, vendor);
      return service.cursor(vendor);
    }),
  );
  app.get(
    '/v1/vendors/:vendor/statements',
    route(async (req) => {
      const vendor = vendorParam(req);
      await caughtUp();
      await vendorAuth(req, vendor);
      return { statement: (await service.signedStatement(vendor, query(req, 'from'), query(req, 'to'))).jws };
    }),
  );
  app.get('/v1/mall-key', route(() => ({ kid: service.keys.kid, jwk: service.keys.publicJwk })));
  // A mall on PostgreSQL says here when its database is out of reach (503), and again when it is back.
  app.get(
    '/health',
    route(async (_req, res) => {
      const health = await store.health();
      if (!health.ok) res.status(503);
      return {
      ok: health.ok,
      store: store.kind,
      storeProblem: health.detail,
      name: config.name,
      currency: config.currency,
      kid: service.keys.kid,
      journalSeq: store.state.seq,
      vendors: Object.keys(store.state.vendors).length,
      batches: store.state.totals.batches,
      events: store.state.totals.events,
      alarms: store.state.totals.alarms,
      uptimeS: Math.round((Date.now() - deps.startedAt) / 1000),
      };
    }),
  );
  app.get(
    '/metrics',
    route(async (_req, res) => {
      metrics.journalSeq.set(store.state.seq);
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    }),
  );

  // ---- receipts (public) -----------------------------------------------------------

  mountReceiptRoutes(app, { verifier: deps.receipts, caughtUp, logger });

  // ---- admin -----------------------------------------------------------------------

  const admin = express.Router();
  admin.use((req, _res, next) => {
    const header = req.header('authorization') ?? '';
    const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    if (token === '' || token.length > 200 || !(matchesHash(token, config.adminTokenHash) || sameSecret(token, deps.controlToken))) {
      next(new MallposError('MALL_ERR_UNAUTHENTICATED', 'send the mall admin credential as "Authorization: Bearer <token>"'));
      return;
    }
    next();
  });
  admin.use(express.json({ limit: ADMIN_BODY_BYTES_MAX, strict: true }));
  // Reads answer only with what is durable.
  admin.use((req, _res, next) => {
    if (req.method === 'GET') caughtUp().then(() => next(), next);
    else next();
  });

  admin.get('/vendors', route(() => service.vendors()));
  admin.post('/vendors', route((req) => service.registerVendor(req.body)));
  admin.get('/vendors/:vendor', route((req) => service.vendorView(vendorParam(req))));
  admin.get('/vendors/:vendor/cursor', route((req) => service.cursor(vendorParam(req))));
  admin.post('/vendors/:vendor/gap-decision', route((req) => service.decideGap(vendorParam(req), req.body)));
  admin.post('/vendors/:vendor/keys', route((req) => service.addKey(vendorParam(req), req.body)));
  admin.post('/vendors/:vendor/keys/:kid/retire', route((req) => service.retireKey(vendorParam(req), kidParam(req))));
  admin.post('/vendors/:vendor/keys/:kid/revoke', route((req) => service.revokeKey(vendorParam(req), kidParam(req), req.body)));

  admin.get('/token-types', route(() => Object.values(store.state.tokenTypes)));
  admin.put('/token-types/:code', route((req) => service.upsertTokenType(pathParam(req, 'code'), req.body)));
  admin.get('/fees', route(() => store.state.fees));
  admin.put('/fees', route((req) => service.setFees(req.body)));
  admin.get('/parties', route(() => Object.values(store.state.parties)));
  admin.post('/parties', route((req) => service.addParty(req.body)));

  admin.get(
    '/allotments',
    route((req) => {
      const vendor = query(req, 'vendor');
      return Object.values(store.state.allotments).filter((a) => vendor === undefined || a.vendor === vendor);
    }),
  );
  admin.post(
    '/allotments',
    route((req) => {
      const raw = req.header('idempotency-key');
      if (raw === undefined) fail('MALL_ERR_VALIDATION', 'send an Idempotency-Key header with every allotment');
      return service.allot(parseAdmin(idempotencyKeySchema, raw), req.body);
    }),
  );

  admin.get('/positions', route(() => service.positions()));
  admin.get('/alarms', route(() => store.state.alarms));
  admin.get(
    '/flagged',
    route((req) => {
      const vendor = query(req, 'vendor');
      const vendors = vendor === undefined ? Object.values(store.state.vendors) : [Object.hasOwn(store.state.vendors, vendor) ? store.state.vendors[vendor] : undefined].filter((v) => v !== undefined);
      return vendors.flatMap((v) => v.flagged);
    }),
  );
  admin.get('/statements', route(async (req) => ({ statements: await service.statements(query(req, 'from'), query(req, 'to')) })));

  mountEconomyRoutes(app, admin, { store, wallet: deps.wallet, customerData: deps.customerData, vendorAuth, caughtUp });
  mountInstrumentRoutes(app, admin, { instruments: deps.instruments, vendorAuth, caughtUp });
  mountLotRoutes(app, admin, { lots: deps.lots, vendorAuth, caughtUp });
  app.use('/admin', admin);

  app.use((_req, _res, next) => next(new MallposError('MALL_ERR_NOT_FOUND', 'no such endpoint')));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const isBatch = req.path === '/v1/batches';
    const e = err as { type?: string; limit?: number };
    let status: number;
    let wire: WireError;
    if (e.type === 'entity.too.large') {
      status = 413;
      // The parser names the limit it applied: the admin API, the vendor endpoints and batches each have their own.
      wire = { code: 'MALL_ERR_TOO_LARGE', message: `the ${isBatch ? 'batch' : 'request'} is larger than ${e.limit ?? (isBatch ? config.batchBodyBytesMax : ADMIN_BODY_BYTES_MAX)} bytes` };
    } else if (e.type === 'entity.parse.failed' || e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
      status = 400;
      wire = { code: isBatch ? 'MALL_ERR_MALFORMED' : 'MALL_ERR_VALIDATION', message: 'the request body is not valid JSON' };
    } else if (e.type === 'request.aborted') {
      res.end();
      return;
    } else {
      ({ status, wire } = wireOf(err, logger));
    }
    if (isBatch) {
      metrics.rejected.inc({ code: wire.code });
      logger.info({ code: wire.code, message: wire.message }, 'batch refused');
    } else {
      metrics.requestsRejected.inc({ code: wire.code });
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json({ error: wire });
  });
  return app;
}
