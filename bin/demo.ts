import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MallposError } from '../core/index.ts';
import { createStoreTls, isInitialised, loadConfig, loadKeys, writeConfig } from '../vendor-server/config.ts';
import { checkMallIdentity } from '../vendor-server/sync/mall-sync-client.ts';
import { demoTokenTypes, initVendor } from '../vendor-server/init.ts';
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
const mallTokenFile = join(root, 'mall-admin-token.txt');
const exists = (path: string) => stat(path).then(() => true, () => false);
const logger = createLogger({ level: process.env['LOG_LEVEL'] ?? 'warn' });
/** Ports can be moved (0: any free port), so the demo runs next to another copy or a test. */
const envPort = (name: string): number | undefined => (process.env[name] === undefined ? undefined : Number(process.env[name]));

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

  if (!(await isInitialised(vendorDir))) {
    const init = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: true });
    // The demo store runs the cashier's day: a sale needs an open shift with a counted float.
    await writeConfig(vendorDir, { ...init.config, shifts: { required: true } });
    await writeFile(tokenFile, `${init.operatorToken}\n`, { mode: 0o600 });
    const keys = await loadKeys(vendorDir);
    await admin.registerVendor({ id: init.config.vendorId, name: init.config.storeName, jwk: keys.publicJwk as Record<string, unknown> });
    await admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
    for (const tt of demoTokenTypes(init.config.vendorId)) await admin.upsertTokenType(tt);
    await admin.setFees({ royaltyBps: 150, royaltyBpsByVendor: {}, royaltyBpsByToken: { SUNNY: 0 }, reimbursementTollMinor: 2, customerDataTollMinor: 10, exchangeServiceBps: 100 });
    await admin.allot({ vendor: init.config.vendorId, token: 'MALL', units: 200_000, reference: 'opening float' }, 'demo-allot-mall');
    await admin.allot({ vendor: init.config.vendorId, token: 'SUNNY', units: 20_000, reference: 'Sunny Foods spring campaign' }, 'demo-allot-sunny');
    console.log(`Created the demo mall and the store "${init.config.storeName}" in ${root}`);
  }
  const operatorToken = (await readFile(tokenFile, 'utf8')).trim();
  const vendorConfig = await loadConfig(vendorDir);
  if (!(await exists(join(vendorDir, 'tls', 'ca-key.pem')))) await createStoreTls(vendorDir, vendorConfig);
  // The store links to the mall as an operator would with "vendor-server link-mall": the
  // mall's authority and key thumbprint come from the mall's own files, not from the network.
  const linked = await checkMallIdentity({ url: mall.url, caPem: mall.caPem, thumbprint: mall.keys.kid });
  await writeConfig(vendorDir, { ...vendorConfig, mall: { snapshotMaxAgeHours: 72, batchEventsMax: 500, batchAgeMs: 1000, ...vendorConfig.mall, url: mall.url, jwk: linked.jwk, caPem: mall.caPem } });
  const server = await startVendorServer({ dataDir: vendorDir, port: envPort('MALLPOS_VENDOR_PORT'), logger });
  // The demo customers get mall tokens and coupons once the mall's allotments are in the float.
  for (let i = 0; i < 100 && (server.ledger.float()['MALL'] === undefined || server.ledger.float()['SUNNY'] === undefined); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const op = { terminal: null, cashier: null };
  for (const [i, c] of Object.values(server.ledger.state.customers).slice(0, 10).entries()) {
    await server.ledger.issueTokens(op, `op:demo-mall-${c.id}`, { customerId: c.id, token: 'MALL', units: 100 + 40 * i, reason: 'purchase' }).catch(() => undefined);
    if (i % 3 === 0) await server.ledger.issueTokens(op, `op:demo-sunny-${c.id}`, { customerId: c.id, token: 'SUNNY', units: 60, reason: 'reward' }).catch(() => undefined);
  }
  // The demo terminal pairs itself once, like a cashier would with a code from the operator.
  const paired = await loadCredential(terminalDir).then(() => true, () => false);
  if (!paired) {
    const { code } = await server.access.createTerminal('Till 1', 10 * 60_000);
    await pairTerminal(terminalDir, server.url, code);
  }
  const terminal = await startTerminal({ dataDir: terminalDir, scanner: 'sim', printer: 'sim', port: envPort('MALLPOS_SCREEN_PORT') ?? 8500, printerSimPort: envPort('MALLPOS_PRINTER_PORT') ?? 9100 });
  const storeCa = join(vendorDir, 'tls', 'ca-cert.pem');
  const mallCa = join(mallDir, 'tls', 'ca-cert.pem');
  const customers = Object.values(server.ledger.state.customers).slice(0, 3);
  const products = Object.values(server.ledger.state.products).slice(0, 4);
  console.log(`
mallpos demo: "${server.config.storeName}" (vendor ${server.config.vendorId})

  Cashier screen:   ${terminal.screen.url}      (open it in a browser)
  Scan a code:      ${terminal.scannerFallback ?? `npm run scan -- 4006381333931      (from another shell; the virtual scanner is ${terminal.virtualScanner?.devicePath ?? '-'})`}
  Receipts:         ${terminal.receiptsFile ?? '-'}  (the printer simulator writes each receipt there)
  Store server:     ${server.url}   (TLS by the store's own authority: ${storeCa})
  Health:           curl --cacert ${storeCa} ${server.url}/health
  Operator API:     curl --cacert ${storeCa} -H "Authorization: Bearer ${operatorToken}" ${server.url}/api/float
  Sync with mall:   curl --cacert ${storeCa} -H "Authorization: Bearer ${operatorToken}" ${server.url}/api/sync
  Mall:             ${mall.url}   (admin: curl --cacert ${mallCa} -H "Authorization: Bearer ${mallToken}" ${mall.url}/admin/positions)
  Reconcile:        npx mall-sync reconcile --data-dir ${mallDir} --from ${new Date().toISOString().slice(0, 10)} --to ${new Date().toISOString().slice(0, 10)}   (while the demo runs)

  Products:   ${products.map((p) => `${p.gtin} ${p.name}`).join('; ')}
  Cards:      ${customers.map((c) => `${c.card} ${c.name}`).join('; ')}
  Staff:      ana (cashier, PIN 1234), sam (supervisor, PIN 9999)
  Shifts:     the cashier opens a shift (counts the float) before the first sale and closes it with a count
  Close day:  MALLPOS_OPERATOR_TOKEN=${operatorToken} npx vendor-server close-day --data-dir ${vendorDir}   (once every shift is closed)

Stop with Ctrl-C. Data stays in ${root}; delete it to start over.
`);
  const stop = () => {
    terminal
      .close()
      .then(() => server.close())
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
