import { readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MallposError } from '../core/index.ts';
import { createStoreTls, DEFAULT_PORT, isInitialised, loadConfig, loadKeys, writeConfig } from '../vendor-server/config.ts';
import { checkMallIdentity } from '../vendor-server/sync/mall-sync-client.ts';
import { demoOwnTokenType, demoTokenTypes, initVendor, type DemoProfileName } from '../vendor-server/init.ts';
import { MallAdminClient } from '../mall-sync/admin-client.ts';
import { createMallTls, isInitialised as isMallInitialised, loadMallConfig } from '../mall-sync/config.ts';
import { initMall } from '../mall-sync/init.ts';
import { startMallServer } from '../mall-sync/server.ts';
import { createLogger } from '../platform/logger.ts';
import { startVendorServer } from '../vendor-server/server.ts';
import { loadCredential, pairTerminal } from '../terminal/credential.ts';
import { startTerminal } from '../terminal/run.ts';

/**
 * `npm start`: a demo mall with one store on this machine: the mall, the store's vendor
 * server (registered at the mall and syncing with it) and one terminal on a simulated
 * scanner and printer. The first run creates everything under ./data/demo; later runs
 * continue with the same ledgers.
 */
const root = resolve(process.env['MALLPOS_DEMO_DIR'] ?? 'data/demo');
const vendorDir = join(root, 'vendor-server');
const tokenFile = join(root, 'operator-token.txt');
const terminalDir = join(root, 'pos-terminal');
const mallDir = join(root, 'mall');
/** The wallet PIN the walkthrough suggests a customer choose with the first deposit (any 4-12 digits do). */
const DEMO_WALLET_PIN = '2468';
const mallTokenFile = join(root, 'mall-admin-token.txt');
const exists = (path: string) => stat(path).then(() => true, () => false);
const logger = createLogger({ level: process.env['LOG_LEVEL'] ?? 'warn' });
/** Ports can be moved (0: any free port), so the demo runs next to another copy or a test. */
const envPort = (name: string): number | undefined => (process.env[name] === undefined ? undefined : Number(process.env[name]));

interface StoreSpec {
  profile: DemoProfileName;
  dir: string;
  tokenFile: string;
  terminalDir: string;
  port: number | undefined;
  /** Where the till's virtual scanner makes its device (the default for the first store). */
  scannerSimDir?: string;
  /** The port written into a new store's config (the second store must not take the first's). */
  defaultPort?: number;
  screenPort: number;
  printerPort: number;
}

/** Brings the demo up; a start-up problem ends it with one plain line. */
async function main(): Promise<void> {
  try {
    // The mall first: the store's mall tokens and coupons are allotted by it.
    if (!(await isMallInitialised(mallDir))) {
      const init = await initMall({ dataDir: mallDir, name: 'Riverside Mall' });
      // Only the demo keeps credentials in files, so that a newcomer can use them.
      await writeFile(mallTokenFile, `${init.adminToken}\n`, { mode: 0o600 });
    }
    const mallToken = (await readFile(mallTokenFile, 'utf8')).trim();
    // Demo data made before TLS gets what a fresh init would create.
    if (!(await exists(join(mallDir, 'tls', 'ca-key.pem')))) await createMallTls(mallDir, await loadMallConfig(mallDir));
    const mall = await startMallServer({ dataDir: mallDir, port: envPort('MALLPOS_MALL_PORT') ?? 8700, logger });
    const admin = new MallAdminClient(mall.url, mallToken, mall.caPem);

    const fees = { royaltyBps: 150, royaltyBpsByVendor: {}, royaltyBpsByToken: { SUNNY: 0 }, reimbursementTollMinor: 2, customerDataTollMinor: 10, exchangeServiceBps: 100 };

    /**
     * One store of the mall: created, registered at the mall with its own token type and a
     * float of mall tokens on the first run; then started, linked to the mall, with one
     * paired terminal on simulated hardware.
     */
    const bringUpStore = async (store: StoreSpec) => {
      if (!(await isInitialised(store.dir))) {
        const init = await initVendor({ dataDir: store.dir, demo: true, mallFloat: true, demoProfile: store.profile, ...(store.defaultPort === undefined ? {} : { port: store.defaultPort }) });
        // The demo stores run the cashier's day: a sale needs an open shift with a counted float.
        await writeConfig(store.dir, { ...init.config, shifts: { required: true } });
        await writeFile(store.tokenFile, `${init.operatorToken}\n`, { mode: 0o600 });
        const keys = await loadKeys(store.dir);
        await admin.registerVendor({ id: init.config.vendorId, name: init.config.storeName, jwk: keys.publicJwk as Record<string, unknown> });
        if (store.profile === 'acme') {
          await admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
          for (const tt of demoTokenTypes(init.config.vendorId)) await admin.upsertTokenType(tt);
          await admin.setFees(fees);
          await admin.allot({ vendor: init.config.vendorId, token: 'SUNNY', units: 20_000, reference: 'Sunny Foods spring campaign' }, 'demo-allot-sunny');
        } else {
          await admin.upsertTokenType(demoOwnTokenType(store.profile, init.config.vendorId));
        }
        await admin.allot({ vendor: init.config.vendorId, token: 'MALL', units: 200_000, reference: 'opening float' }, `demo-allot-mall-${init.config.vendorId}`);
        console.log(`Created the store "${init.config.storeName}" in ${store.dir}`);
      }
      const operatorToken = (await readFile(store.tokenFile, 'utf8')).trim();
      const vendorConfig = await loadConfig(store.dir);
      if (!(await exists(join(store.dir, 'tls', 'ca-key.pem')))) await createStoreTls(store.dir, vendorConfig);
      // The store links to the mall as an operator would with "vendor-server link-mall": the
      // mall's authority and key thumbprint come from the mall's own files, not from the network.
      const linked = await checkMallIdentity({ url: mall.url, caPem: mall.caPem, thumbprint: mall.keys.kid });
      await writeConfig(store.dir, { ...vendorConfig, mall: { snapshotMaxAgeHours: 72, batchEventsMax: 500, batchAgeMs: 1000, ...vendorConfig.mall, url: mall.url, jwk: linked.jwk, caPem: mall.caPem } });
      const server = await startVendorServer({ dataDir: store.dir, port: store.port, logger });
      if (store.profile === 'acme') {
        // The demo customers get mall tokens and coupons once the mall's allotments are in the float.
        for (let i = 0; i < 100 && (server.ledger.float()['MALL'] === undefined || server.ledger.float()['SUNNY'] === undefined); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const op = { terminal: null, cashier: null };
        for (const [i, c] of Object.values(server.ledger.state.customers).slice(0, 10).entries()) {
          await server.ledger.issueTokens(op, `op:demo-mall-${c.id}`, { customerId: c.id, token: 'MALL', units: 100 + 40 * i, reason: 'purchase' }).catch(() => undefined);
          if (i % 3 === 0) await server.ledger.issueTokens(op, `op:demo-sunny-${c.id}`, { customerId: c.id, token: 'SUNNY', units: 60, reason: 'reward' }).catch(() => undefined);
        }
      }
      // The demo terminal pairs itself once, like a cashier would with a code from the operator.
      const paired = await loadCredential(store.terminalDir).then(() => true, () => false);
      if (!paired) {
        const { code } = await server.access.createTerminal('Till 1', 10 * 60_000);
        await pairTerminal(store.terminalDir, server.url, code);
      }
      const terminal = await startTerminal({ dataDir: store.terminalDir, scanner: 'sim', printer: 'sim', port: store.screenPort, printerSimPort: store.printerPort, ...(store.scannerSimDir === undefined ? {} : { scannerSimDir: store.scannerSimDir }) });
      return { server, terminal, operatorToken, dir: store.dir };
    };

    const a = await bringUpStore({ profile: 'acme', dir: vendorDir, tokenFile, terminalDir, port: envPort('MALLPOS_VENDOR_PORT'), screenPort: envPort('MALLPOS_SCREEN_PORT') ?? 8500, printerPort: envPort('MALLPOS_PRINTER_PORT') ?? 9100 });
    const b = await bringUpStore({
      profile: 'bella',
      dir: join(root, 'vendor-server-bella'),
      tokenFile: join(root, 'operator-token-bella.txt'),
      terminalDir: join(root, 'pos-terminal-bella'),
      port: envPort('MALLPOS_VENDOR_B_PORT') ?? (envPort('MALLPOS_VENDOR_PORT') === 0 ? 0 : undefined),
      defaultPort: DEFAULT_PORT + 1,
      scannerSimDir: join(tmpdir(), 'mallpos-scanner-bella'),
      screenPort: envPort('MALLPOS_SCREEN_B_PORT') ?? (envPort('MALLPOS_SCREEN_PORT') === 0 ? 0 : 8501),
      printerPort: envPort('MALLPOS_PRINTER_B_PORT') ?? (envPort('MALLPOS_PRINTER_PORT') === 0 ? 0 : 9101),
    });
    const mallCa = join(mallDir, 'tls', 'ca-cert.pem');
    const storeLines = (store: typeof a, scan: string) => {
      const ca = join(store.dir, 'tls', 'ca-cert.pem');
      const products = Object.values(store.server.ledger.state.products).slice(0, 3);
      const customers = Object.values(store.server.ledger.state.customers).slice(0, 3);
      return `${store.server.config.storeName} (vendor ${store.server.config.vendorId})
  Cashier screen:   ${store.terminal.screen.url}      (open it in a browser)
  Scan a code:      ${scan}
  Receipts:         ${store.terminal.receiptsFile ?? '-'}  (the printer simulator writes each receipt there)
  Store server:     ${store.server.url}   (TLS by the store's own authority: ${ca})
  Operator API:     curl --cacert ${ca} -H "Authorization: Bearer ${store.operatorToken}" ${store.server.url}/api/float
  Sync with mall:   curl --cacert ${ca} -H "Authorization: Bearer ${store.operatorToken}" ${store.server.url}/api/sync
  Close day:        MALLPOS_OPERATOR_TOKEN=${store.operatorToken} npx vendor-server close-day --data-dir ${store.dir}   (once every shift is closed)
  Products:         ${products.map((p) => `${p.gtin} ${p.name}`).join('; ')}
  Cards:            ${customers.map((c) => `${c.card} ${c.name}`).join('; ')}`;
    };
    const virtualScan = (t: typeof a.terminal, code: string) =>
      t.virtualScanner === undefined || t.virtualScanner === null ? 'type a code and Enter in its cashier screen' : `npm run scan -- --device ${t.virtualScanner.feedPath} ${code}      (from another shell)`;
    const anna = Object.values(a.server.ledger.state.customers)[0];
    console.log(`
mallpos demo: a mall with two stores, each with one till on simulated hardware

${storeLines(a, a.terminal.scannerFallback ?? virtualScan(a.terminal, '4006381333931'))}

${storeLines(b, virtualScan(b.terminal, Object.values(b.server.ledger.state.products)[0]?.gtin ?? ''))}

  Mall:             ${mall.url}   (admin: curl --cacert ${mallCa} -H "Authorization: Bearer ${mallToken}" ${mall.url}/admin/positions)
  Reconcile:        npx mall-sync reconcile --data-dir ${mallDir} --from ${new Date().toISOString().slice(0, 10)} --to ${new Date().toISOString().slice(0, 10)}   (while the demo runs)
  Staff:            ana (cashier, PIN 1234), sam (supervisor, PIN 9999), at both stores
  Shifts:           the cashier opens a shift (counts the float) before the first sale and closes it with a count

  Try an exchange:  at ACME scan ${anna?.card ?? 'a card'} (${anna?.name ?? 'a customer'}), Shift+F6 moves ACME tokens to the mall wallet
                    (the first deposit sets the wallet PIN the customer chooses: type ${DEMO_WALLET_PIN} twice);
                    at Bella scan the same card, Shift+F5 exchanges them from the wallet for BELLA tokens with wallet PIN ${DEMO_WALLET_PIN} (1% service charge),
                    then sell a Cappuccino paying with BELLA tokens. Statements (compensation, service charge, tolls):
                    curl --cacert ${mallCa} -H "Authorization: Bearer ${mallToken}" "${mall.url}/admin/statements?from=${new Date().toISOString().slice(0, 10)}&to=${new Date().toISOString().slice(0, 10)}"

Stop with Ctrl-C. Data stays in ${root}; delete it to start over.
`);
    const stop = () => {
      Promise.all([a.terminal.close(), b.terminal.close()])
        .then(() => Promise.all([a.server.close(), b.server.close()]))
        .then(() => mall.close())
        .then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  } catch (err) {
    // A start-up problem is one plain line (a port in use, a locked data directory, ...), not a stack.
    if (err instanceof MallposError) console.error(`mallpos demo: ${err.message} [${err.code}]`);
    else console.error(`mallpos demo: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}

void main();
