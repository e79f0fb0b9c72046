/**
 * Auction benchmark: the vendor server as an operator runs it (`bin/vendor-server.js
 * start`, a child process on 127.0.0.1), 20 socket.io tills, and one bid board client.
 *   1. sales: the tills commit 3-line token sales (bench/vendor's load), for the
 *      server's sales per second in this same run;
 *   2. bids: the tills bid on 20 open lots, each bid the least its lot takes as the till
 *      last saw it (pushed to every till), on a lot chosen at random; accepted bids per
 *      second, and bid-to-board latency: from a till sending a bid to the board client
 *      receiving the lot's update that shows it;
 *   3. the same on one lot, all 20 tills racing for it (most bids then lose the race:
 *      accepted bids per second there say how fast a contested lot moves).
 * Bounded by time (the windows below) and by count (the run is abandoned after limitMs).
 *
 *   npm run bench:auction [-- --quick]
 *
 * Progress goes to stderr; the last line of stdout is one JSON object:
 *   {"bids_per_s":…,"bid_to_board_ms":{"p50":…,"p99":…},"sales_per_s":…,…}
 * Targets: bid_to_board_ms.p99 <= 200; bids_per_s >= 0.5 x sales_per_s.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import type { Ack } from '../../core/index.ts';
import type { BidAck, LotView } from '../../core/auctions.ts';
import { authorityFor, fetchTls } from '../tls-client.ts';
import { killAllChildren, spawnMallpos, stopChild, type Child } from '../vendor/children.ts';
import { connectTerminals, describe as describeLoad, disconnectAll, runLoad, signInAll, type BenchTerminal, type TerminalSocket } from '../vendor/load.ts';
import { buildStore, pairTerminals, TERMINALS } from '../vendor/stores.ts';

const quick = process.argv.slice(2).includes('--quick');
const MODE = quick ? { warmupMs: 1_000, measureMs: 4_000, limitMs: 180_000 } : { warmupMs: 2_000, measureMs: 10_000, limitMs: 600_000 };
const CUSTOMERS = 100;
const UNITS_PER_CUSTOMER = 1_000_000_000;
const LOTS = 100;
const ACK_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 60_000;
const TARGET_BOARD_P99_MS = 200;
const TARGET_BID_TO_SALE_RATIO = 0.5;

const t0 = performance.now();
function log(text: string): void {
  process.stderr.write(`[bench:auction ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

interface BidRun {
  accepted: number;
  refused: number;
  bidsPerS: number;
  boardMs: number[];
  errors: string[];
}

async function createLots(url: string, operatorToken: string, n: number, title: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetchTls(`${url}/api/lots`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: JSON.stringify({ title: `${title} ${i + 1}`, token: 'ACME', reserveUnits: 0, incrementUnits: 1, closesAt: new Date(Date.now() + 24 * 3_600_000).toISOString(), snipeWindowSeconds: 0 }),
      timeoutMs: ACK_TIMEOUT_MS,
    });
    const body = (await res.json()) as LotView & { error?: unknown };
    if (!res.ok) throw new Error(`creating a lot failed: ${res.status} ${JSON.stringify(body)}`);
    ids.push(body.lotId);
  }
  return ids;
}

/**
 * Every till bids in a closed loop on a random lot of `lots`, at the least that lot takes
 * as the till last knew it (pushes and refusals tell it); the board client timestamps
 * the first update showing each accepted bid.
 */
async function runBids(sockets: TerminalSocket[], terminals: BenchTerminal[], board: Socket, lots: string[]): Promise<BidRun> {
  const minOf = new Map<string, number>(lots.map((id) => [id, 1]));
  /** lot -> the board's updates in arrival order: the high bid it showed, and when (highs only rise). */
  const updates = new Map<string, { units: number; at: number }[]>(lots.map((id) => [id, []]));
  const onBoard = (views: LotView[]) => {
    const at = performance.now();
    for (const v of views) {
      const list = updates.get(v.lotId);
      if (list !== undefined && v.high !== null) list.push({ units: v.high.units, at });
    }
  };
  board.on('lots:update', onBoard);
  const learn = (views: LotView[]) => {
    for (const v of views) if (v.minBidUnits !== null && minOf.has(v.lotId)) minOf.set(v.lotId, Math.max(minOf.get(v.lotId) ?? 1, v.minBidUnits));
  };
  for (const s of sockets) s.on('lots:update', learn);

  let accepted = 0;
  let refused = 0;
  const errors: string[] = [];
  const start = performance.now();
  const measureFrom = start + MODE.warmupMs;
  const measureTo = measureFrom + MODE.measureMs;
  const measured: { lot: string; units: number; sent: number }[] = [];
  const loop = async (socket: TerminalSocket, t: BenchTerminal, i: number) => {
    let n = 0;
    while (performance.now() < measureTo && socket.connected) {
      const lot = lots[Math.floor(Math.random() * lots.length)] as string;
      const units = minOf.get(lot) ?? 1;
      const card = t.cards[n++ % t.cards.length] as string;
      const sent = performance.now();
      let ack: Ack<BidAck>;
      try {
        ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('lot:bid', { key: `${t.id}:${randomUUID()}`, lotId: lot, card, units })) as Ack<BidAck>;
      } catch (err) {
        errors.push(`${t.id}: ${(err as Error).message}`);
        return;
      }
      const done = performance.now();
      if (ack.ok) {
        minOf.set(lot, Math.max(minOf.get(lot) ?? 1, ack.data.units + 1));
        if (sent >= measureFrom && done <= measureTo) {
          accepted += 1;
          measured.push({ lot, units: ack.data.units, sent });
        }
      } else if (ack.error.code === 'VND_ERR_BID_TOO_LOW') {
        if (sent >= measureFrom && done <= measureTo) refused += 1;
        const min = ack.error.details?.['minBidUnits'];
        if (typeof min === 'number') minOf.set(lot, Math.max(minOf.get(lot) ?? 1, min));
      } else {
        errors.push(`${ack.error.code}: ${ack.error.message}`);
        return;
      }
      void i;
    }
  };
  await Promise.all(sockets.map((s, i) => loop(s, terminals[i] as BenchTerminal, i)));
  /** When the board first showed a bid of at least `units` on `lot` (a push shows the latest bid, so every one before it too). */
  const shownAt = (lot: string, units: number): number | undefined => updates.get(lot)?.find((u) => u.units >= units)?.at;
  // The last pushes come at most a coalescing interval after the last bids.
  const settle = performance.now() + 2_000;
  while (performance.now() < settle && measured.some((m) => shownAt(m.lot, m.units) === undefined)) await new Promise((r) => setTimeout(r, 10));
  board.off('lots:update', onBoard);
  for (const s of sockets) s.off('lots:update', learn);
  const boardMs: number[] = [];
  let missing = 0;
  for (const m of measured) {
    const at = shownAt(m.lot, m.units);
    if (at === undefined) missing += 1;
    else boardMs.push(Math.max(0, at - m.sent));
  }
  if (missing > 0) errors.push(`${missing} accepted bids never showed on the board`);
  boardMs.sort((a, b) => a - b);
  return { accepted, refused, bidsPerS: accepted / (MODE.measureMs / 1000), boardMs, errors };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mallpos-bench-auction-'));
  let child: Child | null = null;
  const limit = setTimeout(() => {
    log(`abandoned after ${MODE.limitMs} ms`);
    killAllChildren();
    process.exit(1);
  }, MODE.limitMs);
  limit.unref();
  try {
    log(`building a demo store with ${CUSTOMERS} customers`);
    const store = await buildStore(dir, { customers: CUSTOMERS, unitsPerCustomer: UNITS_PER_CUSTOMER, eventsTarget: 0, checkpoint: true });
    child = await spawnMallpos('mallpos', dir, { timeoutMs: START_TIMEOUT_MS });
    const url = child.url;
    const terminals = await pairTerminals(url, store.operatorToken, (t) => store.cards.filter((_, i) => i % TERMINALS === t));
    const sockets = await connectTerminals(url, terminals);
    await signInAll(sockets);
    const board: Socket = io(`${url}/board`, { ca: authorityFor(url), transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      board.once('connect', () => resolve());
      board.once('connect_error', reject);
    });

    log(`sales: ${TERMINALS} tills, ${MODE.warmupMs} ms warm-up, ${MODE.measureMs} ms measured`);
    const sales = await runLoad(sockets, terminals, { warmupMs: MODE.warmupMs, measureMs: MODE.measureMs, counter: { next: 0 } });
    log(`sales: ${describeLoad(sales)}`);

    const lots = await createLots(url, store.operatorToken, LOTS, 'Bench lot');
    log(`bids: ${TERMINALS} tills on ${LOTS} lots`);
    const spread = await runBids(sockets, terminals, board, lots);
    const p50 = quantile(spread.boardMs, 0.5);
    const p99 = quantile(spread.boardMs, 0.99);
    log(`bids: ${Math.round(spread.bidsPerS)} accepted/s (${spread.refused} lost a race), bid to board p50 ${p50.toFixed(1)} p99 ${p99.toFixed(1)} ms${spread.errors.length === 0 ? '' : `, ERRORS: ${spread.errors[0] ?? ''}`}`);

    const [single] = await createLots(url, store.operatorToken, 1, 'Contested lot');
    log(`bids: ${TERMINALS} tills racing on one lot`);
    const contested = await runBids(sockets, terminals, board, [single as string]);
    log(`one lot: ${Math.round(contested.bidsPerS)} accepted/s (${contested.refused} lost a race), bid to board p99 ${quantile(contested.boardMs, 0.99).toFixed(1)} ms`);

    board.disconnect();
    disconnectAll(sockets);
    await stopChild(child, STOP_GRACE_MS);
    child = null;

    const result = {
      bids_per_s: round1(spread.bidsPerS),
      bid_to_board_ms: { p50: round1(p50), p99: round1(p99) },
      sales_per_s: round1(sales.salesPerS),
      one_lot_bids_per_s: round1(contested.bidsPerS),
      one_lot_bid_to_board_ms: { p50: round1(quantile(contested.boardMs, 0.5)), p99: round1(quantile(contested.boardMs, 0.99)) },
      refused_bids: spread.refused + contested.refused,
      errors: [...spread.errors, ...contested.errors].length + sales.errors,
      targets: {
        bid_to_board_p99_ms_max: TARGET_BOARD_P99_MS,
        bids_per_s_min: round1(TARGET_BID_TO_SALE_RATIO * sales.salesPerS),
        met: p99 <= TARGET_BOARD_P99_MS && spread.bidsPerS >= TARGET_BID_TO_SALE_RATIO * sales.salesPerS,
      },
      mode: quick ? 'quick' : 'full',
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    if (child !== null) await stopChild(child, STOP_GRACE_MS).catch(() => undefined);
    killAllChildren();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  killAllChildren();
  process.exit(1);
});
