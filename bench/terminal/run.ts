/**
 * Terminal bench: how fast the cashier sees a scan, and how fast a completed sale is on
 * paper, with the real parts.
 *
 * Set-up, as in a store: the vendor server (demo catalog) and a paired pos-terminal run
 * as two child processes (bench/terminal/child.ts). The bench process holds the devices:
 * a virtual scanner (socat pty; the terminal reads it through the real serialport
 * binding) and the printer simulator (the terminal prints ESC/POS to it over TCP). The
 * cashier page runs in headless Debian chromium driven by playwright-core.
 *
 * Clocks. The page's and the bench's `performance.now()` both read the machine's
 * monotonic clock but from different origins. The offset is estimated like NTP: 40
 * round trips `t0 = now(); p = page.now(); t1 = now()`; the fastest gives
 * offset = p - (t0 + t1) / 2, uncertain by at most (t1 - t0) / 2 (about 0.1-0.3 ms).
 * It is measured again at the end, and the drift is reported.
 *
 * scan_to_screen_ms: from just before the bench writes the code and its CR to the pty
 * (one write: the last byte goes with it) until the page has the new cart line on
 * screen. A MutationObserver in the page stamps the moment the line's row enters the
 * DOM; a requestAnimationFrame callback then posts a message, which runs after that
 * frame is rendered, and stamps that too. The JSON reports the frame stamp: the line is
 * painted by then. Scans are closed loop: one at a time, the next once the previous line
 * is priced, as a fast cashier scans. Each scan is a new line (products cycle), and the
 * sale is cancelled every LINES_PER_CART lines, so renders are of a realistic cart.
 *
 * complete_to_receipt_ms: from the click on Complete (stamped in the page by a capturing
 * click listener, converted to the bench's clock) until the printer simulator has
 * decoded the whole receipt (its cut). That covers the page command, the terminal's
 * durable pending-sale file, the vendor server's commit (journal fsync), the print
 * queue's durable write, and the ESC/POS job with its status queries.
 *
 * instrument_scan_to_accept_ms: a gift certificate verified offline at the till. The
 * store's cached mall snapshot lists the certificates' key and the mall cannot be reached
 * (offline, so the figure is the store's own verification and spent-set check, not a
 * round trip to a mall). From just before the bench writes a certificate's QR payload
 * (its compact form, about 300 characters, in 8 chunks) to the pty, until the page shows
 * the checked certificate with what remains on it (a MutationObserver stamps the panel's
 * new view, a frame later as for scans). Each scan is a new certificate.
 *
 * `--quick`: 200 scans, 20 sales and 50 certificates instead of 1,000, 100 and 200. The last stdout line is the
 * JSON; details go to stderr. The whole run is bounded by a deadline, after which every
 * process it started is stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { PrinterSimulator } from '../../hardware/printer/index.ts';
import { VirtualScanner } from '../../hardware/scanner/index.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { DEFAULT_INSTRUMENT_POLICY, instrumentCode, type SnapshotPayload } from '../../core/index.ts';
import { signInstrument } from '../../platform/instruments.ts';
import { createSigningKey, type SigningKey } from '../../platform/key-files.ts';
import { createTlsIdentity } from '../../platform/tls.ts';
import { dataPaths, loadConfig, writeConfig } from '../../vendor-server/config.ts';
import { DEMO_PRODUCTS, demoTokenTypes, initVendor } from '../../vendor-server/init.ts';
import { fetchTls, trustDataDir } from '../tls-client.ts';
import { launchBrowser, openScreen } from './browser.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

const quick = process.argv.includes('--quick');
const SCANS = quick ? 200 : 1_000;
const SALES = quick ? 20 : 100;
const INSTRUMENT_SCANS = quick ? 50 : 200;
const WARMUP_INSTRUMENT_SCANS = 5;
const INSTRUMENT_CHUNKS = 8;
/** A mall address where nothing listens: the store judges certificates offline. */
const NO_MALL = 'https://127.0.0.1:9';
const WARMUP_SCANS = 20;
const WARMUP_SALES = 3;
const LINES_PER_CART = 40;
const DEADLINE_MS = quick ? 115_000 : 540_000;
const STEP_TIMEOUT_MS = 10_000;
const CHILD_START_TIMEOUT_MS = 30_000;
const CHILD_STOP_WAIT_MS = 3_000;
const CLOCK_SAMPLES = 40;
const BENCH_TOKENS = 100_000;
/** The demo store's cashier (vendor-server/init.ts). */
const CASHIER = { staffId: 'ana', pin: '1234', shown: 'Ana (cashier)' };

const log = (text: string) => process.stderr.write(`${text}\n`);
/** BENCH_TERMINAL_TRACE=file writes every scan's timings there, to look for patterns in the slow ones. */
const TRACE = process.env['BENCH_TERMINAL_TRACE'];
const trace: Record<string, number>[] = [];

// ---- processes -----------------------------------------------------------------------------

interface Child {
  name: string;
  proc: ChildProcess;
  url: string;
}

const children = new Set<ChildProcess>();

function spawnChild(name: string, args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  let stderr = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d: string) => (stderr = (stderr + d).slice(-8_000)));
  proc.stdout?.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let out = '';
    let ready = false;
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${CHILD_START_TIMEOUT_MS} ms:\n${stderr}`)), CHILD_START_TIMEOUT_MS);
    proc.stdout?.on('data', (d: string) => {
      if (ready) return;
      out += d;
      for (const line of out.split('\n').slice(0, -1)) {
        try {
          const msg = JSON.parse(line) as { ready?: boolean; url?: string };
          if (msg.ready === true && typeof msg.url === 'string') {
            ready = true;
            clearTimeout(timer);
            resolve({ name, proc, url: msg.url.replace(/\/$/, '') });
          }
        } catch {
          // Not the ready line.
        }
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });
}

/** Closes the child's stdin (it shuts down cleanly), then kills it if it lingers. */
async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.stdin?.end();
  const timer = setTimeout(() => proc.kill('SIGKILL'), CHILD_STOP_WAIT_MS);
  await exited;
  clearTimeout(timer);
}

// ---- measuring -------------------------------------------------------------------------------

/** Runs in the page: stamps new cart rows and Complete clicks with the page's clock. */
const PROBE = `(() => {
  const tbody = document.querySelector('[data-testid="cart-lines"]');
  const seen = new Map();
  const waiters = new Map();
  const settle = (key) => {
    const rec = seen.get(key);
    const waiter = waiters.get(key);
    if (rec && rec.frame !== null && waiter) { waiters.delete(key); waiter(rec); }
  };
  new MutationObserver((records) => {
    const now = performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      const key = n.dataset && n.dataset.lineNo;
      if (key === undefined || seen.has(key)) continue;
      const rec = { dom: now, frame: null };
      seen.set(key, rec);
      requestAnimationFrame(() => {
        const ch = new MessageChannel();
        ch.port1.onmessage = () => { rec.frame = performance.now(); settle(key); };
        ch.port2.postMessage(0);
      });
    }
  }).observe(tbody, { childList: true });
  const bench = { lastClick: null };
  bench.reset = () => { seen.clear(); waiters.clear(); };
  bench.waitLine = (key) => new Promise((resolve) => { waiters.set(key, resolve); settle(key); });
  document.addEventListener('click', (e) => {
    if (e.target instanceof Element && e.target.closest('[data-testid="btn-complete"]')) bench.lastClick = performance.now();
  }, true);
  window.__bench = bench;
})()`;

/** Runs in the page: stamps each checked certificate the instruments panel shows, by its code. */
const INSTRUMENT_PROBE = `(() => {
  const box = document.querySelector('[data-testid="instruments"]');
  const seen = new Map();
  const waiters = new Map();
  const settle = (code) => {
    const rec = seen.get(code);
    const waiter = waiters.get(code);
    if (rec && rec.frame !== null && waiter) { waiters.delete(code); waiter(rec); }
  };
  new MutationObserver(() => {
    const now = performance.now();
    const view = box.querySelector('[data-testid="instrument-view"]');
    const code = view && view.dataset.code;
    if (!code || seen.has(code)) return;
    const rec = { dom: now, frame: null };
    seen.set(code, rec);
    requestAnimationFrame(() => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => { rec.frame = performance.now(); settle(code); };
      ch.port2.postMessage(0);
    });
  }).observe(box, { childList: true, subtree: true });
  window.__instruments = { wait: (code) => new Promise((resolve) => { waiters.set(code, resolve); settle(code); }) };
})()`;

/**
 * Lists a mall instrument key in the store's cached snapshot and points the store at a mall
 * that does not answer: certificates signed with the key are then checked offline.
 */
async function offlineInstrumentStore(vendorDir: string, keysDir: string): Promise<SigningKey> {
  const mallKey = await createSigningKey(join(keysDir, 'mall-key.jwk.json'), 'mall key', 'MALL_ERR_CONFIG');
  const instrumentKey = await createSigningKey(join(keysDir, 'mall-instrument-key.jwk.json'), 'mall instrument key', 'MALL_ERR_CONFIG');
  const tls = await createTlsIdentity(join(keysDir, 'tls'), 'Bench mall authority', ['127.0.0.1']);
  const config = await loadConfig(vendorDir);
  await writeConfig(vendorDir, { ...config, mall: { url: NO_MALL, jwk: mallKey.publicJwk as unknown as Record<string, unknown>, caPem: tls.caPem, snapshotMaxAgeHours: 72, batchEventsMax: 500, batchAgeMs: 1000 } });
  const snapshot: SnapshotPayload = {
    v: 1,
    vendor: config.vendorId,
    issuedAt: new Date().toISOString(),
    mall: { kid: mallKey.kid, jwk: mallKey.publicJwk as unknown as Record<string, unknown> },
    tokenTypes: demoTokenTypes(config.vendorId),
    fees: { royaltyBps: 0, royaltyBpsByVendor: {}, royaltyBpsByToken: {}, reimbursementTollMinor: 0, customerDataTollMinor: 0, exchangeServiceBps: 0 },
    vendors: [],
    allotments: [],
    instruments: {
      keys: [{ kid: instrumentKey.kid, issuer: 'mall', kinds: ['gift'], jwk: { kty: 'OKP', crv: 'Ed25519', x: instrumentKey.publicJwk.x }, validFrom: '2020-01-01T00:00:00.000Z', validTo: null }],
      policy: DEFAULT_INSTRUMENT_POLICY,
    },
  };
  const syncDir = join(dataPaths(vendorDir).ledgerDir, 'sync');
  await mkdir(syncDir, { recursive: true, mode: 0o700 });
  await writeFile(join(syncDir, 'snapshot.json'), JSON.stringify({ jws: null, payload: snapshot }), { mode: 0o600 });
  return instrumentKey;
}

interface LineStamp {
  dom: number;
  frame: number;
}

async function calibrate(page: Page): Promise<{ offset: number; uncertainty: number }> {
  let best = { rtt: Number.POSITIVE_INFINITY, offset: 0 };
  for (let i = 0; i < CLOCK_SAMPLES; i++) {
    const t0 = performance.now();
    const p = await page.evaluate('performance.now()');
    const t1 = performance.now();
    if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: (p as number) - (t0 + t1) / 2 };
  }
  return { offset: best.offset, uncertainty: best.rtt / 2 };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

function summary(samples: number[]): { p50: number; p90: number; p99: number; max: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), max: r(s.at(-1) ?? Number.NaN), n: s.length };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

const linesOnPage = (page: Page) => page.locator('[data-testid="cart-line"]').count();

async function cancelSale(page: Page): Promise<void> {
  await page.click('[data-testid="btn-cancel-sale"]', { timeout: STEP_TIMEOUT_MS });
  await page.click('[data-testid="btn-cancel-ok"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="cart-line"]').length === 0, null, { timeout: STEP_TIMEOUT_MS });
  await page.evaluate('window.__bench.reset()');
}

/** Waits until no line on the page is waiting for the store server's pricing. */
function waitPriced(page: Page): Promise<unknown> {
  return page.waitForFunction(
    () => !Array.from(document.querySelectorAll('[data-testid="line-paid"]')).some((e) => e.textContent === 'pricing…'),
    null,
    { timeout: STEP_TIMEOUT_MS },
  );
}

// ---- the run ---------------------------------------------------------------------------------

const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log(`cleanup: ${(err as Error).message}`));
    for (const proc of children) proc.kill('SIGKILL');
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const started = performance.now();
  const root = await mkdtemp(join(tmpdir(), 'mallpos-bench-terminal-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const vendorDir = join(root, 'vendor');
  const terminalDir = join(root, 'terminal');

  const init = await initVendor({ dataDir: vendorDir, demo: true });
  const instrumentKey = await offlineInstrumentStore(vendorDir, join(root, 'mall-keys'));
  const vendor = await spawnChild('vendor', ['vendor', vendorDir]);
  cleanups.push(() => stopChild(vendor.proc));
  await trustDataDir(vendor.url, vendorDir);
  const op = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetchTls(`${vendor.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${init.operatorToken}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };

  // A customer with tokens for every sale of the run.
  const customer = (await op('POST', '/api/customers', { name: 'Bench customer' })) as { id: string; card: string };
  await op('POST', '/api/issuances', { customerId: customer.id, token: 'ACME', units: BENCH_TOKENS, reason: 'reward' }, { 'idempotency-key': `bench-${randomUUID()}` });
  const created = (await op('POST', '/api/terminals', { name: 'Bench till' })) as { pairingCode: string };
  await pairTerminal(terminalDir, vendor.url, created.pairingCode);

  const scanner = await VirtualScanner.create({ dir: join(root, 'scanner') });
  cleanups.push(() => scanner.close());
  const printer = new PrinterSimulator({ port: 0, host: '127.0.0.1', receiptsMax: SALES + WARMUP_SALES + 10 });
  await printer.start();
  cleanups.push(() => printer.stop());

  const terminal = await spawnChild('terminal', ['terminal', terminalDir, scanner.devicePath, printer.url]);
  cleanups.push(() => stopChild(terminal.proc));

  const browser: Browser = await launchBrowser();
  cleanups.push(() => browser.close());
  const page = await openScreen(browser, `${terminal.url}/`);
  await page.waitForSelector('[data-testid="status-server"][data-state="ok"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForSelector('[data-testid="status-scanner"][data-state="ok"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForSelector('[data-testid="status-printer"][data-state="ok"]', { timeout: STEP_TIMEOUT_MS });
  // A sale needs a signed-in cashier on the terminal's connection: sign in through the
  // screen's own dialog, as a cashier starts a shift (the demo store's cashier).
  await page.click('[data-testid="btn-signin"]', { timeout: STEP_TIMEOUT_MS });
  await page.fill('[data-testid="signin-staff"]', CASHIER.staffId);
  await page.fill('[data-testid="signin-pin"]', CASHIER.pin);
  await page.keyboard.press('Enter');
  await page.waitForFunction((name) => document.querySelector('[data-testid="cashier-name"]')?.textContent === name, CASHIER.shown, { timeout: STEP_TIMEOUT_MS });
  await page.evaluate(PROBE);
  const clockStart = await calibrate(page);
  log(`bench: set up in ${Math.round(performance.now() - started)} ms; page clock offset ${clockStart.offset.toFixed(2)} ms ± ${clockStart.uncertainty.toFixed(2)} ms`);

  // ---- scan to screen ----
  const products = DEMO_PRODUCTS.map((p) => p.code);
  const scanDom: number[] = [];
  const scanFrame: number[] = [];
  const writeMs: number[] = [];
  let lineNo = 0;
  const scansStarted = performance.now();
  for (let i = 0; i < WARMUP_SCANS + SCANS; i++) {
    if (lineNo >= LINES_PER_CART) {
      await cancelSale(page);
      lineNo = 0;
    }
    const code = products[i % products.length] ?? '4006381333931';
    lineNo += 1;
    const t0 = performance.now();
    await scanner.scan(code);
    const t1 = performance.now();
    const stamp = (await within(page.evaluate(`window.__bench.waitLine(${JSON.stringify(String(lineNo))})`), STEP_TIMEOUT_MS, `line ${lineNo} of scan ${i}`)) as LineStamp;
    if (TRACE !== undefined) trace.push({ i, at: Math.round(t0 - scansStarted), lineNo, write: t1 - t0, dom: stamp.dom - clockStart.offset - t0, frame: stamp.frame - clockStart.offset - t0 });
    if (i >= WARMUP_SCANS) {
      scanDom.push(stamp.dom - clockStart.offset - t0);
      scanFrame.push(stamp.frame - clockStart.offset - t0);
      writeMs.push(t1 - t0);
    }
    await waitPriced(page);
  }
  log(`bench: ${SCANS} scans in ${Math.round(performance.now() - scansStarted)} ms (+${WARMUP_SCANS} warm-up)`);
  await cancelSale(page);
  const clockMid = await calibrate(page);

  // ---- complete to receipt ----
  const completeMs: number[] = [];
  const salesStarted = performance.now();
  for (let s = 0; s < WARMUP_SALES + SALES; s++) {
    const a = products[(2 * s) % products.length] ?? '4006381333931';
    const b = products[(2 * s + 1) % products.length] ?? '5901234123457';
    await scanner.scan(a);
    await scanner.scan(b);
    await scanner.scan(customer.card);
    await page.waitForFunction(
      () => document.querySelectorAll('[data-testid="cart-line"]').length === 2 && document.querySelector('[data-testid="customer-name"]') !== null,
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
    await waitPriced(page);
    await page.click('[data-testid="btn-tender"][data-token="ACME"]', { timeout: STEP_TIMEOUT_MS });
    await page.waitForSelector('[data-testid="debit"][data-token="ACME"]', { timeout: STEP_TIMEOUT_MS });

    const printed = new Promise<number>((resolve) => {
      const off = printer.onReceipt(() => {
        off();
        resolve(performance.now());
      });
    });
    await page.click('[data-testid="btn-complete"]', { timeout: STEP_TIMEOUT_MS });
    const printedAt = await within(printed, STEP_TIMEOUT_MS, `receipt of sale ${s}`);
    const clickedAt = (await page.evaluate('window.__bench.lastClick')) as number;
    if (TRACE !== undefined) trace.push({ sale: s, at: Math.round(printedAt - salesStarted), complete: printedAt - (clickedAt - clockMid.offset) });
    if (s >= WARMUP_SALES) completeMs.push(printedAt - (clickedAt - clockMid.offset));

    await page.waitForFunction(() => document.querySelectorAll('[data-testid="cart-line"]').length === 0 && document.querySelector('[data-testid="message"]')?.getAttribute('data-kind') === 'success', null, {
      timeout: STEP_TIMEOUT_MS,
    });
    const saleId = (await page.textContent('[data-testid="last-sale-id"]')) ?? '';
    const receipt = printer.receipts().at(-1);
    const text = (receipt?.lines ?? []).map((l) => l.text).join('\n');
    if (!/^S\d{10}$/.test(saleId) || !text.includes(saleId)) throw new Error(`receipt of sale ${s} does not name ${saleId}:\n${text}`);
    await page.evaluate('window.__bench.reset()');
  }
  if (TRACE !== undefined) await writeFile(TRACE, trace.map((t) => JSON.stringify(t)).join('\n'));
  log(`bench: ${SALES} sales in ${Math.round(performance.now() - salesStarted)} ms (+${WARMUP_SALES} warm-up)`);
  if (printer.receipts().length !== WARMUP_SALES + SALES) throw new Error(`expected ${WARMUP_SALES + SALES} receipts, the printer has ${printer.receipts().length}`);
  if ((await linesOnPage(page)) !== 0) throw new Error('the cart is not empty after the last sale');

  // ---- a gift certificate scanned, verified offline, shown ----
  await page.evaluate(INSTRUMENT_PROBE);
  const clockInstruments = await calibrate(page);
  const nowS = Math.floor(Date.now() / 1000);
  const certificates: { code: string; compact: string }[] = [];
  for (let i = 0; i < WARMUP_INSTRUMENT_SCANS + INSTRUMENT_SCANS; i++) {
    const serial = `B${String(i).padStart(9, '0')}`;
    certificates.push({ code: instrumentCode('mall', serial), compact: await signInstrument('gift', { i: 'mall', s: serial, t: 'MALL', u: 500, a: nowS - 60, x: nowS + 86_400 }, instrumentKey) });
  }
  const acceptMs: number[] = [];
  const instrumentsStarted = performance.now();
  for (const [i, c] of certificates.entries()) {
    const t0 = performance.now();
    await scanner.scan(c.compact, { chunks: INSTRUMENT_CHUNKS });
    const stamp = (await within(page.evaluate(`window.__instruments.wait(${JSON.stringify(c.code)})`), STEP_TIMEOUT_MS, `certificate ${c.code}`)) as LineStamp;
    if (i >= WARMUP_INSTRUMENT_SCANS) acceptMs.push(stamp.frame - clockInstruments.offset - t0);
  }
  const shownRemaining = (await page.textContent('[data-testid="instrument-remaining"]')) ?? '';
  if (!shownRemaining.includes('500 MALL')) throw new Error(`the last certificate shows "${shownRemaining}", not its 500 MALL`);
  log(`bench: ${INSTRUMENT_SCANS} certificates scanned in ${Math.round(performance.now() - instrumentsStarted)} ms (+${WARMUP_INSTRUMENT_SCANS} warm-up)`);

  const clockEnd = await calibrate(page);
  const scanDomS = summary(scanDom);
  const scanFrameS = summary(scanFrame);
  const completeS = summary(completeMs);
  const acceptS = summary(acceptMs);
  log(
    JSON.stringify({
      mode: quick ? 'quick' : 'full',
      scan_to_dom_ms: scanDomS,
      scan_to_painted_frame_ms: scanFrameS,
      pty_write_ms: summary(writeMs),
      complete_to_receipt_ms: completeS,
      instrument_scan_to_accept_ms: acceptS,
      clock: {
        offset_ms: Math.round(clockStart.offset * 100) / 100,
        uncertainty_ms: Math.round(Math.max(clockStart.uncertainty, clockMid.uncertainty) * 100) / 100,
        drift_ms: Math.round((clockEnd.offset - clockStart.offset) * 100) / 100,
      },
      targets: { scan_to_screen_p99_ms: 50, complete_to_receipt_p99_ms: 250, instrument_scan_to_accept_p99_ms: 50 },
      total_ms: Math.round(performance.now() - started),
    }),
  );
  process.stdout.write(
    `${JSON.stringify({ scan_to_screen_ms: { p50: scanFrameS.p50, p99: scanFrameS.p99 }, complete_to_receipt_ms: { p50: completeS.p50, p99: completeS.p99 }, instrument_scan_to_accept_ms: { p50: acceptS.p50, p99: acceptS.p99 } })}\n`,
  );
}

const deadline = setTimeout(() => {
  log(`bench: not finished within ${DEADLINE_MS} ms; stopping`);
  void cleanup().finally(() => process.exit(1));
}, DEADLINE_MS);
deadline.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  log(`bench: ${(err as Error).stack ?? String(err)}`);
} finally {
  await cleanup();
  clearTimeout(deadline);
}
process.exit(failed ? 1 : 0);
