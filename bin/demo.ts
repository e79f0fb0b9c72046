import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MallposError } from '../core/index.ts';
import { isInitialised } from '../vendor-server/config.ts';
import { initVendor } from '../vendor-server/init.ts';
import { createLogger } from '../vendor-server/logger.ts';
import { startVendorServer } from '../vendor-server/server.ts';

/**
 * `npm start`: a demo store on this machine. The first run creates it under
 * ./data/demo; later runs continue with the same ledger.
 */
const root = resolve(process.env['MALLPOS_DEMO_DIR'] ?? 'data/demo');
const vendorDir = join(root, 'vendor-server');
const tokenFile = join(root, 'operator-token.txt');

try {
  if (!(await isInitialised(vendorDir))) {
    const init = await initVendor({ dataDir: vendorDir, demo: true });
    // Only the demo keeps the operator credential in a file, so that a newcomer can use it.
    await writeFile(tokenFile, `${init.operatorToken}\n`, { mode: 0o600 });
    console.log(`Created the demo store "${init.config.storeName}" in ${vendorDir}`);
  }
  const operatorToken = (await readFile(tokenFile, 'utf8')).trim();
  const server = await startVendorServer({ dataDir: vendorDir, logger: createLogger({ level: process.env['LOG_LEVEL'] ?? 'warn' }) });
  const till = Object.values(server.access.data.terminals).find((t) => t.name === 'Demo till' && t.revokedAt === null);
  const code = till === undefined ? (await server.access.createTerminal('Demo till', 10 * 60_000)).code : await server.access.newCode(till.id, 10 * 60_000);
  const customers = Object.values(server.ledger.state.customers).slice(0, 3);
  const products = Object.values(server.ledger.state.products).slice(0, 3);
  console.log(`
mallpos demo store "${server.config.storeName}" (vendor ${server.config.vendorId}) is running at ${server.url}

  health:          curl ${server.url}/health
  metrics:         curl ${server.url}/metrics
  operator API:    curl -H "Authorization: Bearer ${operatorToken}" ${server.url}/api/products
  float:           curl -H "Authorization: Bearer ${operatorToken}" ${server.url}/api/float
  ledger export:   curl -H "Authorization: Bearer ${operatorToken}" "${server.url}/api/ledger/export?format=csv"

Pair a terminal with the one-time code ${code} (valid 10 minutes):
  curl -X POST -H "content-type: application/json" -d '{"code":"${code}"}' ${server.url}/pair
then connect socket.io to ${server.url} with auth { token: <credential> } (see docs/PROTOCOL.md).

Demo products:  ${products.map((p) => `${p.gtin} ${p.name}`).join('; ')}
Demo cards:     ${customers.map((c) => `${c.card} ${c.name}`).join('; ')}
Demo staff:     ana (cashier, PIN 1234), sam (supervisor, PIN 9999)

Stop with Ctrl-C. Data stays in ${root}; delete it to start over.
`);
  const stop = () => {
    server.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (err) {
  if (err instanceof MallposError) console.error(`mallpos demo: ${err.message} [${err.code}]`);
  else console.error(err);
  process.exit(1);
}
