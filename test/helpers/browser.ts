import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { io, type Socket } from 'socket.io-client';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal, type StartTerminalOptions } from '../../terminal/run.ts';
import { RUN_DIR_ENV, sharedInRun } from './run-shared.ts';
import { startDemoStore, type DemoStore } from './vendor.ts';

/** Debian's chromium; playwright-core ships no browser of its own. */
export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  // A kiosk page in a background tab must still render at full speed (tests, bench).
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/** What a test does with a browser: pages and contexts of its own, closed together. */
export type TestBrowser = Pick<Browser, 'newPage' | 'newContext' | 'close'>;

function launch(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs], timeout: 30_000 });
}

/** How long a process waits for another to launch the run's browser: chromium on a busy machine. */
const SHARED_LAUNCH_DEADLINE_MS = 120_000;

/**
 * The test run's browser: the first process of the run that needs one launches it as a
 * server (`sharedInRun`), and every process connects to it. It stops with the process
 * that launched it, which mocha ends with the others at the end of the run. A process
 * that cannot reach it (it went away) launches a browser of its own. Without a run
 * directory (a test file loaded some other way, a script) the process has its own.
 */
async function runBrowser(): Promise<Browser> {
  const runDir = process.env[RUN_DIR_ENV];
  if (runDir === undefined) return launch();
  const { announced } = await sharedInRun(
    runDir,
    'chromium',
    async () => {
      const server = await chromium.launchServer({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
      return { wsEndpoint: server.wsEndpoint() };
    },
    SHARED_LAUNCH_DEADLINE_MS,
  );
  return chromium.connect(announced.wsEndpoint, { timeout: 30_000 }).catch(() => launch());
}

/** This process's browser (the run's, or its own), connected at the first test that asks for one. */
let shared: Promise<Browser> | null = null;

function sharedBrowser(): Promise<Browser> {
  if (shared === null) {
    const launching = runBrowser();
    shared = launching;
    // A launch that failed, or a browser that went away, is launched again by the next test.
    launching.then((b) => b.once('disconnected', () => (shared = shared === launching ? null : shared)), () => (shared = shared === launching ? null : shared));
  }
  return shared;
}

/** Stops this process's shared browser, for a script that ends once its pages are done (the tests' processes need not). */
export async function closeSharedBrowser(): Promise<void> {
  const launching = shared;
  shared = null;
  await (await launching?.catch(() => null))?.close();
}

/**
 * Headless Debian chromium for a test. Launching chromium costs a few seconds of CPU, so
 * the test files of a run share one browser, each in contexts of its own: a context has
 * its own cookies, storage and cache, as a fresh profile would. `close()` closes the
 * contexts this test opened; the browser goes with the process that launched it
 * (playwright stops what it launched when its process exits). A test that needs chromium
 * started with other flags (`extraArgs`) gets a browser of its own, which `close()` stops.
 */
export async function launchBrowser(extraArgs: string[] = []): Promise<TestBrowser> {
  if (extraArgs.length > 0) return launch(extraArgs);
  const browser = await sharedBrowser();
  const contexts = new Set<BrowserContext>();
  const own = async (options?: Parameters<Browser['newContext']>[0]): Promise<BrowserContext> => {
    const context = await browser.newContext(options);
    contexts.add(context);
    context.once('close', () => contexts.delete(context));
    return context;
  };
  return {
    newContext: own,
    async newPage(options) {
      return (await own(options)).newPage();
    },
    async close() {
      await Promise.all([...contexts].map((c) => c.close()));
    },
  };
}

export const VIEWPORT_DESKTOP = { width: 1024, height: 768 } as const;
export const VIEWPORT_SMALL = { width: 390, height: 760 } as const;

/** Opens the cashier screen and waits until it has drawn the terminal's first state. */
export async function openScreen(browser: TestBrowser, url: string, viewport: { width: number; height: number } = VIEWPORT_DESKTOP): Promise<Page> {
  const page = await browser.newPage({ viewport });
  await page.goto(url);
  await page.waitForSelector('body[data-state-version]', { timeout: 30_000 });
  return page;
}

/**
 * A socket.io client that uses the cashier screen as its page does, for tests that drive
 * the terminal without a browser: it loads `/` for the screen's per-launch secret
 * (a cookie) and sends it with the page's Origin on the handshake.
 */
export async function screenSocket(url: string): Promise<Socket> {
  const res = await fetch(url);
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  await res.arrayBuffer();
  if (res.status !== 200 || cookie === '') throw new Error(`the screen at ${url} gave no secret (HTTP ${res.status})`);
  return io(url, { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: { cookie, origin: new URL(url).origin } });
}

export interface TerminalRig {
  store: DemoStore;
  terminal: RunningTerminal;
  terminalId: string;
  dataDir: string;
  /** Stops the terminal (scanner, printer simulator, screen) and the store; removes temp dirs. */
  close(): Promise<void>;
}

/**
 * A demo store and a terminal paired with it the way `pos-terminal pair` does, with the
 * simulated scanner (socat pty read by the real serialport binding) and the printer
 * simulator (ESC/POS over TCP), everything on ephemeral ports and temp directories.
 */
export async function startTerminalRig(opts: { ackTimeoutMs?: number; terminal?: Partial<StartTerminalOptions>; auctionClock?: () => Date } = {}): Promise<TerminalRig> {
  const store = await startDemoStore(opts.auctionClock === undefined ? {} : { auctionClock: opts.auctionClock });
  const dataDir = await mkdtemp(join(tmpdir(), 'mallpos-term-'));
  const scanDir = await mkdtemp(join(tmpdir(), 'mallpos-scan-'));
  let terminal: RunningTerminal | null = null;
  try {
    const created = await store.operator('POST', '/api/terminals', { name: 'Till 1' });
    if (created.status !== 200) throw new Error(`create terminal: ${created.text}`);
    const credential = await pairTerminal(dataDir, store.server.url, created.body.pairingCode as string);
    terminal = await startTerminal({
      dataDir,
      scanner: 'sim',
      scannerSimDir: scanDir,
      printer: 'sim',
      printerSimPort: 0,
      port: 0,
      ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
      ...opts.terminal,
    });
    const running = terminal;
    await waitFor(() => running.app.state().status.server.state === 'connected' && running.app.state().status.scanner.state === 'connected', 30_000, 'terminal connected to store and scanner');
    return {
      store,
      terminal: running,
      terminalId: credential.terminalId,
      dataDir,
      async close() {
        await running.close();
        await store.close();
        await rm(dataDir, { recursive: true, force: true });
        await rm(scanDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await terminal?.close();
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
    await rm(scanDir, { recursive: true, force: true });
    throw err;
  }
}

/** Polls a condition every few milliseconds; throws with `what` after the timeout. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Waits until the element with this data-testid shows `text` (a substring, or a match of the pattern). */
export async function expectTestIdText(page: Page, id: string, text: string | RegExp, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    ([sel, want, isRe]) => {
      const t = document.querySelector(sel)?.textContent ?? '';
      return isRe ? new RegExp(want).test(t) : t.includes(want);
    },
    [`[data-testid="${id}"]`, text instanceof RegExp ? text.source : text, text instanceof RegExp] as const,
    { timeout: timeoutMs },
  );
}

/** What a till was doing, for a failure's message: its message, waiting sale, cashier and link. */
export function tillSummary(terminal: RunningTerminal): unknown {
  const s = terminal.app.state();
  return { message: s.message, completing: s.completing, cashier: s.cashier, server: s.status.server.state, lastSale: s.lastSale?.saleId ?? null, customer: s.cart.customer?.id ?? null, economyResult: s.economy.result?.title ?? null };
}

/**
 * Waits for a dialog to open; when it does not, the error says which dialogs the page has
 * open and, given `explain`, what the till was doing.
 */
export async function waitDialogOpen(page: Page, id: string, timeoutMs: number, explain?: () => unknown): Promise<void> {
  try {
    await page.locator(`[data-testid="${id}"][open]`).waitFor({ timeout: timeoutMs });
  } catch (err) {
    const openDialogs = await page.evaluate(() => Array.from(document.querySelectorAll('dialog[open]'), (d) => d.getAttribute('data-testid'))).catch(() => null);
    // What the page itself says: a refusal the page made on its own (no customer, say) is shown only there.
    const pageMessage = await page.locator('[data-testid="message-text"]').innerText({ timeout: 1_000 }).catch(() => null);
    throw new Error(`${id} did not open: ${JSON.stringify({ openDialogs, pageMessage, till: explain?.() ?? null })}`, { cause: err });
  }
}

/**
 * Lookups a cashier-screen test makes on its page, each waiting up to `timeoutMs`. The page
 * is read at each call, since a `before` hook opens it after the suite declares these.
 * `explain` says what the till was doing when a dialog does not open.
 */
export function screenQueries(page: () => Page, timeoutMs: number, explain?: () => unknown) {
  return {
    tid: (id: string) => page().locator(`[data-testid="${id}"]`),
    expectText: (id: string, text: string | RegExp) => expectTestIdText(page(), id, text, timeoutMs),
    dialogOpen: (id: string) => waitDialogOpen(page(), id, timeoutMs, explain),
    dialogClosed: (id: string) => page().locator(`[data-testid="${id}"]:not([open])`).waitFor({ state: 'attached', timeout: timeoutMs }),
  };
}

/** A printed receipt's text, one line per printed line. */
export function printedText(r: { lines: { text: string }[] } | undefined): string {
  return (r?.lines ?? []).map((l) => l.text).join('\n');
}

export interface StandInScreen {
  terminal: RunningTerminal;
  dataDir: string;
  page: Page;
  /** Closes the browser and the terminal and removes the data directory; the stand-in store is the caller's. */
  close(): Promise<void>;
}

/**
 * A real terminal paired with a stand-in store server (anything that writes a paired
 * credential into a data directory), and its cashier screen in headless chromium, opened
 * once the terminal is `ready` (by default: connected to the stand-in).
 */
export async function startStandInScreen(
  store: { pair(dataDir: string): Promise<void> },
  opts: {
    dirPrefix: string;
    terminal: Omit<StartTerminalOptions, 'dataDir'>;
    timeoutMs: number;
    ready?: { cond: (t: RunningTerminal) => boolean; what: string };
  },
): Promise<StandInScreen> {
  const dataDir = await mkdtemp(join(tmpdir(), opts.dirPrefix));
  let terminal: RunningTerminal | null = null;
  let browser: TestBrowser | null = null;
  const close = async () => {
    await browser?.close();
    await terminal?.close();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await store.pair(dataDir);
    const running = await startTerminal({ dataDir, ...opts.terminal });
    terminal = running;
    const ready = opts.ready ?? { cond: (t: RunningTerminal) => t.app.state().status.server.state === 'connected', what: 'the terminal connected to the stand-in store' };
    await waitFor(() => ready.cond(running), opts.timeoutMs, ready.what);
    browser = await launchBrowser();
    const page = await openScreen(browser, running.screen.url);
    return { terminal: running, dataDir, page, close };
  } catch (err) {
    await close();
    throw err;
  }
}
