import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import express from 'express';
import type { Namespace, Server } from 'socket.io';
import { fail, MallposError, parse, type Ack, type BoardClientEvents, type BoardServerEvents } from '../../core/index.ts';
import { boardBidRequest, type BidAck, type LotView } from '../../core/auctions.ts';
import type { AccessStore, PinAuditEntry } from '../access.ts';
import type { LedgerService } from '../ledger/service.ts';
import type { Logger } from '../../platform/logger.ts';
import type { VendorMetrics } from '../metrics.ts';
import { BOARD_HTML, BOARD_JS } from './board-page.ts';
import type { AuctionService } from './service.ts';

/** Wrong PINs one address may send from the board in a window, over all cards, before it must wait. */
export const BOARD_PIN_FAILURES_MAX = 5;
export const BOARD_PIN_WINDOW_MS = 10 * 60_000;
/** Addresses remembered by the limiter; the oldest go first. */
const BOARD_ADDRESSES_MAX = 10_000;
/** Board keys start with this, so that a board can never answer a till's request. */
export const BOARD_KEY_PREFIX = 'board:';

const SOCKET_IO_CLIENT = join(dirname(createRequire(import.meta.url).resolve('socket.io/package.json')), 'client-dist', 'socket.io.min.js');

/** The page's own files only: its script and socket.io's, from this origin. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The bid board page: read-only to anyone; served by the vendor server for a screen in the shop. */
export function boardRouter(): express.Router {
  const r = express.Router();
  const headers = (res: express.Response) => {
    res.set('content-security-policy', CSP);
    res.set('x-content-type-options', 'nosniff');
    res.set('cache-control', 'no-store');
  };
  r.get('/board', (_req, res) => {
    headers(res);
    res.type('html').send(BOARD_HTML);
  });
  r.get('/board/board.js', (_req, res) => {
    headers(res);
    res.type('application/javascript').send(BOARD_JS);
  });
  r.get('/board/socket.io.min.js', (_req, res) => {
    headers(res);
    res.sendFile(SOCKET_IO_CLIENT);
  });
  return r;
}

export interface BoardDeps {
  ledger: LedgerService;
  access: AccessStore;
  auctions: AuctionService;
  logger: Logger;
  metrics: VendorMetrics;
}

/**
 * Counts wrong PINs per address over all cards: the customer's own backoff and lockout
 * stop guessing one card's PIN, this stops one screen guessing across many cards.
 */
class AddressLimiter {
  private readonly slots = new Map<string, { windowStart: number; failures: number }>();

  check(address: string, now: number): void {
    const slot = this.slots.get(address);
    if (slot === undefined || now - slot.windowStart > BOARD_PIN_WINDOW_MS) return;
    if (slot.failures >= BOARD_PIN_FAILURES_MAX) fail('VND_ERR_RATE_LIMITED', 'too many wrong PINs from this screen: wait a few minutes', { retryAfterMs: slot.windowStart + BOARD_PIN_WINDOW_MS - now });
  }

  failed(address: string, now: number): void {
    const slot = this.slots.get(address);
    if (slot === undefined || now - slot.windowStart > BOARD_PIN_WINDOW_MS) {
      this.slots.delete(address);
      if (this.slots.size >= BOARD_ADDRESSES_MAX) this.slots.delete(this.slots.keys().next().value as string);
      this.slots.set(address, { windowStart: now, failures: 1 });
    } else {
      slot.failures += 1;
    }
  }
}

/**
 * The board's socket.io namespace: no credential to watch (lots and their high bids,
 * cards masked); a bid needs the card and the customer's PIN, checked with the store's
 * backoff and lockout for customer PINs, and limited per address.
 */
export function registerBoard(io: Server, deps: BoardDeps): Namespace<BoardClientEvents, BoardServerEvents> {
  const ns = io.of('/board') as unknown as Namespace<BoardClientEvents, BoardServerEvents>;
  const limiter = new AddressLimiter();
  const audit = (entry: PinAuditEntry) => deps.logger.warn({ ...entry, via: 'board' }, 'customer PIN at the bid board');
  ns.on('connection', (socket) => {
    const address = socket.handshake.address;
    const handle = <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => (first: unknown, second: unknown) => {
      const [payload, ack] = typeof first === 'function' && second === undefined ? [undefined, first] : [first, second];
      if (typeof ack !== 'function') return;
      const reply = ack as (res: Ack<Res>) => void;
      Promise.resolve()
        .then(() => run(payload))
        .then(
          (data) => reply({ ok: true, data }),
          (err: unknown) => {
            const error = err instanceof MallposError ? err.toWire() : { code: 'VND_ERR_INTERNAL', message: 'internal error in the store server' };
            if (!(err instanceof MallposError)) deps.logger.error({ err, event }, 'unexpected error at the board');
            deps.metrics.rejected.inc({ code: error.code });
            reply({ ok: false, error });
          },
        );
    };
    socket.on('lots:list', handle<LotView[]>('lots:list', () => deps.auctions.list()));
    socket.on(
      'board:bid',
      handle<BidAck>('board:bid', async (p) => {
        const req = parse(boardBidRequest, p);
        if (!req.key.startsWith(BOARD_KEY_PREFIX)) fail('VND_ERR_IDEMPOTENCY_KEY', `a bid from the board carries a key starting with "${BOARD_KEY_PREFIX}"`);
        limiter.check(address, Date.now());
        const customerId = deps.ledger.customerIdByCard(req.card);
        try {
          await deps.access.verifyCustomerPin(customerId, req.pin, { terminalId: null, audit });
        } catch (err) {
          if (err instanceof MallposError && err.code === 'VND_ERR_CUSTOMER_PIN') limiter.failed(address, Date.now());
          throw err;
        }
        return deps.auctions.bid({ terminal: null, cashier: null }, { key: req.key, lotId: req.lotId, card: req.card, units: req.units });
      }),
    );
    socket.onAny((event: string, ...args: unknown[]) => {
      if (event === 'lots:list' || event === 'board:bid') return;
      const ack = args[args.length - 1];
      if (typeof ack === 'function') (ack as (res: Ack<never>) => void)({ ok: false, error: new MallposError('VND_ERR_UNKNOWN_EVENT', `there is no event "${String(event).slice(0, 40)}"`).toWire() });
    });
  });
  return ns;
}
