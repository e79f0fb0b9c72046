import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { io } from 'socket.io-client';
import type { ScreenState } from '../../terminal/app.ts';
import { createScreenGuard } from '../../terminal/screen-guard.ts';
import { startScreen, type RunningScreen } from '../../terminal/screen-server.ts';
import { launchBrowser, screenSocket, startTerminalRig, VIEWPORT_DESKTOP, waitFor, type TerminalRig, type TestBrowser } from '../helpers/browser.ts';

const PEN = { code: '4006381333931', name: 'Stabilo pen, 4 colours' };
const UI_WAIT_MS = 5_000;
const EVIL_HOST = 'evil.test';

interface AttackResult {
  fetchState: string;
  fetchStateNoCors: string;
  fetchPage: string;
  socket: { outcome: string; frames: string[] };
}

/**
 * What a hostile page does, run inside it: read `/state` and the page, and speak
 * socket.io over a raw WebSocket (engine.io v4 framing) to send the terminal a scan.
 * `base` is the screen's address as the page sees it ('' for its own origin).
 */
const ATTACK = `
async function attack(base, wsBase) {
  const out = {};
  try {
    const r = await fetch(base + '/state', { credentials: 'include' });
    out.fetchState = 'HTTP ' + r.status + ' ' + (await r.text()).slice(0, 300);
  } catch (e) { out.fetchState = 'failed: ' + e.message; }
  try {
    const r = await fetch(base + '/state', { mode: 'no-cors', credentials: 'include' });
    out.fetchStateNoCors = r.type === 'opaque' ? 'opaque' : 'HTTP ' + r.status + ' ' + (await r.text()).slice(0, 300);
  } catch (e) { out.fetchStateNoCors = 'failed: ' + e.message; }
  try {
    const r = await fetch(base + '/', { credentials: 'include' });
    out.fetchPage = 'HTTP ' + r.status + ' ' + (await r.text()).slice(0, 300);
  } catch (e) { out.fetchPage = 'failed: ' + e.message; }
  out.socket = await new Promise((resolve) => {
    const frames = [];
    let settled = false;
    const ws = new WebSocket(wsBase + '/socket.io/?EIO=4&transport=websocket');
    const done = (outcome) => {
      if (settled) return;
      settled = true;
      try { ws.close(); } catch {}
      resolve({ outcome, frames });
    };
    ws.onmessage = (m) => {
      const d = String(m.data);
      frames.push(d.slice(0, 120));
      if (d.startsWith('0{')) ws.send('40');
      else if (d.startsWith('40')) ws.send('420' + JSON.stringify(['command', { type: 'scan', code: '${PEN.code}' }]));
      else if (d.startsWith('43')) done('command acknowledged');
      else if (d === '2') ws.send('3');
    };
    ws.onerror = () => done('error');
    ws.onclose = () => done('closed');
    setTimeout(() => done('no answer'), 4000);
  });
  return out;
}`;

const attackPage = (title: string) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1><script>${ATTACK}</script></body></html>`;

/** A raw HTTP GET with the headers given (fetch may not set Host). */
function rawGet(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Whether a socket.io client with these handshake headers gets a connection and a state. */
async function socketWith(url: string, extraHeaders: Record<string, string>): Promise<'connected' | string> {
  const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders });
  try {
    return await new Promise<string>((resolve) => {
      socket.once('state', () => resolve('connected'));
      socket.once('connect_error', (err) => resolve(`refused: ${err.message}`));
    });
  } finally {
    socket.disconnect();
  }
}

/**
 * Any web page the kiosk browser opens, and any page reached through a host name that
 * resolves to the till (DNS rebinding), must neither read the cashier screen nor drive
 * it. The attacks run in headless chromium, in the same browser profile as the real
 * screen (so its cookie is in the jar), and the terminal must not change.
 */
describe('e2e: only the cashier screen this terminal served can use it', function () {
  this.timeout(60_000);
  let rig: TerminalRig | null = null;
  let browser: TestBrowser | null = null;
  let context: BrowserContext;
  let screen: Page;
  let attacker: Server | null = null;
  let attackerPort = 0;
  let relaunched: RunningScreen | null = null;

  const the = (): TerminalRig => {
    if (rig === null) throw new Error('no rig');
    return rig;
  };
  const screenPort = () => the().terminal.screen.port;
  const snapshot = () => {
    const s: ScreenState = the().terminal.app.state();
    return JSON.stringify({ cart: s.cart, message: s.message, cashier: s.cashier, refund: s.refund, lastSale: s.lastSale, completing: s.completing });
  };

  before(async () => {
    rig = await startTerminalRig();
    // Recent Chromium refuses a rebound page's requests to loopback by itself (Local
    // Network Access); kiosk browsers may be older or run with it off, so it is switched
    // off here and the terminal's own checks are what the attacks meet.
    browser = await launchBrowser([`--host-resolver-rules=MAP ${EVIL_HOST} 127.0.0.1`, '--disable-features=LocalNetworkAccessChecks']);
    context = await browser.newContext({ viewport: VIEWPORT_DESKTOP });
    screen = await context.newPage();
    await screen.goto(the().terminal.screen.url);
    await screen.waitForSelector('body[data-state-version]', { timeout: 10_000 });
    attacker = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(attackPage('Win a prize'));
    });
    await new Promise<void>((resolve) => attacker?.listen(0, '127.0.0.1', () => resolve()));
    attackerPort = (attacker.address() as AddressInfo).port;
  });
  after(async () => {
    await browser?.close();
    await relaunched?.close();
    await new Promise<void>((resolve) => (attacker === null ? resolve() : attacker.close(() => resolve())));
    await rig?.close();
  });

  it('the screen page holds its secret in an HttpOnly, SameSite=Strict cookie that scripts cannot read', async () => {
    const cookies = await context.cookies(the().terminal.screen.url);
    const secret = cookies.find((c) => c.name === `mallpos_screen_${screenPort()}`);
    expect(secret, JSON.stringify(cookies)).to.not.equal(undefined);
    expect(secret?.httpOnly).to.equal(true);
    expect(secret?.sameSite).to.equal('Strict');
    expect(await screen.evaluate(() => document.cookie)).to.equal('');
  });

  it('a page from another port of the same host reads nothing and drives nothing', async () => {
    const before = snapshot();
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${attackerPort}/`);
    const result = (await page.evaluate(`attack('http://127.0.0.1:${screenPort()}', 'ws://127.0.0.1:${screenPort()}')`)) as AttackResult;
    await page.close();

    expect(result.fetchState, 'cross-origin fetch of /state').to.match(/^failed/);
    expect(result.fetchStateNoCors, 'no-cors fetch of /state').to.equal('opaque');
    expect(result.fetchPage, 'cross-origin fetch of the page').to.match(/^failed/);
    expect(result.socket.outcome, JSON.stringify(result.socket)).to.be.oneOf(['error', 'closed']);
    expect(result.socket.frames, 'no socket.io frame reached the page').to.deep.equal([]);
    // Give a command that did get through the time to show, then check nothing changed.
    await the().terminal.app.whenIdle();
    expect(snapshot()).to.equal(before);
    expect(the().terminal.app.state().cart.lines).to.deep.equal([]);
  });

  it('a page reached through another host name (DNS rebinding) gets refusals, never the state', async () => {
    const before = snapshot();
    const page = await context.newPage();
    // The hostile page came from the attacker's server under evil.test; evil.test now
    // resolves to the till, so the page's same-origin requests reach the screen server.
    const evilOrigin = `http://${EVIL_HOST}:${screenPort()}`;
    await page.route(`${evilOrigin}/prize`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: attackPage('Rebound') }));
    await page.goto(`${evilOrigin}/prize`);
    const result = (await page.evaluate(`attack('', 'ws://${EVIL_HOST}:${screenPort()}')`)) as AttackResult;
    await page.close();

    expect(result.fetchState).to.match(/^HTTP 403 /).and.include('POS_ERR_SCREEN_FORBIDDEN');
    expect(result.fetchState).to.not.include('"cart"').and.not.include('Till 1');
    expect(result.fetchPage).to.match(/^HTTP 403 /).and.not.include('<html');
    expect(result.socket.outcome, JSON.stringify(result.socket)).to.be.oneOf(['error', 'closed']);
    expect(result.socket.frames).to.deep.equal([]);
    // Loading the screen under that name gives no page and no secret either.
    const direct = await context.newPage();
    const res = await direct.goto(`${evilOrigin}/`);
    expect(res?.status()).to.equal(403);
    expect(await direct.locator('body').textContent()).to.include('POS_ERR_SCREEN_FORBIDDEN');
    await direct.close();
    expect((await context.cookies(evilOrigin)).map((c) => c.name)).to.deep.equal([]);
    await the().terminal.app.whenIdle();
    expect(snapshot()).to.equal(before);
  });

  it('the real screen still works after the attacks', async () => {
    await screen.focus('[data-testid="scan-input"]');
    await screen.keyboard.type(PEN.code, { delay: 2 });
    await screen.keyboard.press('Enter');
    await screen.locator('[data-testid="line-name"]', { hasText: PEN.name }).waitFor({ timeout: UI_WAIT_MS });
    await screen.keyboard.press('Shift+Delete');
    await screen.locator('[data-testid="dlg-cancel"][open]').waitFor({ timeout: UI_WAIT_MS });
    await screen.keyboard.press('Enter');
    await waitFor(() => the().terminal.app.state().cart.lines.length === 0, UI_WAIT_MS, 'the sale cancelled');
  });

  it('refuses HTTP requests and socket handshakes without the right Host, Origin, fetch site or secret', async () => {
    const port = screenPort();
    const host = `127.0.0.1:${port}`;
    const page = await rawGet(port, '/', { host });
    expect(page.status).to.equal(200);
    const cookie = String(page.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    expect(cookie).to.match(new RegExp(`^mallpos_screen_${port}=[A-Za-z0-9_-]{43}$`));

    const ok = await rawGet(port, '/state', { host, cookie });
    expect(ok.status).to.equal(200);
    expect((JSON.parse(ok.body) as ScreenState).terminal.name).to.equal('Till 1');

    const refused: [string, string, Record<string, string>][] = [
      ['no secret', '/state', { host }],
      ['a wrong secret', '/state', { host, cookie: `${cookie.slice(0, -4)}AAAA` }],
      ['the secret of another launch', '/state', { host, cookie: createScreenGuard(port).cookie().split(';')[0] ?? '' }],
      ['another host name', '/state', { host: `${EVIL_HOST}:${port}`, cookie }],
      ['another host name loading the page', '/', { host: `${EVIL_HOST}:${port}` }],
      ['another port in Host', '/state', { host: `127.0.0.1:${port + 1}`, cookie }],
      ['another origin', '/state', { host, cookie, origin: `http://127.0.0.1:${attackerPort}` }],
      ['a null origin', '/state', { host, cookie, origin: 'null' }],
      ['a cross-site request', '/state', { host, cookie, 'sec-fetch-site': 'cross-site' }],
      ['a same-site request from another port', '/', { host, 'sec-fetch-site': 'same-site' }],
      ['a page file without the secret', '/screen.js', { host }],
    ];
    for (const [what, path, headers] of refused) {
      const res = await rawGet(port, path, headers);
      expect(res.status, what).to.equal(403);
      expect(res.headers['set-cookie'], what).to.equal(undefined);
      expect((JSON.parse(res.body) as { error: { code: string } }).error.code, what).to.equal('POS_ERR_SCREEN_FORBIDDEN');
    }

    const url = the().terminal.screen.url;
    const origin = new URL(url).origin;
    expect(await socketWith(url, { cookie, origin })).to.equal('connected');
    expect(await socketWith(url, { origin })).to.match(/^refused/);
    expect(await socketWith(url, { cookie })).to.match(/^refused/);
    expect(await socketWith(url, { cookie, origin: `http://127.0.0.1:${attackerPort}` })).to.match(/^refused/);
    const helper = await screenSocket(url);
    helper.disconnect();
  });

  it('a screen left open while the terminal restarts picks up the new secret and works again', async () => {
    const port = screenPort();
    const name = `mallpos_screen_${port}`;
    const oldSecret = (await context.cookies(the().terminal.screen.url)).find((c) => c.name === name)?.value;
    await the().terminal.screen.close();
    await screen.waitForSelector('[data-testid="screen-link"]:not([hidden])', { timeout: UI_WAIT_MS });
    relaunched = await startScreen(the().terminal.app, { port });
    await waitFor(async () => {
      const now = (await context.cookies(the().terminal.screen.url)).find((c) => c.name === name)?.value;
      return now !== undefined && now !== oldSecret;
    }, 10_000, 'the page to load the new secret');
    await screen.waitForSelector('body[data-state-version] [data-testid="screen-link"][hidden]', { state: 'attached', timeout: 10_000 });
    await screen.focus('[data-testid="scan-input"]');
    await screen.keyboard.type(PEN.code, { delay: 2 });
    await screen.keyboard.press('Enter');
    await screen.locator('[data-testid="line-name"]', { hasText: PEN.name }).waitFor({ timeout: UI_WAIT_MS });
  });

  it('draws a new secret at every launch', () => {
    const a = createScreenGuard(8500).cookie();
    const b = createScreenGuard(8500).cookie();
    expect(a).to.not.equal(b);
    expect(a).to.include('HttpOnly').and.include('SameSite=Strict');
  });
});
