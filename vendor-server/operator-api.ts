import express, { type NextFunction, type Request, type Response } from 'express';
import {
  allotmentRequest,
  customerPinSet,
  dayDate,
  entityId,
  fail,
  idempotencyKey,
  issuanceRequest,
  MallposError,
  pairRequest,
  parse,
  productUpsert,
  staffUpsert,
  terminalCreate,
  tokenTypeSchema,
  type JournalEvent,
} from '../core/index.ts';
import type { AccessStore, StaffRecord } from './access.ts';
import { emptyDay, own } from './ledger/state.ts';
import { customerRegisterOperator } from '../core/economy-requests.ts';
import { route } from '../platform/http.ts';
import type { VendorConfig, VendorKeys } from './config.ts';
import type { LedgerService } from './ledger/service.ts';
import type { CashierDayService } from './cashier-day/service.ts';
import type { OfflineService } from './offline.ts';
import type { IntegrityStatus } from './ledger/store.ts';
import type { Logger } from '../platform/logger.ts';
import type { VendorMetrics } from './metrics.ts';
import { pairedCredentials } from './terminal-auth.ts';
import type { TerminalGateway } from './terminal-socket.ts';
import { unconfiguredStatus, type MallSync } from './sync/mall-sync-client.ts';
import { toWireError } from './terminal-socket.ts';
import { cashierDayReference, cashierDayRoutes } from './cashier-day/operator-routes.ts';
import { lotCancelRequest, lotCreateRequest, lotId } from '../core/auctions.ts';
import type { AuctionService } from './auctions/service.ts';

export interface OperatorApiDeps {
  config: VendorConfig;
  ledger: LedgerService;
  cashierDay: CashierDayService;
  /** Offline selling: what each till reports it holds (absent: not shown). */
  offline?: OfflineService;
  access: AccessStore;
  keys: VendorKeys;
  logger: Logger;
  metrics: VendorMetrics;
  gateway: () => TerminalGateway;
  sync: () => MallSync | null;
  startedAt: number;
  /** The ledger's integrity audit; damage makes /health say degraded. */
  integrity?: () => IntegrityStatus;
  /** Auction lots (absent: no /api/lots). */
  auctions?: AuctionService;
}

export const HTTP_BODY_BYTES_MAX = 64 * 1024;
const PAIR_ATTEMPTS_PER_MINUTE = 20;

function keyOf(req: Request): string {
  const raw = req.header('idempotency-key');
  if (raw === undefined) fail('VND_ERR_IDEMPOTENCY_KEY', 'send an Idempotency-Key header with every money-changing request');
  return `op:${parse(idempotencyKey, raw)}`;
}

function param(req: Request, name: string): string {
  const v = req.params[name];
  if (typeof v !== 'string') fail('CORE_ERR_VALIDATION', `missing ${name}`);
  return v;
}

/** A path segment that names a customer, terminal or staff member: one strict pattern. */
function idParam(req: Request, name: string): string {
  return parse(entityId, param(req, name));
}

const CSV_HEADER = 'seq,at,type,terminal,cashier,reference,account,token,units';

function csvField(v: string | number | null): string {
  const s = v === null ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One CSV row per posting; events without postings get one row naming them. */
export function eventCsvRows(e: JournalEvent): string[] {
  const reference =
    e.type === 'sale' ? e.data.saleId
    : e.type === 'reversal' ? `${e.data.refundId} reverses ${e.data.saleId}`
    : e.type === 'allotment' ? e.data.reference
    : e.type === 'issuance' ? `${e.data.reason} ${e.data.customer}`
    : e.type === 'customer.registered' ? e.data.id
    : e.type === 'product.upserted' ? e.data.gtin
    : e.type === 'token-type.upserted' ? e.data.code
    : e.type === 'lot.opened' || e.type === 'lot.bid' || e.type === 'lot.cancelled' || e.type === 'lot.closed' ? e.data.lotId
    : cashierDayReference(e);
  const head = [e.seq, e.at, e.type, e.terminal, e.cashier, reference].map(csvField).join(',');
  if (e.postings.length === 0) return [`${head},,,`];
  return e.postings.map((p) => `${head},${csvField(p.account)},${csvField(p.token)},${p.units}`);
}

export function createOperatorApi(deps: OperatorApiDeps): express.Express {
  const { ledger, access, logger, metrics, config } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(express.json({ limit: HTTP_BODY_BYTES_MAX, strict: true }));

  const op = { terminal: null, cashier: null };
  const syncStatus = () => {
    const sync = deps.sync();
    return sync === null ? Promise.resolve(unconfiguredStatus(ledger.state.seq)) : sync.status();
  };

  // Unauthenticated: health, metrics (no secrets in them) and pairing by one-time code.
  app.get(
    '/health',
    route(async () => {
      const sync = await syncStatus();
      const integrity = deps.integrity?.() ?? null;
      return {
        ok: integrity?.state !== 'damaged',
        status: integrity?.state === 'damaged' ? 'degraded' : 'ok',
        integrity,
        vendorId: config.vendorId,
        storeName: config.storeName,
        journalSeq: ledger.state.seq,
        journalBytes: ledger.journal.bytes,
        uptimeS: Math.round((Date.now() - deps.startedAt) / 1000),
        sync: { configured: sync.configured, eventsWaiting: sync.eventsWaiting, oldestWaitingAgeS: sync.oldestWaitingAgeS, lastAckAt: sync.lastAckAt, lastError: sync.lastError },
      };
    }),
  );
  app.get(
    '/metrics',
    route(async (_req, res) => {
      metrics.journalBytes.set(ledger.journal.bytes);
      metrics.journalSeq.set(ledger.state.seq);
      const sync = await syncStatus();
      metrics.syncWaiting.set(sync.eventsWaiting);
      metrics.syncOldestAge.set(sync.oldestWaitingAgeS ?? 0);
      metrics.syncLastAck.set(sync.lastAckAt === null ? 0 : Date.parse(sync.lastAckAt) / 1000);
      deps.offline?.checkAlarms();
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    }),
  );

  const pairAttempts = new Map<string, { windowStart: number; n: number }>();
  app.post(
    '/pair',
    route(async (req) => {
      const who = req.socket.remoteAddress ?? 'unknown';
      const now = Date.now();
      const slot = pairAttempts.get(who);
      if (slot === undefined || now - slot.windowStart > 60_000) pairAttempts.set(who, { windowStart: now, n: 1 });
      else if (++slot.n > PAIR_ATTEMPTS_PER_MINUTE) fail('VND_ERR_RATE_LIMITED');
      const { code } = parse(pairRequest, req.body);
      const { terminal, credentialId } = await access.redeemCode(code);
      // Connections still using the credential this pairing replaced are closed, saying why.
      const replaced = await deps.gateway().disconnectReplaced(terminal.id, credentialId);
      logger.info({ terminal: terminal.id, replaced }, 'terminal paired');
      return pairedCredentials(deps, terminal, credentialId);
    }),
  );

  const api = express.Router();
  api.use((req, _res, next) => {
    const header = req.header('authorization') ?? '';
    const token = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
    if (token === '' || !access.isOperator(token)) {
      next(new MallposError('VND_ERR_UNAUTHENTICATED', 'send the operator credential as "Authorization: Bearer <token>"'));
      return;
    }
    next();
  });

  api.get('/products', route(() => Object.values(ledger.state.products)));
  api.get('/products/:code', route((req) => ledger.productView(param(req, 'code'))));
  api.put(
    '/products/:code',
    route((req) => {
      const body = parse(productUpsert, { ...(req.body as object), code: param(req, 'code') });
      return ledger.upsertProduct(op, body);
    }),
  );

  api.get('/token-types', route(() => Object.values(ledger.state.tokenTypes)));
  api.put(
    '/token-types/:code',
    route((req) => {
      const tt = parse(tokenTypeSchema, { ...(req.body as object), code: param(req, 'code') });
      // The store defines only its own tokens; the mall's and other issuers' token types
      // come from the mall's signed snapshot, and the operator may not take them over.
      const existing = ledger.tokenTypes.get(tt.code);
      if (tt.issuer !== config.vendorId || (existing !== undefined && existing.issuer !== config.vendorId)) {
        fail('VND_ERR_NOT_OWN_TOKEN', `the store defines only its own token types (issuer ${config.vendorId}); ${tt.code} comes from the mall`, { token: tt.code });
      }
      return ledger.upsertTokenType(op, tt);
    }),
  );

  api.get(
    '/customers',
    route((req) => {
      const card = req.query['card'];
      if (typeof card === 'string') return [ledger.customerView(ledger.customerIdByCard(card))];
      return Object.values(ledger.state.customers).slice(0, 1000).map((c) => ({ id: c.id, card: c.card, name: c.name }));
    }),
  );
  api.post('/customers', route((req) => ledger.registerCustomer(op, parse(customerRegisterOperator, req.body))));
  api.get('/customers/:id', route((req) => ledger.customerView(idParam(req, 'id'))));
  api.get('/customers/:id/history', route((req) => ledger.customerHistory(idParam(req, 'id'))));
  api.put(
    '/customers/:id/pin',
    route(async (req) => {
      const customer = ledger.customerView(idParam(req, 'id'));
      await access.setCustomerPin(customer.id, parse(customerPinSet, req.body).pin);
      logger.info({ customer: customer.id }, 'customer PIN set');
      return { id: customer.id, pin: true };
    }),
  );
  api.post(
    '/customers/:id/unlock',
    route(async (req) => {
      const customer = ledger.customerView(idParam(req, 'id'));
      await access.unlockCustomer(customer.id);
      logger.info({ customer: customer.id }, 'customer PIN unlocked by the operator');
      return { id: customer.id, lockedAt: null };
    }),
  );

  api.post('/allotments', route((req) => ledger.allotOwnTokens(op, keyOf(req), parse(allotmentRequest, req.body))));
  api.post('/issuances', route((req) => ledger.issueTokens(op, keyOf(req), parse(issuanceRequest, req.body))));
  api.get('/float', route(() => ledger.float()));
  const auctions = deps.auctions;
  if (auctions !== undefined) {
    api.get('/lots', route(() => auctions.list()));
    api.get('/lots/:id', route((req) => auctions.view(parse(lotId, param(req, 'id')))));
    api.post('/lots', route((req) => auctions.create(op, keyOf(req), parse(lotCreateRequest, req.body))));
    api.post('/lots/:id/cancel', route((req) => auctions.cancel(op, keyOf(req), parse(lotId, param(req, 'id')), parse(lotCancelRequest, req.body).reason)));
  }
  api.get(
    '/totals',
    route((req) => {
      const raw = req.query['date'] ?? new Date().toISOString().slice(0, 10);
      const date = parse(dayDate, raw);
      return { date, ...(own(ledger.state.days, date) ?? emptyDay()) };
    }),
  );
  api.get('/sync', route(() => syncStatus()));
  api.get(
    '/offline',
    route(() => {
      const offline = deps.offline ?? fail('VND_ERR_CONFIG', 'offline selling is not set up in this server');
      return { limits: offline.limits, terminals: offline.list() };
    }),
  );
  api.post(
    '/sync/push',
    route(async () => {
      const sync = deps.sync();
      if (sync === null) fail('VND_ERR_CONFIG', 'this store is not linked to a mall: set "mall.url" in the config or start with --mall-url');
      const drained = await sync.drain(15_000);
      return { drained, ...(await sync.status()) };
    }),
  );
  api.get(
    '/mall/statements',
    route(async (req) => {
      const from = parse(dayDate, req.query['from']);
      const to = parse(dayDate, req.query['to']);
      const sync = deps.sync();
      if (sync === null) fail('VND_ERR_CONFIG', 'this store is not linked to a mall');
      try {
        return await sync.fetchStatement(from, to);
      } catch (err) {
        if (err instanceof MallposError) throw err;
        return fail('VND_ERR_MALL_UNREACHABLE', (err as Error).message);
      }
    }),
  );
  api.get('/sales/:saleId', route((req) => ledger.saleBySaleId(param(req, 'saleId'))));
  cashierDayRoutes(api, { service: deps.cashierDay, access, logger, keyOf });

  const ttlMs = config.pairingCodeTtlMinutes * 60_000;
  api.get(
    '/terminals',
    route(() =>
      Object.values(access.data.terminals).map((t) => ({
        id: t.id,
        name: t.name,
        createdAt: t.createdAt,
        pairedAt: t.pairedAt,
        revokedAt: t.revokedAt,
        pairingPendingUntil: t.pairing?.expiresAt ?? null,
        pinFailures: t.pinFailures ?? 0,
        pinLockedAt: t.pinLockedAt ?? null,
      })),
    ),
  );
  api.post(
    '/terminals',
    route(async (req) => {
      const { name } = parse(terminalCreate, req.body);
      const { terminal, code } = await access.createTerminal(name, ttlMs);
      return { terminalId: terminal.id, name: terminal.name, pairingCode: code, expiresAt: terminal.pairing?.expiresAt };
    }),
  );
  api.post(
    '/terminals/:id/pairing-code',
    route(async (req) => {
      const id = idParam(req, 'id');
      const code = await access.newCode(id, ttlMs);
      return { terminalId: id, pairingCode: code, expiresAt: access.terminal(id).pairing?.expiresAt };
    }),
  );
  api.post(
    '/terminals/:id/unlock',
    route(async (req) => {
      const t = await access.unlockTerminal(idParam(req, 'id'));
      logger.info({ terminal: t.id }, 'till unlocked for sign-ins by the operator');
      return { terminalId: t.id, pinFailures: 0, pinLockedAt: null };
    }),
  );
  api.post(
    '/terminals/:id/revoke',
    route(async (req) => {
      const t = await access.revokeTerminal(idParam(req, 'id'));
      const disconnected = await deps.gateway().disconnectTerminal(t.id);
      logger.info({ terminal: t.id, disconnected }, 'terminal revoked');
      return { terminalId: t.id, revokedAt: t.revokedAt, disconnected };
    }),
  );

  const staffView = (s: StaffRecord) => ({ id: s.id, name: s.name, role: s.role, pinFailures: s.pinFailures ?? 0, lockedAt: s.lockedAt ?? null });
  api.get('/staff', route(() => Object.values(access.data.staff).map(staffView)));
  api.put(
    '/staff/:id',
    route(async (req) => {
      const s = await access.upsertStaff(parse(staffUpsert, { ...(req.body as object), id: param(req, 'id') }));
      return { id: s.id, name: s.name, role: s.role };
    }),
  );
  api.post(
    '/staff/:id/unlock',
    route(async (req) => {
      const s = await access.unlockStaff(idParam(req, 'id'));
      logger.info({ staff: s.id }, 'staff member unlocked by the operator');
      return staffView(s);
    }),
  );

  api.get(
    '/ledger/export',
    route(async (req, res) => {
      const format = req.query['format'] ?? 'jsonl';
      if (format !== 'jsonl' && format !== 'csv') fail('CORE_ERR_VALIDATION', 'format must be jsonl or csv');
      const from = Number(req.query['from'] ?? 1);
      const to = Number(req.query['to'] ?? ledger.state.seq);
      if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 1) fail('CORE_ERR_VALIDATION', 'from and to are event seqs');
      res.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
      res.setHeader('content-disposition', `attachment; filename="${config.vendorId}-ledger.${format}"`);
      if (format === 'csv') res.write(`${CSV_HEADER}\n`);
      const last = Math.min(to, ledger.state.seq);
      let count = 0;
      let lastSeq = from - 1;
      let lastHash: string | null = null;
      try {
        if (from <= last) {
          for await (const rec of ledger.journal.iterate(from, last)) {
            const chunk = format === 'jsonl' ? `{"hash":"${rec.hash}","event":${rec.text}}\n` : `${eventCsvRows(JSON.parse(rec.text) as JournalEvent).join('\n')}\n`;
            count += 1;
            lastSeq = rec.seq;
            lastHash = rec.hash;
            if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
          }
        }
      } catch (err) {
        // Never a clean end after a failure: the consumer must see a broken transfer, not a short export.
        logger.error({ err, from, lastSeq }, 'ledger export aborted: a journal read failed mid-stream');
        res.destroy(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      // The trailer says what a complete export holds; without it the export is incomplete.
      if (format === 'jsonl') res.write(`${JSON.stringify({ trailer: { count, fromSeq: from, lastSeq, lastHash } })}\n`);
      else res.write(`${lastSeq},,end,,,${csvField(`${count} events; last hash ${lastHash ?? 'none'}`)},,,\n`);
      res.end();
    }),
  );

  app.use('/api', api);

  app.use((_req, _res, next) => next(new MallposError('VND_ERR_NOT_FOUND', 'no such endpoint')));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number };
    let wire;
    let status: number;
    if (e.type === 'entity.too.large') {
      wire = { code: 'VND_ERR_PAYLOAD_TOO_LARGE', message: `the request is larger than ${HTTP_BODY_BYTES_MAX} bytes` };
      status = 413;
    } else if (e.type === 'entity.parse.failed') {
      wire = { code: 'CORE_ERR_VALIDATION', message: 'the request body is not valid JSON' };
      status = 400;
    } else if (!(err instanceof MallposError) && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      // express's own refusals of a malformed request (a path that is not valid UTF-8,
      // an unsupported body encoding) are the client's fault, not an internal error.
      wire = { code: 'CORE_ERR_VALIDATION', message: 'the request is not valid (its path or body cannot be read)' };
      status = 400;
    } else {
      wire = toWireError(err, logger);
      status = err instanceof MallposError ? err.status : 500;
    }
    metrics.rejected.inc({ code: wire.code });
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json({ error: wire });
  });
  return app;
}
