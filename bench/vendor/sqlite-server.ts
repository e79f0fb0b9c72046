/**
 * The comparison server: the same socket.io sale protocol served by a plain
 * better-sqlite3 ledger, the way one would write it without a journal of one's own.
 * One SQLite transaction per sale (idempotency check, prices from the products table,
 * balance check and debit, sale row), WAL with synchronous=FULL so that an acknowledged
 * sale is on disk, as the vendor server promises.
 *
 *   node --import tsx bench/vendor/sqlite-server.ts --db FILE --seed SEED.json --tls-dir DIR
 *
 * Listens on 127.0.0.1 on an ephemeral port and prints {"port":N}.
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import Database from 'better-sqlite3';
import { Server } from 'socket.io';
import { bodyHash, MallposError, parse, saleCommitRequest, SOCKET_PAYLOAD_BYTES_MAX, type SaleCommitRequest } from '../../core/index.ts';
import type { SqliteSeed } from './stores.ts';
import { benchHttpsServer } from './tls-server.ts';
import { exitWithParent } from './watch-parent.ts';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i === -1 ? undefined : process.argv[i + 1];
  if (v === undefined) throw new Error(`usage: sqlite-server.ts --db FILE --seed SEED.json (missing ${name})`);
  return v;
}

const db = new Database(arg('--db'));
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec(`
  CREATE TABLE IF NOT EXISTS products (gtin TEXT NOT NULL, token TEXT NOT NULL, name TEXT NOT NULL, units INTEGER NOT NULL, PRIMARY KEY (gtin, token)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS balances (customer TEXT NOT NULL, token TEXT NOT NULL, units INTEGER NOT NULL CHECK (units >= 0), PRIMARY KEY (customer, token)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS sales (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, body_hash TEXT NOT NULL, result TEXT NOT NULL);
`);

const seed = JSON.parse(await readFile(arg('--seed'), 'utf8')) as SqliteSeed;
const insertProduct = db.prepare('INSERT OR REPLACE INTO products (gtin, token, name, units) VALUES (?, ?, ?, ?)');
const insertBalance = db.prepare('INSERT OR REPLACE INTO balances (customer, token, units) VALUES (?, ?, ?)');
db.transaction(() => {
  for (const p of seed.products) insertProduct.run(p.gtin, p.token, p.name, p.units);
  for (const b of seed.balances) insertBalance.run(b.customer, b.token, b.units);
})();

const saleByKey = db.prepare<[string], { body_hash: string; result: string }>('SELECT body_hash, result FROM sales WHERE key = ?');
const priceOf = db.prepare<[string, string], { name: string; units: number }>('SELECT name, units FROM products WHERE gtin = ? AND token = ?');
const balanceOf = db.prepare<[string, string], { units: number }>('SELECT units FROM balances WHERE customer = ? AND token = ?');
const debit = db.prepare('UPDATE balances SET units = units - ? WHERE customer = ? AND token = ?');
const insertSale = db.prepare('INSERT INTO sales (key, body_hash, result) VALUES (?, ?, ?)');
const nextId = db.prepare<[], { id: number }>('SELECT COALESCE(MAX(id), 0) + 1 AS id FROM sales');

interface Line {
  lineNo: number;
  gtin: string;
  name: string;
  qty: number;
  unitUnits: number;
  units: number;
}

/** Prices the cart in the one tendered token and debits the customer; all or nothing. */
const commitSale = db.transaction((req: SaleCommitRequest, hash: string): unknown => {
  const earlier = saleByKey.get(req.key);
  if (earlier !== undefined) {
    if (earlier.body_hash !== hash) throw new MallposError('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    return JSON.parse(earlier.result);
  }
  const tender = req.tenders[0];
  if (req.tenders.length !== 1 || tender === undefined || tender.units !== undefined) {
    throw new MallposError('CORE_ERR_VALIDATION', 'this server takes exactly one token tender covering the whole cart');
  }
  if (req.card === null) throw new MallposError('CORE_ERR_TENDER_WITHOUT_CUSTOMER', 'a token tender needs a customer card');
  const lines: Line[] = req.lines.map((l, i) => {
    const p = priceOf.get(l.code, tender.token);
    if (p === undefined) throw new MallposError('CORE_ERR_PRODUCT_NOT_ELIGIBLE', `${l.code} cannot be paid with ${tender.token} tokens`);
    return { lineNo: i + 1, gtin: l.code, name: p.name, qty: l.qty, unitUnits: p.units, units: p.units * l.qty };
  });
  const total = lines.reduce((s, l) => s + l.units, 0);
  const balance = balanceOf.get(req.card, tender.token)?.units ?? 0;
  if (balance < total) throw new MallposError('CORE_ERR_INSUFFICIENT_TOKENS', `not enough ${tender.token} tokens: ${total - balance} short`);
  debit.run(total, req.card, tender.token);
  const id = (nextId.get() as { id: number }).id;
  const result = {
    saleId: `S${String(id).padStart(10, '0')}`,
    seq: id,
    at: new Date().toISOString(),
    customer: req.card,
    lines,
    debits: { [tender.token]: total },
    balancesAfter: { [tender.token]: balance - total },
  };
  insertSale.run(req.key, hash, JSON.stringify(result));
  return result;
});

const http = await benchHttpsServer();
const io = new Server(http, { serveClient: false, maxHttpBufferSize: SOCKET_PAYLOAD_BYTES_MAX, pingInterval: 5_000, pingTimeout: 5_000, cors: { origin: false } });
io.on('connection', (socket) => {
  socket.on('sale:commit', (payload: unknown, ack: unknown) => {
    if (typeof ack !== 'function') return;
    try {
      const req = parse(saleCommitRequest, payload);
      const hash = bodyHash({ lines: req.lines, card: req.card, tenders: req.tenders, cash: req.cashTenderedMinor });
      ack({ ok: true, data: commitSale(req, hash) });
    } catch (err) {
      const wire = err instanceof MallposError ? err.toWire() : { code: 'VND_ERR_INTERNAL', message: (err as Error).message };
      ack({ ok: false, error: wire });
    }
  });
});

const stop = () => {
  io.close();
  db.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();

http.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (http.address() as AddressInfo).port }));
});
