import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import {
  cartPriceRequest,
  cashierLoginRequest,
  cashierLogoutRequest,
  customerLookupRequest,
  fail,
  MallposError,
  parse,
  productLookupRequest,
  parseSaleCommitRequest,
  receiptRequest,
  saleRefundRequest,
  saleStatusRequest,
  SOCKET_PAYLOAD_BYTES_MAX,
  type Ack,
  type SaleAck,
  type SaleCommitRequest,
  type SaleResult,
  type ClientToServerEvents,
  type ServerStatus,
  type ServerToClientEvents,
  type WireError,
} from '../core/index.ts';
import type { AccessStore, PinAuditEntry } from './access.ts';
import type { VendorKeys } from './config.ts';
import { authenticateTerminal, checkCredentialLive, cutOffAtExpiry, renewCredential } from './terminal-auth.ts';
import type { LedgerService } from './ledger/service.ts';
import type { Logger } from '../platform/logger.ts';
import type { VendorMetrics } from './metrics.ts';
import { unconfiguredStatus, type MallSync } from './sync/mall-sync-client.ts';
import type { CashierDayService } from './cashier-day/service.ts';
import { CASHIER_DAY_EVENTS, checkKeyOwner, registerCashierDay } from './cashier-day/socket.ts';
import { OFFLINE_EVENTS, type OfflineService } from './offline.ts';
import { registerXchg, XCHG_EVENTS, type XchgServices } from './economy/xchg-socket.ts';
import { paysFromWallet } from './economy/wallet.ts';
import { registerSellEvents, SELL_EVENTS } from './economy/socket.ts';
import { receiptProofPayload } from '../core/receipt-proof.ts';
import { signReceiptProof } from '../platform/receipt-proof.ts';
import { AUCTION_EVENTS, registerAuctionEvents } from './auctions/socket.ts';
import type { AuctionService } from './auctions/service.ts';
import { INSTRUMENT_EVENTS, registerInstruments } from './instruments/socket.ts';
import { paysWithInstruments, type InstrumentService } from './instruments/service.ts';
import { MallLotForwarder } from './auctions/mall-lots.ts';

interface SocketData {
  terminalId: string;
  credentialId: string;
  /** When the access credential expires; `credential:renew` moves it on. */
  expiresAtMs: number;
  cashier: { staffId: string; name: string; role: 'cashier' | 'supervisor' } | null;
}

/** The events a terminal may send; anything else is answered with VND_ERR_UNKNOWN_EVENT. */
export const TERMINAL_EVENTS: ReadonlySet<string> = new Set<keyof ClientToServerEvents>([
  'product:lookup',
  'customer:lookup',
  'balance:inquiry',
  'cart:price',
  'sale:commit',
  'sale:refund',
  'sale:status',
  'receipt:get',
  'cashier:login',
  'cashier:logout',
  'credential:renew',
  ...CASHIER_DAY_EVENTS,
  ...OFFLINE_EVENTS,
  ...XCHG_EVENTS,
  ...SELL_EVENTS,
  ...AUCTION_EVENTS,
  ...INSTRUMENT_EVENTS,
]);

const AUDIT_MESSAGES: Record<PinAuditEntry['event'], string> = {
  'pin.wrong': 'wrong staff PIN',
  'pin.refused': 'staff PIN attempt refused',
  'staff.locked': 'staff member locked out after wrong PINs',
  'terminal.locked': 'till locked for sign-ins after wrong PINs',
  'customer-pin.wrong': 'wrong customer PIN',
  'customer-pin.refused': 'customer PIN attempt refused',
  'customer.locked': 'card locked for token payments after wrong PINs',
};

/** How long a till may show its own receipts without a supervisor signed in. */
export const RECEIPT_RECENT_MS = 24 * 60 * 60_000;

type TerminalSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

export interface TerminalGatewayDeps {
  ledger: LedgerService;
  access: AccessStore;
  keys: VendorKeys;
  logger: Logger;
  metrics: VendorMetrics;
  sync?: () => MallSync | null;
  cashierDay: CashierDayService;
  offline: OfflineService;
  /** Exchange, mall wallet and customer data (vendor-server/economy). */
  xchg: XchgServices;
  /** Auctions (vendor-server/auctions); absent: tills see no lots. */
  auctions?: AuctionService;
  /** Gift certificates and coupons (vendor-server/instruments). */
  instruments: InstrumentService;
}

export const STATUS_BROADCAST_MS = 5_000;
/** How often the store asks the mall for its lots while tills are connected, to push changes to them. */
export const MALL_LOTS_WATCH_MS = 2_000;

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
    const { ledger, access, logger, metrics, cashierDay } = this.deps;
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
    const terminalId = socket.data.terminalId;
    const keyPrefix = `${terminalId}:`;
    const audit = (entry: PinAuditEntry) => logger.warn(entry, AUDIT_MESSAGES[entry.event]);
    // A sign-in in progress: money-changing events wait for it, so a terminal that signs
    // in again after a reconnect and then retries its sale is not refused in between.
    // It settles either way (a refused PIN too), and is made once per sign-in.
    let signInSettled: Promise<unknown> = Promise.resolve();
    // Sign-ins not settled yet: with none, a sale need not wait a turn for signInSettled.
    let signInsPending = 0;
    // Sign-ins and sign-outs take effect in the order they arrived: a sign-out that arrives
    // while an earlier sign-in's PIN is still being checked wins over it (a till that signed
    // in again after a reconnect and is then signed out stays signed out).
    let cashierTurn = 0;
    // A retry of a key already used moves no money: it gets the original outcome (or a
    // conflict) whoever is signed in, so a terminal restarted in the middle of a sale
    // learns that it went through instead of being told that nothing was charged.
    const checkCashier = (key: string) => {
      if (socket.data.cashier === null && !ledger.knowsKey(key)) fail('VND_ERR_CASHIER_REQUIRED');
    };
    const needCashier = async (key: string) => {
      await signInSettled;
      checkCashier(key);
    };
    /** needCashier, checked at once when no sign-in is in progress (null), else the wait for it. */
    const needCashierSoon = (key: string): Promise<void> | null => {
      if (signInsPending > 0) return needCashier(key);
      checkCashier(key);
      return null;
    };
    const handle = <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => {
      return (first: unknown, second: unknown) => {
        // An event sent without a payload carries its acknowledgement first.
        const [payload, ack] = typeof first === 'function' && second === undefined ? [undefined, first] : [first, second];
        if (typeof ack !== 'function') {
          logger.warn({ terminal: terminalId, event }, 'event without acknowledgement ignored');
          return;
        }
        const reply = ack as (res: Ack<Res>) => void;
        const answer = (data: Res) => reply({ ok: true, data });
        const refuse = (err: unknown) => {
          const error = toWireError(err, logger);
          metrics.rejected.inc({ code: error.code });
          reply({ ok: false, error });
        };
        // Run a turn later, as a promise callback would be; the answer is then chained to
        // what the handler returned, itself when it is a promise (a sale waiting for its
        // fsync), rather than through a promise made to hold it.
        queueMicrotask(() => {
          let result: Res | Promise<Res>;
          try {
            // A terminal revoked or paired again while connected is refused on its next
            // request even if the disconnect has not reached it yet; so is an expired access
            // credential.
            checkCredentialLive(access, socket.data);
            result = run(payload);
          } catch (err) {
            refuse(err);
            return;
          }
          void Promise.resolve(result).then(answer, refuse);
        });
      };
    };

    socket.on('credential:renew', handle('credential:renew', (p) => renewCredential(this.deps, ledger.store.vendorId, socket.data, p)));

    socket.onAny((event: string, ...args: unknown[]) => {
      if (TERMINAL_EVENTS.has(event)) return;
      const ack = args[args.length - 1];
      logger.warn({ terminal: terminalId, event: String(event).slice(0, 40) }, 'unknown event');
      metrics.rejected.inc({ code: 'VND_ERR_UNKNOWN_EVENT' });
      if (typeof ack === 'function') {
        (ack as (res: Ack<never>) => void)({ ok: false, error: new MallposError('VND_ERR_UNKNOWN_EVENT', `there is no event "${String(event).slice(0, 40)}"`).toWire() });
      }
    });

    socket.on('product:lookup', handle('product:lookup', (p) => ledger.productView(parse(productLookupRequest, p).code)));
    const customer = (p: unknown) => ledger.customerView(ledger.customerIdByCard(parse(customerLookupRequest, p).card));
    socket.on('customer:lookup', handle('customer:lookup', customer));
    socket.on('balance:inquiry', handle('balance:inquiry', customer));
    socket.on(
      'cart:price',
      handle('cart:price', (p) => {
        const req = parse(cartPriceRequest, p);
        const input = { lines: req.lines, card: req.card ?? null, tenders: req.tenders ?? [] };
        if (req.instruments !== undefined && req.instruments.length > 0) return this.deps.instruments.price({ ...input, instruments: req.instruments });
        return paysFromWallet(input) ? this.deps.xchg.wallet.price(input) : ledger.price(input);
      }),
    );
    // The sale itself, once the cashier is checked: returned rather than awaited, so that
    // nothing of the handler is held while the sale waits for its fsync.
    const commitSale = (req: SaleCommitRequest, tokenValueLimitMinor: number | null): Promise<SaleAck> => {
      const who = actor();
      const opts = { tokenValueLimitMinor, precondition: () => cashierDay.requireShift(terminalId, who.cashier) };
      if (paysWithInstruments(req)) return this.deps.instruments.commitSale(who, { ...req, instruments: req.instruments ?? [] }, opts);
      if (paysFromWallet(req)) return this.deps.xchg.wallet.commitSale(who, req, opts);
      const committed = ledger.commitSaleAck(who, req, opts);
      if (!logger.isLevelEnabled('debug')) return committed;
      return committed.then((ack) => {
        logger.debug({ terminal: terminalId, saleId: ack.saleId, seq: ack.seq }, 'sale committed');
        return ack;
      });
    };
    const sell = (req: SaleCommitRequest): Promise<SaleAck> => {
      // Token payments above the store's limit need the PIN of a customer who chose one.
      const limit = ledger.customerPinAboveMinor;
      if (limit !== null && req.card !== null && !ledger.knowsKey(req.key)) {
        const customerId = ledger.customerIdByCard(req.card);
        if (access.customerHasPin(customerId)) {
          if (req.customerPin === undefined) return commitSale(req, limit);
          return access.verifyCustomerPin(customerId, req.customerPin, { terminalId, audit }).then(() => commitSale(req, null));
        }
      }
      return commitSale(req, null);
    };
    socket.on(
      'sale:commit',
      // Not an async function: a sale with its cashier signed in goes from the request to
      // the ledger without a wait, and every sale passes here.
      handle('sale:commit', (p) => {
        const req = parseSaleCommitRequest(p);
        checkKeyOwner(req.key, terminalId, keyPrefix);
        const waiting = needCashierSoon(req.key);
        return waiting === null ? sell(req) : waiting.then(() => sell(req));
      }),
    );
    socket.on(
      'sale:refund',
      handle('sale:refund', async (p) => {
        const req = parse(saleRefundRequest, p);
        checkKeyOwner(req.key, terminalId, keyPrefix);
        await needCashier(req.key);
        const staff = await access.authenticateStaff(req.supervisor.staffId, req.supervisor.pin, { terminalId, audit });
        if (staff.role !== 'supervisor') fail('VND_ERR_SUPERVISOR_REQUIRED', `${staff.name} may not approve refunds: a supervisor must`);
        const who = actor();
        const result = await ledger.refundSale(who, { key: req.key, saleId: req.saleId, reason: req.reason, supervisorId: staff.id, deductSpentLoyalty: req.deductSpentLoyalty === true }, { precondition: () => cashierDay.requireShift(terminalId, who.cashier) });
        logger.info({ terminal: terminalId, refundId: result.refundId, saleId: result.saleId, supervisor: staff.id }, 'sale refunded');
        return result;
      }),
    );
    socket.on(
      'sale:status',
      handle('sale:status', (p) => {
        const { key } = parse(saleStatusRequest, p);
        checkKeyOwner(key, terminalId, keyPrefix);
        return ledger.keyStatus(key);
      }),
    );
    const receipt = async (saleId: string) => {
      const sale = await ledger.saleBySaleId(saleId);
      // A receipt names the customer and their card: a till sees its own recent sales,
      // anything else needs a supervisor signed in on it.
      const own = sale.terminal === terminalId && Date.now() - Date.parse(sale.at) <= RECEIPT_RECENT_MS;
      await signInSettled;
      if (!own && socket.data.cashier?.role !== 'supervisor') fail('VND_ERR_RECEIPT_FORBIDDEN');
      const refundSeq = ledger.refundOf(sale.seq);
      return {
        store: { vendorId: ledger.store.vendorId, name: ledger.store.name, address: ledger.store.address },
        sale,
        refund: refundSeq === undefined ? null : await ledger.refundResult(refundSeq),
        proof: await this.receiptProof(sale),
      };
    };
    socket.on('receipt:get', handle('receipt:get', (p) => receipt(parse(receiptRequest, p).saleId)));
    socket.on(
      'cashier:login',
      handle('cashier:login', async (p) => {
        const req = parse(cashierLoginRequest, p);
        const attempt = access.authenticateStaff(req.staffId, req.pin, { terminalId, audit });
        signInsPending += 1;
        signInSettled = attempt.then(
          () => {
            signInsPending -= 1;
          },
          () => {
            signInsPending -= 1;
          },
        );
        const turn = (cashierTurn += 1);
        const staff = await attempt;
        const cashier = { staffId: staff.id, name: staff.name, role: staff.role };
        if (turn !== cashierTurn) {
          logger.info({ terminal: terminalId, staff: staff.id }, 'cashier sign-in overtaken by a later sign-in or sign-out');
          fail('VND_ERR_CASHIER_REQUIRED', 'a sign-out or another sign-in on this till came after this sign-in: sign in again');
        }
        socket.data.cashier = cashier;
        logger.info({ terminal: terminalId, staff: staff.id }, 'cashier signed in');
        return cashier;
      }),
    );
    registerCashierDay({
      on: (event, listener) => socket.on(event as 'shift:open', listener as never),
      handle,
      terminalId,
      actor,
      cashier: () => socket.data.cashier,
      needCashier,
      signedIn: async () => {
        await signInSettled;
        return socket.data.cashier ?? fail('VND_ERR_CASHIER_REQUIRED');
      },
      receipt,
      access,
      audit,
      logger,
      service: cashierDay,
    });
    registerXchg({
      on: (event, listener) => socket.on(event as 'exchange:quote', listener as never),
      handle,
      terminalId,
      actor,
      needCashier,
      precondition: (who) => cashierDay.requireShift(terminalId, who.cashier),
      exchange: this.deps.xchg.exchange,
      wallet: this.deps.xchg.wallet,
      mall: this.deps.xchg.mall,
      logger,
    });
    registerInstruments({
      on: (event, listener) => socket.on(event as 'instrument:inquire', listener as never),
      handle,
      terminalId,
      actor,
      needCashier,
      logger,
      instruments: this.deps.instruments,
      keys: this.deps.keys,
      precondition: (who) => cashierDay.requireShift(terminalId, who.cashier),
      supervisor: async (staffId, pin) => {
        const staff = await access.authenticateStaff(staffId, pin, { terminalId, audit });
        if (staff.role !== 'supervisor') fail('VND_ERR_SUPERVISOR_REQUIRED', `${staff.name} may not void a gift certificate: a supervisor must`);
        return staff.id;
      },
    });
    registerSellEvents({ on: (event, listener) => socket.on(event as 'tokens:sell', listener as never), handle, terminalId, actor, needCashier, ledger, cashierDay, logger });
    const auctions = this.deps.auctions;
    if (auctions !== undefined) {
      registerAuctionEvents({ on: (event, listener) => socket.on(event as 'lot:bid', listener as never), handle, terminalId, actor, needCashier, ledger, access, auctions, mallLots: new MallLotForwarder(this.deps.xchg.mall), audit, logger });
    }
    // Offline selling: forwards need no signed-in cashier (each names the one who sold).
    socket.on('catalog:get', handle('catalog:get', (p) => this.deps.offline.catalog(p)));
    socket.on('offline-sale:forward', handle('offline-sale:forward', (p) => this.deps.offline.forward(terminalId, p)));
    socket.on('offline:report', handle('offline:report', (p) => this.deps.offline.report(terminalId, p)));
    socket.on(
      'cashier:logout',
      handle('cashier:logout', (p) => {
        parse(cashierLogoutRequest, p);
        cashierTurn += 1;
        socket.data.cashier = null;
        return null;
      }),
    );
  }

  /**
   * The signed proof printed as a receipt's QR code. It is made each time a receipt is
   * served, with the key the store signs its batches with now, so nothing signed outlives
   * a key rotation; a sale commit never waits for it.
   */
  private async receiptProof(sale: SaleResult): Promise<string> {
    const { ledger, keys } = this.deps;
    const record = await ledger.journal.read(sale.seq);
    const payload = receiptProofPayload({ vendor: ledger.store.vendorId, saleId: sale.saleId, hash: record.hash, at: sale.at, currency: sale.currency, totalMinor: sale.totalMinor, debits: sale.debits, cash: sale.cash });
    return signReceiptProof(payload, keys);
  }

  private broadcast: NodeJS.Timeout | null = null;
  private mallLotsWatch: NodeJS.Timeout | null = null;
  private lastMallLots = '';

  /**
   * Keeps the tills' lots panels current with the mall's lots: while a till is connected,
   * the store asks the mall for them every few seconds (one request per store, however many
   * tills) and pushes them when they changed. A mall out of reach leaves the tills with
   * what they had.
   */
  startMallLotsWatch(everyMs = MALL_LOTS_WATCH_MS): void {
    const forwarder = new MallLotForwarder(this.deps.xchg.mall);
    let asking = false;
    this.mallLotsWatch = setInterval(() => {
      if (asking || this.io.of('/').sockets.size === 0) return;
      asking = true;
      forwarder
        .list()
        .then(
          (lots) => {
            const text = JSON.stringify(lots);
            if (text === this.lastMallLots) return;
            this.lastMallLots = text;
            this.io.emit('mall-lots:update', lots);
          },
          () => undefined,
        )
        .finally(() => {
          asking = false;
        });
    }, everyMs);
    this.mallLotsWatch.unref();
  }

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
    const tokenNames = Object.create(null) as Record<string, string>;
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
    return this.cutOff(terminalId, null, 'VND_ERR_TERMINAL_REVOKED', 'this terminal has been revoked by the store');
  }

  /** Cuts off the connections of a terminal that still use a credential a new pairing replaced. */
  async disconnectReplaced(terminalId: string, credentialId: string): Promise<number> {
    return this.cutOff(terminalId, credentialId, 'VND_ERR_CREDENTIAL_REPLACED', 'this terminal was paired again: this credential is no longer valid');
  }

  private async cutOff(terminalId: string, keep: string | null, code: 'VND_ERR_TERMINAL_REVOKED' | 'VND_ERR_CREDENTIAL_REPLACED', message: string): Promise<number> {
    let n = 0;
    for (const socket of await this.io.fetchSockets()) {
      if (socket.data.terminalId !== terminalId || socket.data.credentialId === keep) continue;
      socket.emit('terminal:revoked', { terminalId, message, code });
      socket.disconnect(true);
      n += 1;
    }
    return n;
  }

  close(): Promise<void> {
    if (this.broadcast !== null) clearInterval(this.broadcast);
    if (this.mallLotsWatch !== null) clearInterval(this.mallLotsWatch);
    return new Promise((resolve) => {
      this.io.close(() => resolve());
    });
  }
}

