import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { pairTerminal } from './credential.ts';
import { dieWith, portNumber } from '../platform/cli.ts';
import { MallposError } from '../core/index.ts';
import { checkDrawerPulse } from '../hardware/printer/index.ts';

const DEFAULT_DATA_DIR = './data/pos-terminal';

// The terminal itself (screen server, scanner, printer) is imported by `start` alone, so that
// `pair` does not read and compile it.

const die = dieWith('pos-terminal', { stack: false });

const program = new Command().name('pos-terminal').description('mallpos POS terminal: scanner, receipt printer and the cashier screen').showHelpAfterError();

program
  .command('pair')
  .description('pair this terminal with a store server using a one-time code from its operator')
  .requiredOption('--server <url>', 'the store server, e.g. https://127.0.0.1:8600 (its certificate is pinned at pairing)')
  .requiredOption('--code <code>', 'the one-time pairing code')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .action(async (o: { server: string; code: string; dataDir: string }) => {
    try {
      const c = await pairTerminal(resolve(o.dataDir), o.server, o.code);
      console.log(`Paired as terminal ${c.terminalId} ("${c.name}") of ${c.storeName}. Start it with: pos-terminal start --data-dir ${o.dataDir}`);
    } catch (err) {
      die(err);
    }
  });

program
  .command('start')
  .description('start the terminal and its cashier screen')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--scanner <path|sim|none>', 'serial scanner device, "sim" for a virtual scanner, or "none"', 'sim')
  .option('--baud <rate>', 'scanner baud rate (default 9600)', (v) => Number(v))
  .option('--printer <url|path|sim>', 'tcp://host:port, a device path, or "sim" for the printer simulator', 'sim')
  .addOption(new Option('--printer-type <type>', 'ESC/POS dialect').choices(['epson', 'star']).default('epson'))
  .addOption(new Option('--columns <n>', 'receipt width in characters').choices(['32', '42', '48']).default('42'))
  .option('--port <port>', 'cashier screen port (default 8500)', portNumber)
  .addOption(new Option('--drawer-pin <pin>', 'cash drawer kick-out connector pin').choices(['2', '5']).default('2'))
  .option('--drawer-on-ms <ms>', 'drawer pulse on time, 2-510 ms', (v) => Number(v), 100)
  .option('--drawer-off-ms <ms>', 'drawer pulse off time, 2-510 ms', (v) => Number(v), 200)
  .addOption(new Option('--drawer-open-level <level>', 'level of pin 3 that means the drawer is open').choices(['high', 'low']).default('high'))
  .option('--drawer-warn-s <s>', 'warn when the drawer stays open longer than this many seconds', (v) => Number(v), 30)
  .option('--no-drawer', 'this till has no cash drawer on its printer')
  .action(async (o: {
    dataDir: string;
    scanner: string;
    baud?: number;
    printer: string;
    printerType: 'epson' | 'star';
    columns: string;
    port?: number;
    drawer: boolean;
    drawerPin: string;
    drawerOnMs: number;
    drawerOffMs: number;
    drawerOpenLevel: 'high' | 'low';
    drawerWarnS: number;
  }) => {
    try {
      if (!Number.isSafeInteger(o.drawerWarnS) || o.drawerWarnS < 1) throw new MallposError('POS_ERR_CONFIG', '--drawer-warn-s must be a whole number of seconds, at least 1');
      const pulse = { pin: o.drawerPin === '5' ? 5 : 2, onMs: o.drawerOnMs, offMs: o.drawerOffMs } as const;
      try {
        checkDrawerPulse(pulse);
      } catch (err) {
        throw new MallposError('POS_ERR_CONFIG', (err as Error).message);
      }
      const { startTerminal } = await import('./run.ts');
      const t = await startTerminal({
        drawer: o.drawer ? { pulse, openLevel: o.drawerOpenLevel, openWarnMs: o.drawerWarnS * 1000 } : false,
        dataDir: resolve(o.dataDir),
        scanner: o.scanner,
        printer: o.printer,
        printerType: o.printerType,
        columns: Number(o.columns) as 32 | 42 | 48,
        ...(o.baud === undefined ? {} : { scannerBaudRate: o.baud }),
        ...(o.port === undefined ? {} : { port: o.port }),
      });
      console.log(`Cashier screen: ${t.screen.url}`);
      if (t.scannerFallback !== null) console.log(`Scanner: ${t.scannerFallback}`);
      if (t.virtualScanner !== null) console.log(`Virtual scanner: scan from another shell with "npm run scan -- 4006381333931" (device ${t.virtualScanner.devicePath})`);
      if (t.receiptsFile !== null) console.log(`Printed receipts are written to ${t.receiptsFile}`);
      const stop = () => {
        t.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    } catch (err) {
      die(err);
    }
  });

// Not awaited at the top level: the build makes this program a CommonJS script (bin/build.js).
void program.parseAsync(process.argv);
