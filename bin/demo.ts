import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MallposError } from '../core/index.ts';
import { isInitialised } from '../vendor-server/config.ts';
import { initVendor } from '../vendor-server/init.ts';
import { createLogger } from '../vendor-server/logger.ts';
import { startVendorServer } from '../vendor-server/server.ts';
import { loadCredential, pairTerminal } from '../terminal/credential.ts';
import { startTerminal } from '../terminal/run.ts';

/**
 * `npm start`: a demo store on this machine: the vendor server and one terminal on a
 * simulated scanner and printer. The first run creates it under ./data/demo; later
 * runs continue with the same ledger.
 */
const root = resolve(process.env['MALLPOS_DEMO_DIR'] ?? 'data/demo');
const vendorDir = join(root, 'vendor-server');
const tokenFile = join(root, 'operator-token.txt');
const terminalDir = join(root, 'pos-terminal');

try {
  if (!(await isInitialised(vendorDir))) {
    const init = await initVendor({ dataDir: vendorDir, demo: true });
    // Only the demo keeps the operator credential in a file, so that a newcomer can use it.
    await writeFile(tokenFile, `${init.operatorToken}\n`, { mode: 0o600 });
    console.log(`Created the demo store "${init.config.storeName}" in ${vendorDir}`);
  }
  const operatorToken = (await readFile(tokenFile, 'utf8')).trim();
  const server = await startVendorServer({ dataDir: vendorDir, logger: createLogger({ level: process.env['LOG_LEVEL'] ?? 'warn' }) });
  // The demo terminal pairs itself once, like a cashier would with a code from the operator.
  const paired = await loadCredential(terminalDir).then(() => true, () => false);
  if (!paired) {
    const { code } = await server.access.createTerminal('Till 1', 10 * 60_000);
    await pairTerminal(terminalDir, server.url, code);
  }
  const terminal = await startTerminal({ dataDir: terminalDir, scanner: 'sim', printer: 'sim', port: Number(process.env['MALLPOS_SCREEN_PORT'] ?? 8500) });
  const customers = Object.values(server.ledger.state.customers).slice(0, 3);
  const products = Object.values(server.ledger.state.products).slice(0, 4);
  console.log(`
mallpos demo: "${server.config.storeName}" (vendor ${server.config.vendorId})

  Cashier screen:   ${terminal.screen.url}      (open it in a browser)
  Scan a code:      npm run scan -- 4006381333931      (from another shell; the virtual scanner is ${terminal.virtualScanner?.devicePath ?? '-'})
  Receipts:         ${terminal.receiptsFile ?? '-'}  (the printer simulator writes each receipt there)
  Store server:     ${server.url}   (health: ${server.url}/health, metrics: ${server.url}/metrics)
  Operator API:     curl -H "Authorization: Bearer ${operatorToken}" ${server.url}/api/float

  Products:   ${products.map((p) => `${p.gtin} ${p.name}`).join('; ')}
  Cards:      ${customers.map((c) => `${c.card} ${c.name}`).join('; ')}
  Staff:      ana (cashier, PIN 1234), sam (supervisor, PIN 9999)

Stop with Ctrl-C. Data stays in ${root}; delete it to start over.
`);
  const stop = () => {
    terminal
      .close()
      .then(() => server.close())
      .then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (err) {
  if (err instanceof MallposError) console.error(`mallpos demo: ${err.message} [${err.code}]`);
  else console.error(err);
  process.exit(1);
}
