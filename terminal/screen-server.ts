import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { Server } from 'socket.io';
import { z } from 'zod';
import { ERRORS, MallposError, parse } from '../core/index.ts';
import { LOT_ID_PATTERN } from '../core/auctions.ts';
import type { Command, ScreenState, TerminalApp } from './app.ts';
import { createScreenGuard, type ScreenGuard } from './screen-guard.ts';

export const DEFAULT_SCREEN_PORT = 8500;

const tokenCode = z.string().min(1).max(12);
const units = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const tender = z.strictObject({ token: tokenCode, units: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(), source: z.literal('wallet').optional() });
const cardCode = z.string().trim().min(1).max(64);
const pin = z.string().regex(/^[0-9]{4,12}$/, 'a PIN is 4-12 digits');
const staffId = z.string().min(1).max(40);

const minor = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const reason = z.string().trim().min(1).max(200);
/** A cash count: a total, or how many of each note and coin (the store sums them). */
const count = z.union([
  z.strictObject({ totalMinor: minor }),
  z.strictObject({ denominations: z.array(z.strictObject({ valueMinor: minor.min(1), count: z.number().int().min(0).max(1_000_000) })).min(1).max(40) }),
]);

/** Commands the page may send; everything else is refused. */
export const commandSchema = z.discriminatedUnion('type', [
  // As long as a gift certificate's signed form (terminal/instruments.ts), typed by a keyboard wedge.
  z.strictObject({ type: z.literal('scan'), code: z.string().min(1).max(1024) }),
  z.strictObject({ type: z.literal('setQty'), lineNo: z.number().int().min(1), qty: z.number().int().min(1).max(9_999) }),
  z.strictObject({ type: z.literal('voidLine'), lineNo: z.number().int().min(1) }),
  z.strictObject({ type: z.literal('cancelSale') }),
  z.strictObject({ type: z.literal('removeCustomer') }),
  z.strictObject({ type: z.literal('setTenders'), tenders: z.array(tender).max(8) }),
  z.strictObject({ type: z.literal('setCash'), cashTenderedMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  z.strictObject({ type: z.literal('complete') }),
  z.strictObject({ type: z.literal('customerPin'), pin }),
  z.strictObject({ type: z.literal('walletPin'), pin }),
  z.strictObject({ type: z.literal('stopCompletion') }),
  z.strictObject({ type: z.literal('refund'), staffId, pin, reason: z.string().trim().min(1).max(200) }),
  z.strictObject({ type: z.literal('closeRefund') }),
  z.strictObject({ type: z.literal('reprint') }),
  z.strictObject({ type: z.literal('openShift'), count }),
  z.strictObject({ type: z.literal('cashMove'), kind: z.enum(['paid-in', 'paid-out']), amountMinor: minor.min(1), reason }),
  z.strictObject({ type: z.literal('noSale'), staffId, pin, reason }),
  z.strictObject({ type: z.literal('closeShift'), count }),
  z.strictObject({ type: z.literal('closeShiftResult') }),
  z.strictObject({ type: z.literal('xReport'), scope: z.enum(['shift', 'day']) }),
  z.strictObject({ type: z.literal('zReport'), staffId, pin }),
  z.strictObject({ type: z.literal('login'), staffId, pin }),
  z.strictObject({ type: z.literal('logout') }),
  z.strictObject({ type: z.literal('dismiss') }),
  // Tokens between stores.
  z.strictObject({
    type: z.literal('registerCustomer'),
    name: z.string().trim().min(1).max(80),
    consent: z.boolean(),
    card: cardCode.nullable(),
    email: z.string().trim().max(120).optional(),
    phone: z.string().trim().max(40).optional(),
  }),
  z.strictObject({
    type: z.literal('sellTokens'),
    token: tokenCode,
    units,
    payment: z.discriminatedUnion('method', [
      z.strictObject({ method: z.literal('cash'), tenderedMinor: minor }),
      z.strictObject({ method: z.literal('card'), approvalRef: z.string().trim().min(1).max(40) }),
    ]),
  }),
  z.strictObject({ type: z.literal('exchangeQuote'), fromToken: tokenCode, units, source: z.enum(['card', 'wallet']), toToken: tokenCode }),
  z.strictObject({ type: z.literal('exchangeConfirm'), pin: pin.optional() }),
  z.strictObject({ type: z.literal('exchangeCancel') }),
  z.strictObject({ type: z.literal('walletBalance') }),
  z.strictObject({ type: z.literal('walletMove'), direction: z.enum(['to-wallet', 'from-wallet']), token: tokenCode, units, pin: pin.optional(), newPin: pin.optional() }),
  z.strictObject({ type: z.literal('customerData'), card: cardCode }),
  z.strictObject({ type: z.literal('closeEconomy') }),
  // Auctions (terminal/auctions.ts).
  z.strictObject({ type: z.literal('bid'), lotId: z.string().regex(LOT_ID_PATTERN), units, pin: pin.optional() }),
  z.strictObject({ type: z.literal('refreshLots') }),
  z.strictObject({ type: z.literal('closeBid') }),
  // Gift certificates and coupons (terminal/instruments.ts).
  z.strictObject({ type: z.literal('instrumentPay'), code: z.string().min(1).max(64) }),
  z.strictObject({ type: z.literal('instrumentRemove'), code: z.string().min(1).max(64) }),
  z.strictObject({ type: z.literal('instrumentClose') }),
  z.strictObject({ type: z.literal('instrumentVoid'), code: z.string().trim().min(1).max(64), reason, staffId, pin }),
  // A new certificate of the store's own tokens (token, units), or the one shown from the mall's stock (code).
  z.strictObject({
    type: z.literal('sellCertificate'),
    token: tokenCode.optional(),
    units: units.optional(),
    code: z.string().trim().min(1).max(64).optional(),
    payment: z.discriminatedUnion('method', [
      z.strictObject({ method: z.literal('cash'), tenderedMinor: minor }),
      z.strictObject({ method: z.literal('card'), approvalRef: z.string().trim().min(1).max(40) }),
    ]),
  }),
]);

interface ScreenClientEvents {
  command: (cmd: unknown, ack: (res: { ok: boolean; version?: number; error?: { code: string; message: string } }) => void) => void;
}
interface ScreenServerEvents {
  state: (s: ScreenState) => void;
}

export interface RunningScreen {
  url: string;
  port: number;
  close(): Promise<void>;
}

const SCREEN_DIR = fileURLToPath(new URL('./screen/', import.meta.url));
// The page loads socket.io's browser client from here, through the same checks as its own files.
const SOCKET_IO_CLIENT = join(dirname(createRequire(import.meta.url).resolve('socket.io/package.json')), 'client-dist', 'socket.io.min.js');

/** Headers on every answer: the page is never framed, cached or sent as a referrer. */
const SECURITY_HEADERS = {
  'Content-Security-Policy': "frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/**
 * The cashier screen: a page for a kiosk browser on 127.0.0.1, kept live over socket.io.
 * The page sends commands; the terminal answers by pushing its whole state. Only the page
 * this terminal served may do either (see screen-guard.ts): every HTTP request and the
 * socket handshake are checked for Host, Origin and the per-launch secret.
 */
export async function startScreen(app: TerminalApp, opts: { port?: number; host?: string } = {}): Promise<RunningScreen> {
  // The guard needs the port the screen listens on; no request is answered before it is known.
  let guard: ScreenGuard | null = null;
  const refusal = (problem: string) => ({ error: { code: 'POS_ERR_SCREEN_FORBIDDEN', message: `${ERRORS.POS_ERR_SCREEN_FORBIDDEN.message}: ${problem}` } });

  const web = express();
  web.disable('x-powered-by');
  web.disable('etag');
  web.use((req, res, next) => {
    res.set(SECURITY_HEADERS);
    const problem = guard === null ? 'the screen is starting' : guard.problem(req.headers, req.method === 'GET' && req.path === '/' ? 'page' : 'asset');
    if (problem !== null) {
      res.status(403).json(refusal(problem));
      return;
    }
    next();
  });
  web.get('/', (_req, res) => {
    res.set('Set-Cookie', (guard as ScreenGuard).cookie());
    res.sendFile(join(SCREEN_DIR, 'index.html'));
  });
  web.get('/state', (_req, res) => res.json(app.state()));
  web.get('/vendor/socket.io.min.js', (_req, res) => res.sendFile(SOCKET_IO_CLIENT));
  web.use(express.static(SCREEN_DIR, { index: false, etag: false, maxAge: 0 }));
  const http = createServer(web);
  const io = new Server<ScreenClientEvents, ScreenServerEvents>(http, {
    serveClient: false,
    transports: ['websocket'],
    maxHttpBufferSize: 16 * 1024,
    cors: { origin: false },
    allowRequest: (req, callback) => {
      const problem = guard === null ? 'the screen is starting' : guard.problem(req.headers, 'socket');
      callback(problem, problem === null);
    },
  });

  // State pushes are coalesced to one per tick so a burst of changes costs one render.
  let scheduled = false;
  const push = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      io.emit('state', app.state());
    });
  };
  const unsubscribe = app.onState(push);

  io.on('connection', (socket) => {
    socket.emit('state', app.state());
    socket.on('command', (raw, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      let cmd: Command;
      try {
        cmd = parse(commandSchema, raw) as Command;
      } catch (err) {
        const e = err as MallposError;
        reply({ ok: false, error: { code: e.code, message: e.message } });
        return;
      }
      // The ack names the state version the command left, so the page can wait to see its outcome.
      app.command(cmd).then(
        () => reply({ ok: true, version: app.state().version }),
        (err: unknown) => reply({ ok: false, error: { code: 'POS_ERR_COMMAND', message: (err as Error).message } }),
      );
    });
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new MallposError('POS_ERR_CONFIG', `port ${opts.port ?? DEFAULT_SCREEN_PORT} is already in use: choose --port`) : err),
    );
    http.listen(opts.port ?? DEFAULT_SCREEN_PORT, host, () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  guard = createScreenGuard(port);
  return {
    url: `http://${host}:${port}/`,
    port,
    close: async () => {
      unsubscribe();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
