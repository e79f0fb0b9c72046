import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { dataPaths, loadConfig } from '../../vendor-server/config.ts';
import { DEMO_PRODUCTS, initVendor } from '../../vendor-server/init.ts';
import { LedgerService, type Actor } from '../../vendor-server/ledger/service.ts';
import { openLedger } from '../../vendor-server/ledger/store.ts';
import { fetchTls } from '../tls-client.ts';
import { salePayload, SALE_TOKEN, type BenchTerminal } from './load.ts';

/**
 * Data directories for the mallpos vendor server, built in-process with the real ledger
 * code (initVendor, openLedger, LedgerService), so every journal event is one the server
 * itself would have written and replays with its hash chain intact.
 */

export const TERMINALS = 20;

/** Commits in flight at once while building: enough for group commit to batch them, few enough to bound memory. */
const BUILD_CONCURRENCY = 4_000;
const HTTP_TIMEOUT_MS = 10_000;
const OPERATOR: Actor = { terminal: null, cashier: null };

export interface BuiltStore {
  dir: string;
  operatorToken: string;
  /** Customer cards with balances, in registration order. */
  cards: string[];
  unitsPerCustomer: number;
  /** The journal's last seq when the build finished. */
  events: number;
  /** Seq covered by the last checkpoint on disk. */
  checkpointSeq: number;
  buildMs: number;
}

export interface BuildOptions {
  customers: number;
  unitsPerCustomer: number;
  /** Sales are committed until the journal holds this many events (0: none). */
  eventsTarget: number;
  /**
   * true: a checkpoint covering everything at the end; 'policy': checkpoints every
   * 100,000 events while building, as the server does, so the last one lags behind.
   */
  checkpoint: boolean | 'policy';
  progress?: (text: string) => void;
}

/** Runs `count` calls of `one` with at most BUILD_CONCURRENCY unresolved at a time. */
async function inWaves(count: number, one: (i: number) => Promise<unknown>, progress?: (done: number) => void): Promise<void> {
  for (let from = 0; from < count; from += BUILD_CONCURRENCY) {
    const to = Math.min(count, from + BUILD_CONCURRENCY);
    const wave: Promise<unknown>[] = [];
    for (let i = from; i < to; i++) wave.push(one(i));
    await Promise.all(wave);
    progress?.(to);
  }
}

/**
 * A demo store (init --demo) plus an ACME allotment, `customers` registered customers
 * holding `unitsPerCustomer` ACME each, and then sales on the bench's payloads until the
 * journal reaches eventsTarget.
 */
export async function buildStore(dir: string, opts: BuildOptions): Promise<BuiltStore> {
  const started = performance.now();
  const init = await initVendor({ dataDir: dir, demo: true, host: '127.0.0.1' });
  const config = await loadConfig(dir);
  const opened = await openLedger({
    dataDir: dataPaths(dir).ledgerDir,
    vendorId: config.vendorId,
    segmentBytesMax: config.segmentBytesMax,
    keysMax: config.idempotencyKeysMax,
  });
  const ledger = new LedgerService(
    { vendorId: config.vendorId, name: config.storeName, address: config.address, currency: config.currency },
    opened.state,
    opened.journal,
    {},
    undefined,
    config.idempotencyKeysMax,
  );
  try {
    await ledger.recordAllotment(OPERATOR, `op:bench-${randomUUID()}`, {
      token: SALE_TOKEN,
      units: opts.customers * opts.unitsPerCustomer,
      reference: 'bench allotment',
    });
    const cards: string[] = new Array<string>(opts.customers);
    const ids: string[] = new Array<string>(opts.customers);
    await inWaves(opts.customers, async (i) => {
      const c = await ledger.registerCustomer(OPERATOR, { name: `Bench customer ${i + 1}` });
      cards[i] = c.card;
      ids[i] = c.id;
    });
    await inWaves(opts.customers, (i) =>
      ledger.issueTokens(OPERATOR, `op:bench-${randomUUID()}`, { customerId: ids[i] as string, token: SALE_TOKEN, units: opts.unitsPerCustomer, reason: 'reward' }),
    );

    const sales = Math.max(0, opts.eventsTarget - ledger.state.seq);
    if (sales > 0) {
      const terminals: BenchTerminal[] = [];
      for (let t = 0; t < TERMINALS; t++) {
        terminals.push({ id: `t${String(t + 1).padStart(3, '0')}`, credential: '', cards: cards.filter((_, i) => i % TERMINALS === t) });
      }
      let lastReport = performance.now();
      await inWaves(
        sales,
        (i) => {
          const terminal = terminals[i % TERMINALS] as BenchTerminal;
          const done = ledger.commitSale({ terminal: terminal.id, cashier: null }, salePayload(terminal, Math.floor(i / TERMINALS)));
          if (opts.checkpoint === 'policy') void opened.checkpoints.maybe();
          return done;
        },
        (done) => {
          if (opts.progress !== undefined && performance.now() - lastReport > 5_000) {
            lastReport = performance.now();
            opts.progress(`${done} of ${sales} sales journalled`);
          }
        },
      );
    }
    if (opts.checkpoint === true) await opened.checkpoints.now();
    while (opened.checkpoints.writing) await new Promise((r) => setTimeout(r, 20));
    return {
      dir,
      operatorToken: init.operatorToken,
      cards,
      unitsPerCustomer: opts.unitsPerCustomer,
      events: ledger.state.seq,
      checkpointSeq: opened.checkpoints.seq,
      buildMs: performance.now() - started,
    };
  } finally {
    await opened.journal.close();
  }
}

/** Pairs TERMINALS terminals through the operator API, as a store operator would. */
export async function pairTerminals(url: string, operatorToken: string, cardsFor: (t: number) => string[]): Promise<BenchTerminal[]> {
  const terminals: BenchTerminal[] = [];
  for (let t = 0; t < TERMINALS; t++) {
    const created = await fetchTls(`${url}/api/terminals`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: `Bench till ${t + 1}` }),
      timeoutMs: HTTP_TIMEOUT_MS,
    });
    const body = (await created.json()) as { pairingCode?: string };
    if (!created.ok || body.pairingCode === undefined) throw new Error(`creating a terminal failed: ${created.status} ${JSON.stringify(body)}`);
    const paired = await fetchTls(`${url}/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: body.pairingCode }),
      timeoutMs: HTTP_TIMEOUT_MS,
    });
    const p = (await paired.json()) as { terminalId?: string; credential?: string };
    if (!paired.ok || p.terminalId === undefined || p.credential === undefined) throw new Error(`pairing failed: ${paired.status} ${JSON.stringify(p)}`);
    terminals.push({ id: p.terminalId, credential: p.credential, cards: cardsFor(t) });
  }
  return terminals;
}

/** What the SQLite server is seeded with: the demo catalog and the same customers and balances. */
export interface SqliteSeed {
  products: { gtin: string; name: string; token: string; units: number }[];
  balances: { customer: string; token: string; units: number }[];
}

export async function writeSqliteSeed(path: string, cards: string[], unitsPerCustomer: number): Promise<void> {
  const seed: SqliteSeed = {
    products: DEMO_PRODUCTS.flatMap((p) => Object.entries(p.tokens).map(([token, units]) => ({ gtin: p.code, name: p.name, token, units }))),
    balances: cards.map((customer) => ({ customer, token: SALE_TOKEN, units: unitsPerCustomer })),
  };
  await writeFile(path, JSON.stringify(seed));
}

/** Scrapes a Prometheus histogram's sum and count from /metrics. */
export async function histogram(url: string, name: string): Promise<{ sum: number; count: number } | null> {
  const text = await (await fetchTls(`${url}/metrics`, { timeoutMs: HTTP_TIMEOUT_MS })).text();
  const sum = new RegExp(`^${name}_sum(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1];
  const count = new RegExp(`^${name}_count(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1];
  return sum === undefined || count === undefined ? null : { sum: Number(sum), count: Number(count) };
}

/**
 * Waits until the server's background integrity audit (its own low-priority process,
 * which reads the whole journal once after start) has ended, and returns how long that
 * took from the call. null: still checking at the deadline.
 */
export async function auditSettled(url: string, deadlineMs: number): Promise<number | null> {
  const started = performance.now();
  while (performance.now() - started < deadlineMs) {
    const res = await fetchTls(`${url}/health`, { timeoutMs: HTTP_TIMEOUT_MS }).catch(() => null);
    const body = res === null ? null : ((await res.json().catch(() => null)) as { integrity?: { state?: string } } | null);
    const state = body?.integrity?.state;
    if (state !== undefined && state !== 'checking') return performance.now() - started;
    await new Promise((r) => setTimeout(r, 250));
  }
  return null;
}
