import { randomUUID } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import { authorityFor } from '../tls-client.ts';
import { ACK_TIMEOUT_MS, type Ack, type ClientToServerEvents, type ServerToClientEvents } from '../../core/index.ts';

/**
 * The load generator: terminals that each run a closed loop (send a sale, await its
 * ack, send the next), the same payloads for every server under test.
 */

export type TerminalSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export interface BenchTerminal {
  id: string;
  credential: string;
  /** Customer cards this terminal pays with, in turn. */
  cards: string[];
}

/** Three products priced in ACME tokens in the demo catalog, so every line is paid in tokens. */
export const SALE_PRODUCTS = ['4006381333931', '5901234123457', '9001001000014'] as const;
export const SALE_TOKEN = 'ACME';
/** The most ACME units one sale can cost: each product at the largest quantity the payloads use. */
export const SALE_UNITS_MAX = (90 + 58 + 80) * 3;

const CONNECT_TIMEOUT_MS = 10_000;
// Bounded so that a very fast server cannot make a run grow the bench's heap without end.
const LATENCIES_MAX = 4_000_000;

export interface SalePayload {
  key: string;
  lines: { code: string; qty: number }[];
  card: string;
  tenders: { token: string }[];
  cashTenderedMinor: number;
}

/** The k-th sale of a terminal: 3 lines, quantities cycling 1..3, paid with tokens only. */
export function salePayload(terminal: BenchTerminal, k: number): SalePayload {
  const card = terminal.cards[k % terminal.cards.length];
  if (card === undefined) throw new Error(`assertion failed: terminal ${terminal.id} has cards`);
  return {
    key: `${terminal.id}:${randomUUID()}`,
    lines: SALE_PRODUCTS.map((code, i) => ({ code, qty: 1 + ((k + i) % 3) })),
    card,
    tenders: [{ token: SALE_TOKEN }],
    cashTenderedMinor: 0,
  };
}

/** Why each socket that closed was closed, so a run that loses a terminal can say why. */
const closedBecause = new WeakMap<TerminalSocket, string>();

export async function connectTerminals(url: string, terminals: BenchTerminal[]): Promise<TerminalSocket[]> {
  return Promise.all(
    terminals.map(
      (t) =>
        new Promise<TerminalSocket>((resolve, reject) => {
          const socket: TerminalSocket = io(url, {
            auth: { token: t.credential },
            ca: authorityFor(url),
            transports: ['websocket'],
            reconnection: false,
            forceNew: true,
            timeout: CONNECT_TIMEOUT_MS,
          });
          socket.once('connect', () => resolve(socket));
          socket.once('disconnect', (reason) => closedBecause.set(socket, `${t.id} disconnected at ${new Date().toISOString()}: ${reason}`));
          socket.once('connect_error', (err) => {
            socket.disconnect();
            reject(new Error(`terminal ${t.id} could not connect to ${url}: ${err.message}`));
          });
        }),
    ),
  );
}

/** The demo store's cashier (`vendor-server init --demo`): money events need a signed-in cashier. */
export const BENCH_CASHIER = { staffId: 'ana', pin: '1234' } as const;

/**
 * Signs the cashier in on each socket, one after another: the store allows one PIN check
 * at a time per staff member.
 */
export async function signInAll(sockets: TerminalSocket[]): Promise<void> {
  for (const socket of sockets) {
    const ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('cashier:login', BENCH_CASHIER)) as Ack<unknown>;
    if (!ack.ok) throw new Error(`cashier sign-in refused: ${ack.error.code}: ${ack.error.message}`);
  }
}

export function disconnectAll(sockets: TerminalSocket[]): void {
  for (const s of sockets) s.disconnect();
}

export interface LoadResult {
  /** Sales acknowledged as committed within the window. */
  sales: number;
  salesPerS: number;
  /** Mean wall-clock time per sale under this load: the window divided by the sales in it. */
  msPerSale: number;
  /** Latency of every sale sent within the window, however it ended (a timed-out one counts with its full wait). */
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Sales sent within the window that were refused, timed out or lost with their connection. */
  errors: number;
  firstError: string | null;
  /** Why terminals lost their connection during the run, one entry per terminal. */
  lost: string[];
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

/** Terminals whose connection is gone, with the reason each was closed. */
export function lostTerminals(sockets: TerminalSocket[], terminals: BenchTerminal[]): { index: number; reason: string }[] {
  const lost: { index: number; reason: string }[] = [];
  sockets.forEach((s, i) => {
    if (!s.connected) lost.push({ index: i, reason: closedBecause.get(s) ?? `${terminals[i]?.id ?? i} is not connected` });
  });
  return lost;
}

/**
 * Runs every terminal's closed loop for warmupMs + measureMs. Throughput counts the
 * sales sent after the warm-up and acknowledged before the window closes; latency
 * covers every sale sent within the window, so a stall at the end still shows. Each
 * terminal stops at the end of the window or when its connection is lost, so every
 * terminal has stopped when this returns.
 */
export async function runLoad(
  sockets: TerminalSocket[],
  terminals: BenchTerminal[],
  opts: { warmupMs: number; measureMs: number; counter: { next: number } },
): Promise<LoadResult> {
  let lat = new Float64Array(64 * 1024);
  let n = 0;
  let sales = 0;
  let errors = 0;
  let firstError: string | null = null;
  const lost: string[] = [];
  const t0 = performance.now();
  const measureFrom = t0 + opts.warmupMs;
  const measureTo = measureFrom + opts.measureMs;
  const sample = (ms: number) => {
    if (n === lat.length && lat.length < LATENCIES_MAX) {
      const grown = new Float64Array(Math.min(LATENCIES_MAX, lat.length * 2));
      grown.set(lat);
      lat = grown;
    }
    if (n < lat.length) lat[n] = ms;
    n += 1;
  };

  const loop = async (socket: TerminalSocket, terminal: BenchTerminal) => {
    while (performance.now() < measureTo) {
      if (!socket.connected) {
        lost.push(closedBecause.get(socket) ?? `${terminal.id} is not connected`);
        return;
      }
      const payload = salePayload(terminal, opts.counter.next++);
      const sent = performance.now();
      let ok = false;
      try {
        // The timeout flag applies to one emit only, so it is set again for every sale.
        const ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sale:commit', payload)) as Ack<unknown>;
        ok = ack.ok;
        if (!ack.ok) firstError ??= `${ack.error.code}: ${ack.error.message}`;
      } catch (err) {
        firstError ??= `${terminal.id}: ${(err as Error).message}`;
      }
      const done = performance.now();
      if (sent < measureFrom) continue;
      sample(done - sent);
      if (!ok) errors += 1;
      else if (done <= measureTo) sales += 1;
    }
  };
  await Promise.all(sockets.map((s, i) => loop(s, terminals[i] as BenchTerminal)));

  const kept = lat.subarray(0, Math.min(n, lat.length)).sort();
  let total = 0;
  for (const v of kept) total += v;
  const seconds = opts.measureMs / 1000;
  return {
    sales,
    salesPerS: sales / seconds,
    msPerSale: sales === 0 ? Number.POSITIVE_INFINITY : opts.measureMs / sales,
    meanMs: kept.length === 0 ? Number.NaN : total / kept.length,
    p50Ms: quantile(kept, 0.5),
    p99Ms: quantile(kept, 0.99),
    maxMs: kept.length === 0 ? Number.NaN : (kept[kept.length - 1] as number),
    errors,
    firstError,
    lost,
  };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function describe(r: LoadResult): string {
  const err = r.errors === 0 ? '' : `, ${r.errors} FAILED (first: ${r.firstError ?? '?'})`;
  const lost = r.lost.length === 0 ? '' : `, ${r.lost.length} terminals LOST (${r.lost[0] ?? '?'})`;
  return `${Math.round(r.salesPerS)} sales/s, ${r.msPerSale.toFixed(3)} ms/sale, latency mean ${r.meanMs.toFixed(2)} p50 ${r.p50Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} max ${r.maxMs.toFixed(1)} ms${err}${lost}`;
}
