import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { dataPaths, loadConfig, loadKeys, loadStoreTls, writeConfig } from './config.ts';
import { spkiSha256, tlsRequest } from '../platform/tls.ts';
import { backupStore, restoreStore, verifyBackup, verifyStore } from './backup.ts';
import { dieWith, portNumber } from '../platform/cli.ts';
import { isPinHashCost, PIN_HASH_COST_DEFAULT, PIN_HASH_COST_RANGE } from '../platform/pin-hash.ts';
import { checkMallIdentity } from './sync/mall-sync-client.ts';
import { readFile } from 'node:fs/promises';
import { fail } from '../core/index.ts';
import { addCashierDayCommands } from './cashier-day/cli.ts';
import { addAuctionCommands } from './auctions/cli.ts';
import { ensureWebhookSecret, rotateWebhookSecret, WEBHOOK_SECRET_GRACE_MS } from './economy/webhook-secret.ts';

const DEFAULT_DATA_DIR = './data/vendor-server';

// The server and the store's creation are imported by the commands that run them, so that
// the other commands do not read and compile the HTTP and socket.io stack at every run.

const die = dieWith('vendor-server');

function pinHashCost(value: string): number {
  const n = Number(value);
  if (!isPinHashCost(n)) throw new InvalidArgumentError(`a PIN hash cost is ${PIN_HASH_COST_RANGE}`);
  return n;
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
  .option('--tls-name <name...>', 'host names or IP addresses terminals use to reach this store (localhost and 127.0.0.1 always)')
  .option('--pin-hash-cost <n>', `scrypt's N for PIN hashes: ${PIN_HASH_COST_RANGE} (default ${PIN_HASH_COST_DEFAULT})`, pinHashCost)
  .action(async (o: { dataDir: string; vendorId?: string; storeName?: string; port?: number; host?: string; demo?: boolean; tlsName?: string[]; pinHashCost?: number }) => {
    try {
      const { initVendor } = await import('./init.ts');
      const r = await initVendor({
        dataDir: resolve(o.dataDir), vendorId: o.vendorId, storeName: o.storeName, port: o.port, host: o.host, demo: o.demo,
        ...(o.tlsName === undefined ? {} : { tlsNames: o.tlsName }),
        ...(o.pinHashCost === undefined ? {} : { pinHashCost: o.pinHashCost }),
      });
      console.log(`Created vendor server "${r.config.storeName}" (vendor id ${r.config.vendorId}) in ${resolve(o.dataDir)}`);
      console.log(`Vendor key id (kid): ${r.kid}`);
      console.log(`Store certificate authority: ${dataPaths(resolve(o.dataDir)).tlsDir}/ca-cert.pem (SHA-256 of its key ${spkiSha256(r.caPem)}); terminals pin it when they pair`);
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
  .option('--mall-url <url>', 'sync with the mall at this URL (overrides the config)')
  .action(async (o: { dataDir: string; port?: number; host?: string | boolean; mallUrl?: string }) => {
    try {
      const host = o.host === true ? '0.0.0.0' : typeof o.host === 'string' ? o.host : undefined;
      const { startVendorServer } = await import('./server.ts');
      const server = await startVendorServer({ dataDir: resolve(o.dataDir), port: o.port, host, ...(o.mallUrl === undefined ? {} : { mallUrl: o.mallUrl }) });
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
  .description('check a store without changing a byte (safe while it runs): the checkpoint\'s seal, the whole journal hash chain, and the checkpoint against a replay')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--backup <dir>', 'check a backup made by "vendor-server backup" instead: every file against its manifest, then the ledger in it')
  .action(async (o: { dataDir: string; backup?: string }) => {
    try {
      const report = o.backup === undefined ? await verifyStore(resolve(o.dataDir)) : await verifyBackup(resolve(o.backup));
      console.log(JSON.stringify(report));
      if (report.tornTail !== null) {
        const t = report.tornTail;
        console.error(
          `vendor-server: ${t.segment} ends in an incomplete line of ${t.bytesDropped} bytes at byte ${t.offset}: ` +
            'a write in progress on a running store, or an unacknowledged torn write on a stopped one; it was left as it is',
        );
      }
    } catch (err) {
      die(err);
    }
  });

/** Progress on a terminal, one rewritten line; nothing when stderr is piped or redirected. */
function progressLine(label: string): ((done: number, total: number) => void) | undefined {
  if (process.stderr.isTTY !== true) return undefined;
  let shown = -1;
  return (done, total) => {
    const pct = total === 0 ? 100 : Math.floor((done * 100) / total);
    if (pct === shown) return;
    shown = pct;
    process.stderr.write(`\r${label}: ${pct}% of ${(total / 1048576).toFixed(1)} MiB${pct === 100 ? '\n' : ''}`);
  };
}

program
  .command('backup')
  .description('take a consistent backup while the store runs: checkpoint, journal up to one seq, keys, access and config, with a manifest of hashes')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .requiredOption('--to <dir>', 'a new or empty directory for the backup')
  .action(async (o: { dataDir: string; to: string }) => {
    try {
      const m = await backupStore(resolve(o.dataDir), resolve(o.to), progressLine('backup'));
      console.log(JSON.stringify({ ok: true, backup: resolve(o.to), seq: m.seq, lastHash: m.lastHash, checkpointSeq: m.checkpointSeq, files: m.files.length }));
    } catch (err) {
      die(err);
    }
  });

program
  .command('restore')
  .description('restore a backup into a new or empty data directory (the backup is verified first)')
  .requiredOption('--from <dir>', 'a backup made by "vendor-server backup"')
  .option('--data-dir <dir>', 'data directory to create', DEFAULT_DATA_DIR)
  .action(async (o: { from: string; dataDir: string }) => {
    try {
      const m = await restoreStore(resolve(o.from), resolve(o.dataDir), progressLine('restore'));
      console.log(JSON.stringify({ ok: true, dataDir: resolve(o.dataDir), seq: m.seq, lastHash: m.lastHash }));
    } catch (err) {
      die(err);
    }
  });

program
  .command('key')
  .description('print this vendor\'s public key (JWK) to register it at the mall')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .action(async (o: { dataDir: string }) => {
    try {
      const config = await loadConfig(resolve(o.dataDir));
      const keys = await loadKeys(resolve(o.dataDir));
      console.log(JSON.stringify({ vendorId: config.vendorId, kid: keys.kid, jwk: keys.publicJwk }, null, 2));
    } catch (err) {
      die(err);
    }
  });

program
  .command('link-mall')
  .description('sync this store with a mall (takes effect at the next start); the mall\'s key and certificate authority are pinned, never trusted on first use')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .requiredOption('--url <url>', 'the mall, e.g. https://127.0.0.1:8700')
  .requiredOption('--mall-ca <file>', 'the mall\'s certificate authority (PEM), from the mall\'s operator (its tls/ca-cert.pem)')
  .option('--mall-key <file>', 'the mall\'s public key (a JWK file, or the mall\'s /v1/mall-key answer saved from a trusted source)')
  .option('--mall-key-thumbprint <kid>', 'or only the RFC 7638 thumbprint of the mall\'s key (the kid "mall-sync init" prints)')
  .option('--snapshot-max-age-hours <h>', 'refuse mall-dependent tokens when the cached snapshot is older', (v) => Number(v), 72)
  .action(async (o: { dataDir: string; url: string; mallCa: string; mallKey?: string; mallKeyThumbprint?: string; snapshotMaxAgeHours: number }) => {
    try {
      const config = await loadConfig(resolve(o.dataDir));
      if ((o.mallKey === undefined) === (o.mallKeyThumbprint === undefined)) fail('VND_ERR_CONFIG', 'give the mall\'s key with exactly one of --mall-key FILE or --mall-key-thumbprint KID');
      const caPem = await readFile(resolve(o.mallCa), 'utf8').catch((err: Error) => fail('VND_ERR_CONFIG', `cannot read ${o.mallCa}: ${err.message}`));
      let jwk: Record<string, unknown> | undefined;
      if (o.mallKey !== undefined) {
        const text = await readFile(resolve(o.mallKey), 'utf8').catch((err: Error) => fail('VND_ERR_CONFIG', `cannot read ${o.mallKey}: ${err.message}`));
        try {
          const parsed = JSON.parse(text) as Record<string, unknown>;
          // The mall's /v1/mall-key answer is { kid, jwk }; a bare JWK is accepted too.
          jwk = typeof parsed['jwk'] === 'object' && parsed['jwk'] !== null ? (parsed['jwk'] as Record<string, unknown>) : parsed;
        } catch {
          fail('VND_ERR_CONFIG', `${o.mallKey} is not JSON`);
        }
      }
      const url = o.url.replace(/\/+$/, '');
      const mall = await checkMallIdentity({ url, caPem, jwk, thumbprint: o.mallKeyThumbprint });
      await writeConfig(resolve(o.dataDir), { ...config, mall: { url, jwk: mall.jwk, caPem, snapshotMaxAgeHours: o.snapshotMaxAgeHours, batchEventsMax: 500, batchAgeMs: 1000 } });
      console.log(`This store will sync with the mall at ${url} from its next start (mall key ${mall.kid}, certificate authority ${spkiSha256(caPem)}).`);
    } catch (err) {
      die(err);
    }
  });

const sync = program.command('sync').description('the store\'s sync with the mall');
sync
  .command('status')
  .description('events waiting for the mall, age of the oldest, last ack, last error (asks the running server)')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--url <url>', 'the running vendor server (default: from the config)')
  .action(async (o: { dataDir: string; url?: string }) => {
    try {
      const config = await loadConfig(resolve(o.dataDir));
      const url = o.url ?? `https://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`;
      // The running server is this store's: trust only its authority.
      const { caPem } = await loadStoreTls(resolve(o.dataDir), config);
      const res = url.startsWith('https://') ? await tlsRequest(`${url}/health`, { ca: caPem, timeoutMs: 5000 }).catch(() => null) : null;
      if (res === null || !res.ok) {
        console.error(`vendor-server: no vendor server answers at ${url}: is it running?`);
        process.exit(1);
      }
      const health = res.json<{ sync: Record<string, unknown> }>();
      console.log(JSON.stringify(health.sync, null, 2));
    } catch (err) {
      die(err);
    }
  });

program
  .command('webhook-secret')
  .description('show the secret the payment provider signs online purchases with (POST /webhooks/payments); --rotate makes a new one')
  .option('--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR)
  .option('--rotate', `make a new secret; the previous one is still accepted for ${WEBHOOK_SECRET_GRACE_MS / 3_600_000} hours`)
  .action(async (o: { dataDir: string; rotate?: boolean }) => {
    try {
      const dir = resolve(o.dataDir);
      await loadConfig(dir);
      const file = o.rotate === true ? await rotateWebhookSecret(dir) : await ensureWebhookSecret(dir);
      console.log(JSON.stringify({ secret: file.current.secret, createdAt: file.current.createdAt, previousAcceptedUntil: file.previous === null ? null : new Date(Date.parse(file.previous.retiredAt) + WEBHOOK_SECRET_GRACE_MS).toISOString() }));
    } catch (err) {
      die(err);
    }
  });

addCashierDayCommands(program, DEFAULT_DATA_DIR, die);
addAuctionCommands(program, DEFAULT_DATA_DIR, die);

// Not awaited at the top level: the build makes this program a CommonJS script (bin/build.js).
void program.parseAsync(process.argv);
