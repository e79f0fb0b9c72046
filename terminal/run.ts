import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PrintQueue, PrinterSimulator, ThermalReceiptPrinter, type Columns, type DrawerPulse } from '../hardware/printer/index.ts';
import { SerialScanner, socatAvailable, VirtualScanner, VIRTUAL_SCANNER_DIR_DEFAULT, type Scanner } from '../hardware/scanner/index.ts';
import { TerminalApp } from './app.ts';
import { SCANNER_LINE_BYTES_MAX } from './instruments.ts';
import { DrawerWatch } from './drawer-watch.ts';
import { loadCredential } from './credential.ts';
import { DataDirLock } from '../platform/lock.ts';
import { startScreen, type RunningScreen } from './screen-server.ts';

export interface StartTerminalOptions {
  dataDir: string;
  /** A serial device path, 'sim' for a virtual scanner on a pty pair, or 'none'. */
  scanner: string;
  scannerBaudRate?: number;
  /** `tcp://host:port`, a device path, or 'sim' for the printer simulator. */
  printer: string;
  printerType?: 'epson' | 'star';
  columns?: Columns;
  port?: number;
  host?: string;
  /** Where the simulated scanner's links go (tests use their own directory). */
  scannerSimDir?: string;
  /** Port of the simulated printer; 9100 by default. */
  printerSimPort?: number;
  ackTimeoutMs?: number;
  /**
   * The cash drawer on the printer's kick-out connector: its pin and pulse, which level
   * of pin 3 means open, and after how long open the screen warns. `false`: no drawer.
   */
  drawer?: false | { pulse?: DrawerPulse; openLevel?: 'high' | 'low'; openWarnMs?: number; pollOpenMs?: number; pollIdleMs?: number };
  /** The simulated drawer closes this long after a kick; 0 keeps it open until closed by hand. 4000 ms by default. */
  printerSimDrawerCloseAfterMs?: number;
}

export interface RunningTerminal {
  app: TerminalApp;
  screen: RunningScreen;
  virtualScanner: VirtualScanner | null;
  /** Why `scanner: 'sim'` runs without a virtual scanner (no socat), as one line for the operator; null otherwise. */
  scannerFallback: string | null;
  printerSim: PrinterSimulator | null;
  receiptsFile: string | null;
  close(): Promise<void>;
}

/** Starts a pos-terminal: devices (real or simulated), the app and the cashier screen. */
export async function startTerminal(opts: StartTerminalOptions): Promise<RunningTerminal> {
  const credential = await loadCredential(opts.dataDir);
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  // One terminal process per data directory: two would share one pending sale and print queue.
  const lock = await DataDirLock.acquire(opts.dataDir, 'pos-terminal', 'POS_ERR_DATA_DIR_IN_USE');
  const cleanups: (() => Promise<void>)[] = [() => lock.release()];
  try {
    let virtualScanner: VirtualScanner | null = null;
    let scanner: Scanner | null = null;
    let scannerFallback: string | null = null;
    if (opts.scanner === 'sim' && !(await socatAvailable())) {
      // A machine with only Node still gets a working till: codes typed (or sent by a USB scanner in keyboard mode) into the screen.
      scannerFallback = 'socat is not installed, so there is no virtual serial scanner: type a code and Enter in the cashier screen (keyboard-wedge mode)';
    } else if (opts.scanner === 'sim') {
      virtualScanner = await VirtualScanner.create({ dir: opts.scannerSimDir ?? VIRTUAL_SCANNER_DIR_DEFAULT });
      const vs = virtualScanner;
      cleanups.push(() => vs.close());
      scanner = new SerialScanner({ path: virtualScanner.devicePath, lineBytesMax: SCANNER_LINE_BYTES_MAX });
    } else if (opts.scanner !== 'none') {
      // Lines as long as a gift certificate's QR code: its signed form arrives in many chunks.
      scanner = new SerialScanner({ path: opts.scanner, lineBytesMax: SCANNER_LINE_BYTES_MAX, ...(opts.scannerBaudRate === undefined ? {} : { baudRate: opts.scannerBaudRate }) });
    }

    let printerSim: PrinterSimulator | null = null;
    let printerUrl = opts.printer;
    let receiptsFile: string | null = null;
    if (opts.printer === 'sim') {
      receiptsFile = join(opts.dataDir, 'printed-receipts.txt');
      printerSim = new PrinterSimulator({
        port: opts.printerSimPort ?? 9100,
        host: '127.0.0.1',
        outFile: receiptsFile,
        columns: opts.columns ?? 42,
        drawerCloseAfterMs: opts.printerSimDrawerCloseAfterMs ?? 4000,
      });
      const started = await printerSim.start();
      const sim = printerSim;
      cleanups.push(() => sim.stop());
      printerUrl = `tcp://127.0.0.1:${started.port}`;
    }
    const drawerOpts = opts.drawer === false ? null : (opts.drawer ?? {});
    const printer = new ThermalReceiptPrinter({
      type: opts.printerType ?? 'epson',
      interface: printerUrl,
      columns: opts.columns ?? 42,
      ...(drawerOpts?.pulse === undefined ? {} : { drawer: drawerOpts.pulse }),
      ...(drawerOpts?.openLevel === undefined ? {} : { drawerOpenLevel: drawerOpts.openLevel }),
    });
    cleanups.push(() => printer.close());
    let drawer: DrawerWatch | null = null;
    if (drawerOpts !== null) {
      const watch = new DrawerWatch({
        drawer: printer,
        ...(drawerOpts.openWarnMs === undefined ? {} : { openWarnMs: drawerOpts.openWarnMs }),
        ...(drawerOpts.pollOpenMs === undefined ? {} : { pollOpenMs: drawerOpts.pollOpenMs }),
        ...(drawerOpts.pollIdleMs === undefined ? {} : { pollIdleMs: drawerOpts.pollIdleMs }),
      });
      drawer = watch;
      cleanups.push(() => Promise.resolve(watch.close()));
    }
    const printQueue = await PrintQueue.open({ printer, file: join(opts.dataDir, 'print-queue.json') });
    cleanups.push(() => printQueue.close());

    const app = await TerminalApp.open({ dataDir: opts.dataDir, credential, scanner, printQueue, drawer, ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }) });
    cleanups.push(() => app.close());
    if (scanner !== null) {
      await scanner.start();
      const s = scanner;
      cleanups.push(() => s.stop());
    }
    const screen = await startScreen(app, { ...(opts.port === undefined ? {} : { port: opts.port }), ...(opts.host === undefined ? {} : { host: opts.host }) });
    cleanups.push(() => screen.close());

    let closing: Promise<void> | null = null;
    const close = () => {
      closing ??= (async () => {
        for (const c of cleanups.reverse()) await c().catch(() => undefined);
      })();
      return closing;
    };
    return { app, screen, virtualScanner, scannerFallback, printerSim, receiptsFile, close };
  } catch (err) {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    throw err;
  }
}
