import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Socket as ClientSocket } from 'socket.io-client';
import { PrinterSimulator, type DecodedReceipt } from '../../hardware/printer/index.ts';
import type { ScreenState } from '../../terminal/app.ts';
import { screenSocket } from '../helpers/browser.ts';
import { killHard, spawnExecutable, START_DEADLINE_MS, until } from '../helpers/process.ts';
import { PEN, startOfflineStoreDouble, type OfflineStoreDouble } from '../helpers/offline-store-double.ts';

const text = (r: DecodedReceipt) => r.lines.map((l) => l.text).join('\n');

/** Starts `pos-terminal start` with extra environment and waits for its screen URL. */
function startTerminalChild(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = spawnExecutable('bin/pos-terminal.js', ['start', ...args], { LOG_LEVEL: 'info', ...env });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pos-terminal did not start:\n${out}`));
    }, START_DEADLINE_MS);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`pos-terminal exited with ${code}:\n${out}`));
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Cashier screen: (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve({ child, url: m[1] });
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', onExit);
  });
}

/**
 * A terminal process killed (SIGKILL) after an offline sale is on its disk and before the
 * receipt reaches the printer: on restart the sale is there once, its receipt prints once,
 * and it is forwarded once when the store server is back. The store server is a stand-in
 * for its remote side; the terminal is the real executable.
 */
describe('e2e: a till killed between recording an offline sale and printing it', function () {
  this.timeout(180_000);
  let store: OfflineStoreDouble;
  let printer: PrinterSimulator;
  let dataDir: string;
  const children: ChildProcess[] = [];
  const pages: ClientSocket[] = [];

  before(async () => {
    store = await startOfflineStoreDouble();
    printer = new PrinterSimulator({ port: 0 });
    await printer.start();
    dataDir = await mkdtemp(join(tmpdir(), 'mallpos-offline-crash-'));
    await store.pair(dataDir);
  });
  after(async () => {
    for (const p of pages) p.disconnect();
    for (const c of children) await killHard(c);
    await store?.close();
    await printer?.stop();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  const args = () => ['--data-dir', dataDir, '--scanner', 'none', '--printer', `tcp://127.0.0.1:${printer.port}`, '--port', '0', '--no-drawer'];
  const open = async (env: NodeJS.ProcessEnv = {}) => {
    const t = await startTerminalChild(args(), env);
    children.push(t.child);
    const page = await screenSocket(t.url);
    pages.push(page);
    let latest: ScreenState | null = null;
    page.on('state', (s: ScreenState) => (latest = s));
    const command = (cmd: unknown) => page.timeout(START_DEADLINE_MS).emitWithAck('command', cmd) as Promise<{ ok: boolean }>;
    return { child: t.child, page, command, state: () => latest as ScreenState | null };
  };
  const savedSales = async () => (JSON.parse(await readFile(join(dataDir, 'offline-sales.json'), 'utf8')) as { nextCounter: number; sales: { record: { offlineId: string; key: string }; printed: boolean }[] });

  it('finds the sale recorded but not printed, prints it once, and forwards it once', async () => {
    let t = await open({ MALLPOS_TERMINAL_STOP_BEFORE_OFFLINE_PRINT: '1' });
    await until('online with a catalog copy', () => (t.state()?.status.server.state === 'connected' && t.state()?.offline.catalog !== null ? true : undefined));
    await store.goDown();
    await until('selling offline', () => (t.state()?.offline.selling === true ? true : undefined));
    await t.command({ type: 'scan', code: PEN });
    await t.command({ type: 'setCash', cashTenderedMinor: 500 });
    const died = new Promise<NodeJS.Signals | null>((resolve) => t.child.once('exit', (_code, signal) => resolve(signal)));
    void t.command({ type: 'complete' }).catch(() => undefined);
    expect(await died).to.equal('SIGKILL');
    t.page.disconnect();

    const recorded = await savedSales();
    expect(recorded.sales.map((s) => [s.record.offlineId, s.printed])).to.deep.equal([['t-offline-1', false]]);
    expect(recorded.nextCounter).to.equal(2);
    expect(printer.receipts()).to.have.length(0);

    // Restarted (the store still down): the receipt prints, once, marked as recorded offline.
    t = await open();
    const [receipt] = await printer.waitForReceipts(1, START_DEADLINE_MS);
    expect(text(receipt!)).to.include('RECORDED OFFLINE').and.include('t-offline-1');
    await until('marked printed', async () => ((await savedSales()).sales[0]?.printed === true ? true : undefined));
    await until('one sale waiting on the screen', () => (t.state()?.offline.waiting === 1 ? true : undefined));
    expect((await savedSales()).sales.map((s) => s.record.key)).to.deep.equal(recorded.sales.map((s) => s.record.key));

    // Killed again and restarted: nothing prints twice.
    await killHard(t.child);
    t.page.disconnect();
    t = await open();
    await until('the restarted till shows the sale waiting', () => (t.state()?.offline.waiting === 1 ? true : undefined));

    // The store is back: the sale is forwarded once, under the key it was recorded with.
    await store.comeBack();
    await until('forwarded', () => (t.state()?.offline.waiting === 0 && store.reports().some((r) => r.waiting === 0) ? true : undefined));
    expect(store.journal().map((r) => [r.offlineId, r.key])).to.deep.equal([['t-offline-1', recorded.sales[0]?.record.key]]);
    expect(printer.receipts()).to.have.length(1);
    expect((await savedSales()).sales).to.have.length(0);
  });
});
