import { cp, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { createServer, connect, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { Socket as ClientSocket } from 'socket.io-client';
import { PrinterSimulator } from '../../hardware/printer/index.ts';
import { VirtualScanner } from '../../hardware/scanner/index.ts';
import type { ScreenState } from '../../terminal/app.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { loadConfig, writeConfig } from '../../vendor-server/config.ts';
import { freePort, killHard, runCli, spawnTerminal, spawnVendorServer, START_DEADLINE_MS, until, type ChildServer } from '../helpers/process.ts';
import { fetchTls } from '../helpers/http.ts';
import { tempDir } from '../helpers/vendor.ts';
import { screenSocket } from '../helpers/browser.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const BREAD = '5901234123457';
const PEN = '4006381333931';
const CARD = 'C0000000018';
const CUSTOMER_ID = 'cust-000001';
const CUSTOMER_PIN = '864209';

/** A TCP proxy that can drop everything the server sends: a request arrives, its answer is lost. */
async function blackholeProxy(targetPort: () => number): Promise<{ port: number; blackhole: (on: boolean) => void; close: () => Promise<void> }> {
  let dropping = false;
  const sockets = new Set<Socket>();
  const srv = createServer((client) => {
    const upstream = connect(targetPort(), '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!dropping) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const address = srv.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    blackhole: (on) => (dropping = on),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

/**
 * A proxy in front of a socket.io server that can replace the text of WebSocket frames
 * the server sends (socket.io sends each packet as one unmasked, uncompressed text
 * frame). `rewrite` returns the new text, or null to pass a frame on unchanged. The store
 * is reached over TLS only, so the proxy ends TLS with the store's own certificate (the
 * one its terminals trust) and opens TLS again to the store.
 */
async function rewritingProxy(
  targetPort: number,
  tls: { cert: string; key: string; ca: string },
  rewrite: (text: string) => string | null,
): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const frame = (text: string): Buffer => {
    const payload = Buffer.from(text, 'utf8');
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x81, n]) : n < 65_536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x81, 127]), Buffer.from(new BigUint64Array([BigInt(n)]).buffer).reverse()]);
    return Buffer.concat([head, payload]);
  };
  const srv = createTlsServer({ cert: tls.cert, key: tls.key }, (client) => {
    const upstream = tlsConnect({ port: targetPort, host: '127.0.0.1', ca: tls.ca });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => upstream.write(d));
    let buf = Buffer.alloc(0);
    let mode: 'head' | 'frames' | 'raw' = 'head';
    upstream.on('data', (d: Buffer) => {
      if (mode === 'raw') {
        client.write(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (mode === 'head') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        // Only a WebSocket upgrade carries frames; any other answer passes as it is.
        mode = buf.subarray(0, 12).toString('latin1') === 'HTTP/1.1 101' ? 'frames' : 'raw';
        if (mode === 'raw') {
          client.write(buf);
          return;
        }
        client.write(buf.subarray(0, end + 4));
        buf = buf.subarray(end + 4);
      }
      for (;;) {
        if (buf.length < 2) return;
        const b0 = buf[0] ?? 0;
        const b1 = buf[1] ?? 0;
        let len = b1 & 0x7f;
        let offset = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          offset = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          offset = 10;
        }
        if (buf.length < offset + len) return;
        const whole = buf.subarray(0, offset + len);
        const replaced = (b0 & 0x0f) === 1 && (b0 & 0x80) !== 0 ? rewrite(buf.subarray(offset, offset + len).toString('utf8')) : null;
        client.write(replaced === null ? whole : frame(replaced));
        buf = buf.subarray(offset + len);
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const address = srv.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

interface Store {
  dir: string;
  port: number;
  token: string;
  server: ChildServer;
}

async function op(store: Store, method: string, path: string, body?: unknown) {
  const res = await fetchTls(`${store.server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${store.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, text: await res.text() };
}

async function eventsWithKey(store: Store, key: string): Promise<number> {
  const exported = await op(store, 'GET', '/api/ledger/export?format=jsonl');
  return exported.text
    .trim()
    .split('\n')
    .filter((l) => (JSON.parse(l) as { event?: { key: string | null } }).event?.key === key).length;
}

/** The store's own certificate, key and authority: what a proxy needs to stand in for it. */
async function storeTls(store: Store): Promise<{ cert: string; key: string; ca: string }> {
  const pem = (name: string) => readFile(join(store.dir, 'vendor', 'tls', name), 'utf8');
  return { cert: await pem('server-cert.pem'), key: await pem('server-key.pem'), ca: await pem('ca-cert.pem') };
}

const exists = (file: string) => stat(file).then(() => true, () => false);

/** Makes every token payment of a stopped store need the PIN of a customer who set one. */
async function requireCustomerPins(vendorDir: string): Promise<void> {
  await writeConfig(vendorDir, { ...(await loadConfig(vendorDir)), customerPinAboveMinor: 0 });
}

async function acmeBalance(store: Store): Promise<number> {
  const c = JSON.parse((await op(store, 'GET', `/api/customers?card=${CARD}`)).text) as { balances: { token: string; units: number }[] }[];
  return c[0]?.balances.find((b) => b.token === 'ACME')?.units ?? 0;
}

/**
 * A sale must be charged exactly once whatever dies in the middle of completing it:
 * the vendor server (SIGKILL while the request is in flight, then a restart on the same
 * port) or the terminal itself (SIGKILL after it wrote the pending sale, then a restart).
 */
describe('e2e: completing a sale is exactly once across crashes', function () {
  this.timeout(300_000);
  let store: Store;
  let cleanups: (() => Promise<void>)[] = [];
  let printer: PrinterSimulator;
  /** Whether the tests' store is started with customer PINs required (the suite of those tests sets it). */
  let pinsRequired = false;
  /** A store as `init --demo` leaves it, made once: each test starts on a copy of its own. */
  let initialised: { dir: string; token: string; cleanup: () => Promise<void> };

  before(async () => {
    const { dir, cleanup } = await tempDir('mallpos-once-init-');
    const init = await runCli(['init', '--data-dir', join(dir, 'vendor'), '--demo', '--pin-hash-cost', String(TEST_PIN_HASH_COST)]);
    expect(init.code, init.stderr).to.equal(0);
    initialised = { dir: join(dir, 'vendor'), token: /^\s+(mpo_\S+)$/m.exec(init.stdout)?.[1] ?? '', cleanup };
  });
  after(async () => {
    await initialised?.cleanup();
  });

  beforeEach(async () => {
    cleanups = [];
    const { dir, cleanup } = await tempDir('mallpos-once-');
    cleanups.push(cleanup);
    // A copy keeps the files' modes: the keys stay readable by their owner only, as init left them.
    await cp(initialised.dir, join(dir, 'vendor'), { recursive: true });
    const token = initialised.token;
    const port = await freePort();
    if (pinsRequired) await requireCustomerPins(join(dir, 'vendor'));
    const server = await spawnVendorServer(join(dir, 'vendor'), START_DEADLINE_MS, port);
    store = { dir, port, token, server };
    cleanups.unshift(async () => killHard(store.server.child));
    if (pinsRequired) {
      const set = await op(store, 'PUT', `/api/customers/${CUSTOMER_ID}/pin`, { pin: CUSTOMER_PIN });
      expect(set.status, set.text).to.equal(200);
    }
    printer = new PrinterSimulator({ port: 0 });
    await printer.start();
    cleanups.unshift(() => printer.stop());
  });
  afterEach(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
  });

  async function pairedTerminalDir(): Promise<string> {
    // Pairs through the server's own address.
    const created = JSON.parse((await op(store, 'POST', '/api/terminals', { name: 'Till 1' })).text) as { pairingCode: string };
    const dir = join(store.dir, 'terminal');
    await pairTerminal(dir, store.server.url, created.pairingCode);
    return dir;
  }

  it('finishes the sale once when the vendor server is killed mid-completion and restarted', async () => {
    // The terminal reaches the server through a proxy that can lose the server's answers.
    const proxy = await blackholeProxy(() => store.port);
    cleanups.unshift(() => proxy.close());
    const created = JSON.parse((await op(store, 'POST', '/api/terminals', { name: 'Till 1' })).text) as { pairingCode: string };
    const dir = join(store.dir, 'terminal');
    await pairTerminal(dir, `https://127.0.0.1:${proxy.port}`, created.pairingCode);
    const terminal = await tillWithPenForCard(dir, { ackTimeoutMs: 1_000 });
    const { app } = terminal;
    expect(app.state().cart.lines).to.have.length(1);
    const before = await acmeBalance(store);

    // The sale reaches the server and is committed, but the acknowledgement is lost.
    proxy.blackhole(true);
    const completing = app.command({ type: 'complete' });
    const key = await until('pending key', () => app.state().completing?.key);
    await until('server committed the sale', async () => ((await eventsWithKey(store, key)) === 1 ? true : undefined));
    // The terminal's wait for the lost answer times out; it keeps the sale and will send the same key again.
    await until('the ack to time out', () => (app.state().message?.text.includes('waiting for the store server to confirm the sale') === true ? true : undefined));
    expect(app.state().completing?.key, 'still waiting for an answer').to.equal(key);

    // Then the server dies; it comes back on the same port and answers again.
    await killHard(store.server.child);
    proxy.blackhole(false);
    await until('offline status', () => (app.state().status.server.state === 'offline' ? true : undefined));
    expect(app.state().completing?.key).to.equal(key);
    store.server = await spawnVendorServer(join(store.dir, 'vendor'), START_DEADLINE_MS, store.port);
    await completing;
    await app.whenIdle();
    const s: ScreenState = app.state();
    expect(s.completing).to.equal(null);
    expect(s.lastSale?.debits).to.deep.equal({ ACME: 90 });
    expect(s.message?.kind).to.equal('success');
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    const receipts = await printer.waitForReceipts(1, START_DEADLINE_MS);
    expect(receipts.map((r) => r.lines.map((l) => l.text).join('\n')).join('\n')).to.include(s.lastSale?.saleId ?? 'none');
    expect(await stat(join(dir, 'pending-sale.json')).then(() => true, () => false)).to.equal(false);
  });

  it('keeps the key and sends it again when the server answers an internal error for a sale it committed', async () => {
    // The server journals the sale, then its answer arrives as VND_ERR_INTERNAL (as when
    // applying an appended event fails): the terminal must not take that as a refusal.
    const messages: string[] = [];
    let key = '';
    const { app, dir, replaced } = await tillWithReplacedAnswer('saleId', { code: 'VND_ERR_INTERNAL', message: 'internal error in the store server' }, {
      ackTimeoutMs: 2_000,
      watch: (st) => {
        if (st.message !== null && messages.at(-1) !== st.message.text) messages.push(st.message.text);
        if (st.completing !== null && key === '') key = st.completing.key;
      },
    });
    const before = await acmeBalance(store);

    await app.command({ type: 'complete' });
    await app.whenIdle();
    expect(key).to.match(/^t\d+:/);
    expect(replaced(), 'the first answer was replaced by an internal error').to.equal(1);
    expect(messages.some((m) => m.includes('internal error in the store server') && m.includes('will not be charged twice')), messages.join(' | ')).to.equal(true);
    const s: ScreenState = app.state();
    expect(s.completing).to.equal(null);
    expect(s.message?.kind, s.message?.text).to.equal('success');
    expect(s.lastSale?.debits).to.deep.equal({ ACME: 90 });
    expect(s.cart.lines).to.deep.equal([]);
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    expect(await stat(join(dir, 'pending-sale.json')).then(() => true, () => false)).to.equal(false);
    const receipts = await printer.waitForReceipts(1, START_DEADLINE_MS);
    expect(receipts.map((r) => r.lines.map((l) => l.text).join('\n')).join('\n')).to.include(s.lastSale?.saleId ?? 'none');
  });

  /**
   * A till that reaches the store through a proxy replacing the first answer whose data
   * starts with `dataField` (`saleId`: a sale's ack, `store`: a receipt) by `error`. The
   * till is signed in, with the pen and Anna's card in its cart, paying with ACME tokens;
   * `watch` sees its state from the start.
   */
  async function tillWithReplacedAnswer(
    dataField: 'saleId' | 'store',
    error: { code: string; message: string },
    opts: { ackTimeoutMs?: number; watch?: (s: ScreenState) => void } = {},
  ) {
    let replaced = 0;
    const pattern = new RegExp(`^43(\\d+)\\[\\{"ok":true,"data":\\{"${dataField}"`);
    const proxy = await rewritingProxy(store.port, await storeTls(store), (text) => {
      const ack = pattern.exec(text);
      if (ack === null || replaced > 0) return null;
      replaced += 1;
      return `43${ack[1]}[${JSON.stringify({ ok: false, error })}]`;
    });
    cleanups.unshift(() => proxy.close());
    const created = JSON.parse((await op(store, 'POST', '/api/terminals', { name: 'Till 1' })).text) as { pairingCode: string };
    const dir = join(store.dir, 'terminal');
    await pairTerminal(dir, `https://127.0.0.1:${proxy.port}`, created.pairingCode);
    const { app } = await tillWithPenForCard(dir, opts);
    return { app, dir, replaced: () => replaced };
  }

  /**
   * Starts a terminal on a paired data directory, waits for its link to the store, signs
   * Ana in and rings up the pen for the demo customer's card, paid in ACME: the cart the
   * tests complete. The terminal is closed after the test.
   */
  async function tillWithPenForCard(dir: string, opts: { ackTimeoutMs?: number; watch?: (s: ScreenState) => void } = {}): Promise<RunningTerminal> {
    const terminal = await startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0, ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }) });
    cleanups.unshift(() => terminal.close());
    const { app } = terminal;
    if (opts.watch !== undefined) app.onState(opts.watch);
    await until('link', () => (app.link.connected ? true : undefined));
    await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'scan', code: CARD });
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    return terminal;
  }

  /**
   * Completes a sale through a proxy that replaces the first answer to receipt:get with
   * `code`; returns what the terminal showed and printed, and the key.
   */
  async function saleWithReceiptAnswer(code: string) {
    const messages: string[] = [];
    let key = '';
    const { app, dir, replaced } = await tillWithReplacedAnswer('store', { code, message: 'refused by the test' }, {
      ackTimeoutMs: 2_000,
      watch: (st) => {
        if (st.message !== null && messages.at(-1) !== st.message.text) messages.push(st.message.text);
        if (st.completing !== null && key === '') key = st.completing.key;
      },
    });
    const before = await acmeBalance(store);
    await app.command({ type: 'complete' });
    await app.whenIdle();
    expect(replaced(), 'the first receipt answer was replaced').to.equal(1);
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    expect(await stat(join(dir, 'pending-sale.json')).then(() => true, () => false)).to.equal(false);
    return { state: app.state(), messages };
  }

  it('asks for the receipt of a committed sale again when the answer was an internal error, and prints it', async () => {
    const { state, messages } = await saleWithReceiptAnswer('VND_ERR_INTERNAL');
    expect(messages.some((m) => m.includes('is committed; waiting for the store server to send its receipt')), messages.join(' | ')).to.equal(true);
    expect(state.message?.kind, state.message?.text).to.equal('success');
    expect(state.cart.lines).to.deep.equal([]);
    const receipts = await printer.waitForReceipts(1, START_DEADLINE_MS);
    expect(receipts.map((r) => r.lines.map((l) => l.text).join('\n')).join('\n')).to.include(state.lastSale?.saleId ?? 'none').and.include('Stabilo');
  });

  it('closes a committed sale whose receipt the server refuses, saying so, and charges once', async () => {
    const { state } = await saleWithReceiptAnswer('VND_ERR_RECEIPT_FORBIDDEN');
    expect(state.completing).to.equal(null);
    expect(state.message?.kind).to.equal('error');
    expect(state.message?.text).to.match(/^sale S\d{10} complete; receipt not printed: refused by the test$/);
    expect(state.cart.lines).to.deep.equal([]);
    expect(state.lastSale).to.equal(null);
  });

  it('drops the pending sale on a definite refusal, and charges nothing', async () => {
    const dir = await pairedTerminalDir();
    const terminal: RunningTerminal = await startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0 });
    cleanups.unshift(() => terminal.close());
    const { app } = terminal;
    await until('link', () => (app.link.connected ? true : undefined));
    await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    const before = await acmeBalance(store);
    for (let i = 0; i < 4; i++) await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'scan', code: CARD });
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME', units: before + 1 }] });
    await app.command({ type: 'complete' });
    await app.whenIdle();
    const s: ScreenState = app.state();
    expect(s.completing).to.equal(null);
    expect(s.message?.code).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
    expect(s.cart.lines).to.have.length(1);
    expect(await acmeBalance(store)).to.equal(before);
    expect(await stat(join(dir, 'pending-sale.json')).then(() => true, () => false)).to.equal(false);
  });

  it('reads barcodes from a serial port in the compiled terminal (its native serial binding, loaded from the bundle)', async () => {
    const dir = await pairedTerminalDir();
    // A socat pair of pseudo-terminals: the terminal opens one end as its scanner, the test writes into the other.
    const scanner = await VirtualScanner.create({ dir: join(store.dir, 'scanner') });
    cleanups.unshift(() => scanner.close());
    const terminal = await spawnTerminal(['--data-dir', dir, '--scanner', scanner.devicePath, '--printer', `tcp://127.0.0.1:${printer.port}`, '--port', '0']);
    cleanups.unshift(async () => killHard(terminal.child));
    const page: ClientSocket = await screenSocket(terminal.url);
    cleanups.unshift(async () => void page.disconnect());
    let latest: ScreenState | null = null;
    page.on('state', (s: ScreenState) => (latest = s));
    await until('terminal online', () => ((latest as ScreenState | null)?.status.server.state === 'connected' ? true : undefined));
    await scanner.scan(PEN);
    await until('the pen in the cart', () => ((latest as ScreenState | null)?.cart.lines.length === 1 ? true : undefined));
    await scanner.scan(BREAD);
    const cart = await until('the pen and the bread in the cart', () => {
      const lines = (latest as ScreenState | null)?.cart.lines ?? [];
      return lines.length === 2 ? lines : undefined;
    });
    expect(cart.map((l) => l.code)).to.deep.equal([PEN, BREAD]);
    expect(terminal.output()).to.not.match(/mock|keyboard/i);
  });

  it('finishes the sale once when the terminal is killed mid-completion and restarted', async () => {
    const dir = await pairedTerminalDir();
    const args = ['--data-dir', dir, '--scanner', 'none', '--printer', `tcp://127.0.0.1:${printer.port}`, '--port', '0'];
    let terminal = await spawnTerminal(args);
    cleanups.unshift(async () => killHard(terminal.child));
    let page: ClientSocket = await screenSocket(terminal.url);
    let latest: ScreenState | null = null;
    page.on('state', (s: ScreenState) => (latest = s));
    const command = (cmd: unknown) => page.timeout(START_DEADLINE_MS).emitWithAck('command', cmd) as Promise<{ ok: boolean }>;
    await until('terminal online', () => ((latest as ScreenState | null)?.status.server.state === 'connected' ? true : undefined));
    await command({ type: 'login', staffId: 'ana', pin: '1234' });
    await command({ type: 'scan', code: PEN });
    await command({ type: 'scan', code: CARD });
    await command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    await until('priced cart', () => ((latest as ScreenState | null)?.priced?.debits['ACME'] === 90 ? true : undefined));
    const before = await acmeBalance(store);

    // The server holds the request; the terminal dies after writing its pending sale.
    store.server.child.kill('SIGSTOP');
    void command({ type: 'complete' }).catch(() => undefined);
    const key = await until('pending key', () => (latest as ScreenState | null)?.completing?.key);
    await killHard(terminal.child);
    page.disconnect();
    store.server.child.kill('SIGCONT');
    // The request was already in the server's socket buffer: it commits the sale for a terminal that is gone.
    await until('server committed the sale', async () => ((await eventsWithKey(store, key)) === 1 ? true : undefined));
    terminal = await spawnTerminal(args);
    page = await screenSocket(terminal.url);
    latest = null;
    page.on('state', (s: ScreenState) => (latest = s));
    const done = await until('sale finished after restart', () => {
      const s = latest as ScreenState | null;
      return s !== null && s.completing === null && s.lastSale !== null ? s : undefined;
    });
    page.disconnect();
    expect(done.lastSale?.debits).to.deep.equal({ ACME: 90 });
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    expect(await stat(join(dir, 'pending-sale.json')).then(() => true, () => false)).to.equal(false);
    const receipts = await printer.waitForReceipts(1, START_DEADLINE_MS);
    expect(receipts.length).to.be.at.least(1);
  });

  it('waits for a cashier to sign in, then completes the same key once', async () => {
    const dir = await pairedTerminalDir();
    const terminal: RunningTerminal = await startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0 });
    cleanups.unshift(() => terminal.close());
    const { app } = terminal;
    await until('link', () => (app.link.connected ? true : undefined));
    await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'scan', code: CARD });
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    const before = await acmeBalance(store);

    await app.command({ type: 'complete' });
    await app.whenIdle();
    const key = app.state().completing?.key ?? '';
    expect(app.state().completing?.waiting?.for).to.equal('cashier');
    expect(app.state().completing?.waiting?.code).to.equal('VND_ERR_CASHIER_REQUIRED');
    expect(await exists(join(dir, 'pending-sale.json'))).to.equal(true);
    expect(await eventsWithKey(store, key)).to.equal(0);
    // The cart cannot change under the waiting key.
    await app.command({ type: 'scan', code: PEN });
    expect(app.state().cart.lines[0]?.qty).to.equal(1);

    await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    expect(app.state().message?.text).to.include('complete the sale again');
    await app.command({ type: 'complete' });
    await app.whenIdle();
    expect(app.state().completing).to.equal(null);
    expect(app.state().message?.kind, app.state().message?.text).to.equal('success');
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
  });

  it('sends a refund whose answer was lost again under its key, kept on disk across a restart until the answer', async () => {
    const proxy = await blackholeProxy(() => store.port);
    cleanups.unshift(() => proxy.close());
    const created = JSON.parse((await op(store, 'POST', '/api/terminals', { name: 'Till 1' })).text) as { pairingCode: string };
    const dir = join(store.dir, 'terminal');
    await pairTerminal(dir, `https://127.0.0.1:${proxy.port}`, created.pairingCode);
    const terminal: RunningTerminal = await startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0, ackTimeoutMs: 1_000 });
    cleanups.unshift(() => terminal.close());
    const { app } = terminal;
    await until('link', () => (app.link.connected ? true : undefined));
    await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    const before = await acmeBalance(store);
    await app.command({ type: 'scan', code: PEN });
    await app.command({ type: 'scan', code: CARD });
    await app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
    await app.command({ type: 'complete' });
    const saleId = app.state().lastSale?.saleId ?? '';
    expect(saleId).to.match(/^S\d{10}$/);
    expect(await acmeBalance(store)).to.equal(before - 90);

    await app.command({ type: 'scan', code: saleId });
    expect(app.state().refund?.sale.saleId).to.equal(saleId);
    const refundFile = join(dir, 'pending-refund.json');

    // The refund is committed, but every answer to it is lost: the terminal gives up for now.
    proxy.blackhole(true);
    await app.command({ type: 'refund', staffId: 'sam', pin: '9999', reason: 'damaged item' });
    const pending = JSON.parse(await readFile(refundFile, 'utf8')) as { key: string; saleId: string };
    expect(pending.saleId).to.equal(saleId);
    expect(await readFile(refundFile, 'utf8')).to.not.include('"9999"');
    expect(await eventsWithKey(store, pending.key)).to.equal(1);
    expect(app.state().refund?.refunded).to.equal(null);
    expect(app.state().message?.kind).to.equal('error');
    expect(app.state().message?.text).to.include('did not confirm the refund');
    expect(await acmeBalance(store)).to.equal(before);

    // The till is restarted; tried again, the refund is sent under the key on its disk
    // and answered with the refund that went through.
    proxy.blackhole(false);
    await terminal.close();
    const again: RunningTerminal = await startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0, ackTimeoutMs: 1_000 });
    cleanups.unshift(() => again.close());
    await until('link', () => (again.app.link.connected ? true : undefined));
    await again.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await again.app.command({ type: 'scan', code: saleId });
    expect(again.app.state().refund?.sale.saleId).to.equal(saleId);
    await again.app.command({ type: 'refund', staffId: 'sam', pin: '9999', reason: 'damaged item' });
    const s: ScreenState = again.app.state();
    expect(s.message?.kind, s.message?.text).to.equal('success');
    expect(s.refund?.refunded?.credited).to.deep.equal({ ACME: 90 });
    expect(await eventsWithKey(store, pending.key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before);
    expect(await exists(refundFile)).to.equal(false);
  });

  it('keeps the key of a sale answered "paired again", and completes it once when sent again', async () => {
    // The server commits the sale; its answer arrives as VND_ERR_CREDENTIAL_REPLACED.
    const { app, dir, replaced } = await tillWithReplacedAnswer('saleId', { code: 'VND_ERR_CREDENTIAL_REPLACED', message: 'this terminal was paired again' });
    const before = await acmeBalance(store);

    await app.command({ type: 'complete' });
    await app.whenIdle();
    expect(replaced()).to.equal(1);
    const key = app.state().completing?.key ?? '';
    expect(app.state().completing?.waiting?.for).to.equal('pairing');
    expect(app.state().message?.text).to.include('paired with the store again');
    expect(app.state().cart.lines).to.have.length(1);
    expect(await exists(join(dir, 'pending-sale.json'))).to.equal(true);
    expect(await eventsWithKey(store, key)).to.equal(1);

    // Sent again, the same key is answered with the sale that went through: charged once.
    await app.command({ type: 'complete' });
    await app.whenIdle();
    expect(app.state().message?.kind, app.state().message?.text).to.equal('success');
    expect(await eventsWithKey(store, key)).to.equal(1);
    expect(await acmeBalance(store)).to.equal(before - 90);
    expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
  });

  it('says a revoked till must be paired again, keeps the cart and charges nothing', async () => {
    const dir = await pairedTerminalDir();
    const terminal = await tillWithPenForCard(dir);
    const { app } = terminal;
    const before = await acmeBalance(store);
    const revoked = await op(store, 'POST', `/api/terminals/${terminal.app.state().terminal.id}/revoke`);
    expect(revoked.status, revoked.text).to.equal(200);
    await until('revoked', () => (app.state().status.server.state === 'revoked' ? true : undefined));

    await app.command({ type: 'complete' });
    const s: ScreenState = app.state();
    expect(s.message?.code).to.equal('POS_ERR_NOT_PAIRED');
    expect(s.message?.text).to.include('paired with the store again');
    expect(s.completing).to.equal(null);
    expect(s.cart.lines).to.have.length(1);
    expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
    expect(await acmeBalance(store)).to.equal(before);
  });

  describe('with every token payment needing the customer PIN of a customer who set one', () => {
    before(() => {
      pinsRequired = true;
    });
    after(() => {
      pinsRequired = false;
    });

    it('asks for the customer PIN, refuses a wrong one, and charges once when the answer to the right one is lost', async () => {
      const proxy = await blackholeProxy(() => store.port);
      cleanups.unshift(() => proxy.close());
      const created = JSON.parse((await op(store, 'POST', '/api/terminals', { name: 'Till 1' })).text) as { pairingCode: string };
      const dir = join(store.dir, 'terminal');
      await pairTerminal(dir, `https://127.0.0.1:${proxy.port}`, created.pairingCode);
      const terminal = await tillWithPenForCard(dir, { ackTimeoutMs: 1_000 });
      const { app } = terminal;
      const before = await acmeBalance(store);

      // Refused for the PIN: the sale waits with its key and body on disk, nothing charged.
      await app.command({ type: 'complete' });
      await app.whenIdle();
      const key = app.state().completing?.key ?? '';
      expect(key).to.match(/^t\d+:/);
      expect(app.state().completing?.waiting?.for).to.equal('customer-pin');
      expect(app.state().completing?.waiting?.code).to.equal('VND_ERR_CUSTOMER_PIN_REQUIRED');
      expect(app.state().cart.lines).to.have.length(1);
      expect(await eventsWithKey(store, key)).to.equal(0);
      const pendingFile = join(dir, 'pending-sale.json');
      const onDisk = JSON.parse(await readFile(pendingFile, 'utf8')) as { key: string; body: Record<string, unknown> };
      expect(onDisk.key).to.equal(key);

      // A wrong PIN: refused, still waiting under the same key, nothing charged.
      await app.command({ type: 'customerPin', pin: '1111' });
      await app.whenIdle();
      expect(app.state().completing?.key).to.equal(key);
      expect(app.state().completing?.waiting?.code).to.equal('VND_ERR_CUSTOMER_PIN');
      expect(await eventsWithKey(store, key)).to.equal(0);
      expect(await acmeBalance(store)).to.equal(before);

      // The right PIN reaches the server and is committed, but the answer is lost.
      proxy.blackhole(true);
      const paying = app.command({ type: 'customerPin', pin: CUSTOMER_PIN });
      await until('server committed the sale', async () => ((await eventsWithKey(store, key)) === 1 ? true : undefined));
      await until('the ack to time out', () => (app.state().message?.text.includes('waiting for the store server to confirm the sale') === true ? true : undefined));
      expect(app.state().completing?.key).to.equal(key);
      // While it waits, the PIN is on no file of the terminal's.
      const waitingOnDisk = await readFile(pendingFile, 'utf8');
      expect(waitingOnDisk).to.not.include(CUSTOMER_PIN).and.not.include('customerPin');
      expect(JSON.parse(waitingOnDisk)).to.deep.equal(onDisk);
      proxy.blackhole(false);
      await paying;
      await app.whenIdle();

      const s: ScreenState = app.state();
      expect(s.completing).to.equal(null);
      expect(s.message?.kind, s.message?.text).to.equal('success');
      expect(s.lastSale?.debits).to.deep.equal({ ACME: 90 });
      expect(await eventsWithKey(store, key)).to.equal(1);
      expect(await acmeBalance(store)).to.equal(before - 90);
      expect(await exists(pendingFile)).to.equal(false);
      const receipts = await printer.waitForReceipts(1, START_DEADLINE_MS);
      expect(receipts.map((r) => r.lines.map((l) => l.text).join('\n')).join('\n')).to.include(s.lastSale?.saleId ?? 'none');
    });

    it('gives up a sale waiting for the customer PIN with nothing charged, the cart kept and the store still selling', async () => {
      const dir = await pairedTerminalDir();
      const terminal = await tillWithPenForCard(dir);
      const { app } = terminal;
      const before = await acmeBalance(store);
      await app.command({ type: 'complete' });
      await app.whenIdle();
      const key = app.state().completing?.key ?? '';
      expect(app.state().completing?.waiting?.for).to.equal('customer-pin');

      await app.command({ type: 'stopCompletion' });
      const s: ScreenState = app.state();
      expect(s.completing).to.equal(null);
      expect(s.message?.text).to.include('nothing was charged');
      expect(s.cart.lines).to.have.length(1);
      expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
      expect(await eventsWithKey(store, key)).to.equal(0);
      expect(await acmeBalance(store)).to.equal(before);

      // The cart is paid in cash instead, under a new key.
      await app.command({ type: 'setTenders', tenders: [] });
      await app.command({ type: 'setCash', cashTenderedMinor: 500 });
      await app.command({ type: 'complete' });
      await app.whenIdle();
      expect(app.state().message?.kind, app.state().message?.text).to.equal('success');
      expect(app.state().lastSale?.cash.changeMinor).to.equal(50);
      expect(await acmeBalance(store)).to.equal(before);
    });

    it('asks for the customer PIN again after a restart, under the same key, and charges once', async () => {
      const dir = await pairedTerminalDir();
      const start = () => startTerminal({ dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0 });
      let terminal: RunningTerminal = await start();
      cleanups.unshift(() => terminal.close());
      await until('link', () => (terminal.app.link.connected ? true : undefined));
      await terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
      await terminal.app.command({ type: 'scan', code: PEN });
      await terminal.app.command({ type: 'scan', code: CARD });
      await terminal.app.command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
      const before = await acmeBalance(store);
      await terminal.app.command({ type: 'complete' });
      await terminal.app.whenIdle();
      const key = terminal.app.state().completing?.key ?? '';
      expect(terminal.app.state().completing?.waiting?.for).to.equal('customer-pin');

      // The till stops while the customer is typing. Started again, it sends the same sale:
      // the new connection has no cashier yet, then the PIN is asked for again.
      await terminal.close();
      terminal = await start();
      const { app } = terminal;
      await until('the sale waiting for a cashier', () => (app.state().completing?.waiting?.for === 'cashier' ? true : undefined));
      expect(app.state().completing?.key).to.equal(key);
      await app.command({ type: 'login', staffId: 'ana', pin: '1234' });
      await app.command({ type: 'complete' });
      await app.whenIdle();
      expect(app.state().completing?.waiting?.for).to.equal('customer-pin');
      expect(app.state().completing?.key).to.equal(key);
      expect(await eventsWithKey(store, key)).to.equal(0);
      await app.command({ type: 'customerPin', pin: CUSTOMER_PIN });
      await app.whenIdle();
      expect(app.state().message?.kind, app.state().message?.text).to.equal('success');
      expect(await eventsWithKey(store, key)).to.equal(1);
      expect(await acmeBalance(store)).to.equal(before - 90);
      expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
    });

    it('charges once when the answer to the customer PIN is replaced by an internal error', async () => {
      const { app, dir, replaced } = await tillWithReplacedAnswer('saleId', { code: 'VND_ERR_INTERNAL', message: 'internal error in the store server' });
      const before = await acmeBalance(store);
      await app.command({ type: 'complete' });
      await app.whenIdle();
      const key = app.state().completing?.key ?? '';
      expect(app.state().completing?.waiting?.for).to.equal('customer-pin');

      // The sale with the PIN is committed; its answer arrives as an internal error, so the
      // same key is sent again (with the PIN held in memory) and answered with the sale.
      await app.command({ type: 'customerPin', pin: CUSTOMER_PIN });
      await app.whenIdle();
      expect(replaced()).to.equal(1);
      const s: ScreenState = app.state();
      expect(s.completing).to.equal(null);
      expect(s.message?.kind, s.message?.text).to.equal('success');
      expect(await eventsWithKey(store, key)).to.equal(1);
      expect(await acmeBalance(store)).to.equal(before - 90);
      expect(await exists(join(dir, 'pending-sale.json'))).to.equal(false);
    });
  });
});
