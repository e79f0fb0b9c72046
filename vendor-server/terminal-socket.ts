import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import {
  cartPriceRequest,
  cashierLoginRequest,
  customerLookupRequest,
  fail,
  MallposError,
  parse,
  productLookupRequest,
  receiptRequest,
  saleCommitRequest,
  saleRefundRequest,
  saleStatusRequest,
  SOCKET_PAYLOAD_BYTES_MAX,
  type Ack,
  type ClientToServerEvents,
  type ServerStatus,
  type ServerToClientEvents,
  type WireError,
} from '../core/index.ts';
import type { AccessStore } from './access.ts';
import type { VendorKeys } from './config.ts';
import { authenticateTerminal, checkCredentialLive, cutOffAtExpiry, renewCredential } from './terminal-auth.ts';
import type { LedgerService } from './ledger/service.ts';
import type { Logger } from '../platform/logger.ts';
import type { VendorMetrics } from './metrics.ts';
import { unconfiguredStatus, type MallSync } from './sync/mall-sync-client.ts';

interface SocketData {
  terminalId: string;
  credentialId: string;
  /** When the access credential expires; `credential:renew` moves it on. */
  expiresAtMs: number;
  cashier: { staffId: string; name: string; role: 'cashier' | 'supervisor' } | null;
}

type TerminalSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

export interface TerminalGatewayDeps {
  ledger: LedgerService;
  access: AccessStore;
  keys: VendorKeys;
  logger: Logger;
  metrics: VendorMetrics;
  sync?: () => MallSync | null;
}

export const STATUS_BROADCAST_MS = 5_000;

export function toWireError(err: unknown, logger: Logger): WireError {
  if (err instanceof MallposError) return err.toWire();
  logger.error({ err }, 'unexpected error');
  return { code: 'VND_ERR_INTERNAL', message: 'internal error in the store server' };
}

/**
 * The socket.io side of the terminal protocol. The handshake must present a paired,
 * unrevoked terminal's credential; each event is schema-checked and answered through
 * its acknowledgement with `{ ok, data | error }`.
 */
export class TerminalGateway {
  readonly io: Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

  constructor(
    http: HttpServer,
    private readonly deps: TerminalGatewayDeps,
  ) {
    this.io = new Server(http, {
      serveClient: false,
      maxHttpBufferSize: SOCKET_PAYLOAD_BYTES_MAX,
      pingInterval: 5_000,
      pingTimeout: 5_000,
      cors: { origin: false },
    });
    this.io.use((socket, next) => {
      authenticateTerminal(deps, deps.ledger.store.vendorId, socket.handshake.auth['token'])
        .then(({ terminalId, credentialId, expiresAtMs }) => {
          socket.data = { terminalId, credentialId, expiresAtMs, cashier: null };
          next();
        })
        .catch((err: unknown) => {
          const wire = toWireError(err, deps.logger);
          const e = new Error(wire.message) as Error & { data: WireError };
          e.data = wire;
          next(e);
        });
    });
    this.io.on('connection', (socket) => this.onConnection(socket));
  }

  private onConnection(socket: TerminalSocket): void {
    const { ledger, access, logger, metrics } = this.deps;
    metrics.terminals.inc();
    logger.info({ terminal: socket.data.terminalId }, 'terminal connected');
    // An access credential that expires without renewal ends the connection.
    const stopWatching = cutOffAtExpiry(socket.data, () => {
      logger.info({ terminal: socket.data.terminalId }, 'terminal access credential expired');
      socket.disconnect(true);
    });
    socket.on('disconnect', (reason) => {
      stopWatching();
      metrics.terminals.dec();
      logger.info({ terminal: socket.data.terminalId, reason }, 'terminal disconnected');
    });
    void this.status().then((s) => socket.emit('server:status', s));

    const actor = () => ({ terminal: socket.data.terminalId, cashier: socket.data.cashier?.staffId ?? null });
    const handle = <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => {
      return (payload: unknown, ack: unknown) => {
        if (typeof ack !== 'function') {
          logger.warn({ terminal: socket.data.terminalId, event }, 'event without acknowledgement ignored');
          return;
        }
        const reply = ack as (res: Ack<Res>) => void;
        Promise.resolve()
          .then(() => {
            // A terminal revoked while connected is refused on its next request even if
            // the disconnect has not reached it yet; so is an expired access credential.
            checkCredentialLive(access, socket.data);
            return run(payload);
          })
          .then(
            (data) => reply({ ok: true, data }),
            (err: unknown) => {
              const error = toWireError(err, logger);
              metrics.rejected.inc({ code: error.code });
              reply({ ok: false, error });
            },
          );
      };
    };

    socket.on('credential:renew', handle('credential:renew', (p) => renewCredential(this.deps, ledger.store.vendorId, socket.data, p)));
    socket.on('product:lookup', handle('product:lookup', (p) => ledger.productView(parse(productLookupRequest, p).code)));
    const customer = (p: unknown) => ledger.customerView(ledger.customerIdByCard(parse(customerLookupRequest, p).card));
    socket.on('customer:lookup', handle('customer:lookup', customer));
    socket.on('balance:inquiry', handle('balance:inquiry', customer));
    socket.on(
      'cart:price',
      handle('cart:price', (p) => {
        const req = parse(cartPriceRequest, p);
        return ledger.price({ lines: req.lines, card: req.card ?? null, tenders: req.tenders ?? [] });
      }),
    );
    socket.on(
      'sale:commit',
      handle('sale:commit', async (p) => {
        const req = parse(saleCommitRequest, p);
        checkKeyOwner(req.key, socket.data.terminalId);
        const result = await ledger.commitSale(actor(), req);
        logger.debug({ terminal: socket.data.terminalId, saleId: result.saleId, seq: result.seq }, 'sale committed');
        return result;
      }),
    );
    socket.on(
      'sale:refund',
      handle('sale:refund', async (p) => {
        const req = parse(saleRefundRequest, p);
        checkKeyOwner(req.key, socket.data.terminalId);
        const staff = await access.authenticateStaff(req.supervisor.staffId, req.supervisor.pin);
        if (staff.role !== 'supervisor') fail('VND_ERR_SUPERVISOR_REQUIRED', `${staff.name} may not approve refunds: a supervisor must`);
        const result = await ledger.refundSale(actor(), { key: req.key, saleId: req.saleId, reason: req.reason, supervisorId: staff.id });
        logger.info({ terminal: socket.data.terminalId, refundId: result.refundId, saleId: result.saleId }, 'sale refunded');
        return result;
      }),
    );
    socket.on('sale:status', handle('sale:status', (p) => ledger.keyStatus(parse(saleStatusRequest, p).key)));
    socket.on(
      'receipt:get',
      handle('receipt:get', async (p) => {
        const sale = await ledger.saleBySaleId(parse(receiptRequest, p).saleId);
        const refundSeq = ledger.state.refunds[sale.seq];
        return {
          store: { vendorId: ledger.store.vendorId, name: ledger.store.name, address: ledger.store.address },
          sale,
          refund: refundSeq === undefined ? null : await ledger.refundResult(refundSeq),
        };
      }),
    );
    socket.on(
      'cashier:login',
      handle('cashier:login', async (p) => {
        const req = parse(cashierLoginRequest, p);
        const staff = await access.authenticateStaff(req.staffId, req.pin);
        socket.data.cashier = { staffId: staff.id, name: staff.name, role: staff.role };
        return socket.data.cashier;
      }),
    );
    socket.on(
      'cashier:logout',
      handle('cashier:logout', () => {
        socket.data.cashier = null;
        return null;
      }),
    );
  }

  private broadcast: NodeJS.Timeout | null = null;

  /** Keeps every terminal's status bar current (sync backlog, store state). */
  startStatusBroadcast(everyMs = STATUS_BROADCAST_MS): void {
    this.broadcast = setInterval(() => {
      void this.status().then((s) => this.io.emit('server:status', s));
    }, everyMs);
    this.broadcast.unref();
  }

  async status(): Promise<ServerStatus> {
    const { ledger } = this.deps;
    const sync = this.deps.sync?.() ?? null;
    const st = sync === null ? unconfiguredStatus(ledger.state.seq) : await sync.status();
    const tokenNames: Record<string, string> = {};
    for (const tt of Object.values(ledger.state.tokenTypes)) tokenNames[tt.code] = tt.name;
    return {
      vendorId: ledger.store.vendorId,
      storeName: ledger.store.name,
      storeAddress: ledger.store.address,
      currency: ledger.store.currency,
      tokenNames,
      at: new Date().toISOString(),
      journalSeq: ledger.state.seq,
      sync: {
        configured: st.configured,
        eventsWaiting: st.eventsWaiting,
        oldestWaitingAgeS: st.oldestWaitingAgeS,
        lastAckAt: st.lastAckAt,
        lastError: st.lastError,
        snapshotStale: st.snapshotStale,
      },
    };
  }

  /** Cuts off every connection of a revoked terminal. */
  async disconnectTerminal(terminalId: string): Promise<number> {
    let n = 0;
    for (const socket of await this.io.fetchSockets()) {
      if (socket.data.terminalId !== terminalId) continue;
      socket.emit('terminal:revoked', { terminalId, message: 'this terminal has been revoked by the store' });
      socket.disconnect(true);
      n += 1;
    }
    return n;
  }

  close(): Promise<void> {
    if (this.broadcast !== null) clearInterval(this.broadcast);
    return new Promise((resolve) => {
      this.io.close(() => resolve());
    });
  }
}

/** A terminal may only use its own keys: `<terminal id>:<uuid>`. */
function checkKeyOwner(key: string, terminalId: string): void {
  if (!key.startsWith(`${terminalId}:`)) fail('VND_ERR_IDEMPOTENCY_KEY', `the request key must start with "${terminalId}:"`);
}
