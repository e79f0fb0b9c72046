import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { MallposError } from '../core/index.ts';
import { dataPaths, loadConfig } from './config.ts';
import { initVendor } from './init.ts';
import { openLedger } from './ledger/store.ts';
import { startVendorServer } from './server.ts';

const DEFAULT_DATA_DIR = './data/vendor-server';

function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535');
  return n;
}

/** Prints a typed error as one plain line and exits non-zero. */
function die(err: unknown): never {
  if (err instanceof MallposError) console.error(`vendor-server: ${err.message} [${err.code}]`);
  else if ((err as { code?: string }).code?.startsWith('VND_ERR_') === true) console.error(`vendor-server: ${(err as Error).message} [${(err as { code: string }).code}]`);
  else console.error(`vendor-server: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}

const program = new Command()
  .name('vendor-server')
  .description('mallpos vendor server: the store\'s durable token ledger and the terminals\' server')
  .showHelpAfterError();

program
  .command('init')
  .description('create keys, an operator credential and a config in a new data directory')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--vendor-id <id>', 'this vendor\'s id at the mall (lower-case letters, digits, -)')
  .option('--store-name <name>', 'the store\'s name, printed on receipts')
  .option('--port <port>', 'port to listen on (default 8600)', portNumber)
  .option('--host <host>', 'address to listen on (default 127.0.0.1)')
  .option('--demo', 'seed a demo store: products, customers with balances, float, staff')
  .action(async (o: { dataDir: string; vendorId?: string; storeName?: string; port?: number; host?: string; demo?: boolean }) => {
    try {
      const r = await initVendor({ dataDir: resolve(o.dataDir), vendorId: o.vendorId, storeName: o.storeName, port: o.port, host: o.host, demo: o.demo });
      console.log(`Created vendor server "${r.config.storeName}" (vendor id ${r.config.vendorId}) in ${resolve(o.dataDir)}`);
      console.log(`Vendor key id (kid): ${r.kid}`);
      console.log('');
      console.log('Operator credential (shown only this once; keep it safe):');
      console.log(`  ${r.operatorToken}`);
      if (r.demo !== null) {
        console.log('');
        console.log(`Demo store: ${r.demo.products.length} products, ${r.demo.customers.length} customers, token types ${r.demo.tokenTypes.join(', ')}`);
        console.log(`  staff: ${r.demo.staff.map((s) => `${s.id} (${s.role}, PIN ${s.pin})`).join(', ')}`);
        console.log(`  customer cards: ${r.demo.customers.slice(0, 3).map((c) => `${c.card} ${c.name}`).join('; ')} ...`);
      }
      console.log('');
      console.log(`Start it with: vendor-server start --data-dir ${o.dataDir}`);
    } catch (err) {
      die(err);
    }
  });

program
  .command('start')
  .description('start the vendor server (HTTP operator API and the terminals\' socket.io endpoint)')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--port <port>', 'port to listen on (default: the config\'s, 8600)', portNumber)
  .option('--host [host]', 'address to listen on (default 127.0.0.1; --host alone means all interfaces)')
  .action(async (o: { dataDir: string; port?: number; host?: string | boolean }) => {
    try {
      const host = o.host === true ? '0.0.0.0' : typeof o.host === 'string' ? o.host : undefined;
      const server = await startVendorServer({ dataDir: resolve(o.dataDir), port: o.port, host });
      const stop = (signal: string) => {
        server.logger.info({ signal }, 'stopping');
        server.close().then(() => process.exit(0), (err: unknown) => die(err));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    } catch (err) {
      die(err);
    }
  });

program
  .command('verify')
  .description('verify the whole journal hash chain and the checkpoint, without starting')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .action(async (o: { dataDir: string }) => {
    try {
      const config = await loadConfig(resolve(o.dataDir));
      const opened = await openLedger({ dataDir: dataPaths(resolve(o.dataDir)).ledgerDir, vendorId: config.vendorId });
      const all = await opened.journal.verifyAll();
      await opened.journal.close();
      console.log(JSON.stringify({ ok: true, events: all.count, lastSeq: all.lastSeq, lastHash: all.lastHash, checkpointSeq: opened.checkpointSeq }));
    } catch (err) {
      die(err);
    }
  });

await program.parseAsync(process.argv);
