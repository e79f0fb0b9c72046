/**
 * A process of the terminal bench: `vendor <dataDir>` runs the store's vendor server,
 * `terminal <dataDir> <scannerDevice> <printerUrl>` runs a paired pos-terminal with its
 * cashier screen. Each prints one JSON line `{"ready":true,"url":...}` once listening.
 *
 * They run as separate processes, as in a store, so that neither the browser driver nor
 * the vendor server shares the terminal's event loop. A child must not outlive the bench:
 * it exits when its stdin (a pipe from the bench) closes, which also happens when the
 * bench is killed outright.
 */
import { startTerminal } from '../../terminal/run.ts';
import { createLogger } from '../../platform/logger.ts';
import { startVendorServer } from '../../vendor-server/server.ts';

const CLOSE_WAIT_MS = 2_000;

const [mode, dataDir, scannerDevice, printerUrl] = process.argv.slice(2);
if (dataDir === undefined || (mode !== 'vendor' && mode !== 'terminal')) {
  console.error('usage: child.ts vendor <dataDir> | terminal <dataDir> <scannerDevice> <printerUrl>');
  process.exit(2);
}

let close: () => Promise<void> = async () => undefined;
const exit = () => {
  const timer = setTimeout(() => process.exit(0), CLOSE_WAIT_MS);
  close().finally(() => {
    clearTimeout(timer);
    process.exit(0);
  });
};
process.stdin.on('end', exit);
process.stdin.on('error', exit);
process.stdin.resume();
process.once('SIGTERM', exit);

try {
  if (mode === 'vendor') {
    const server = await startVendorServer({ dataDir, port: 0, host: '127.0.0.1', logger: createLogger({ level: 'silent' }), defaultMetrics: false });
    close = () => server.close();
    console.log(JSON.stringify({ ready: true, url: server.url }));
  } else {
    if (scannerDevice === undefined || printerUrl === undefined) throw new Error('terminal needs <scannerDevice> <printerUrl>');
    const terminal = await startTerminal({ dataDir, scanner: scannerDevice, printer: printerUrl, port: 0 });
    close = () => terminal.close();
    console.log(JSON.stringify({ ready: true, url: terminal.screen.url }));
  }
} catch (err) {
  console.error(`${mode}: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}
