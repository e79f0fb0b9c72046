import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../platform/logger.ts';
import type { TokenType } from '../../core/index.ts';
import { loadConfig, loadKeys, writeConfig, type VendorConfig } from '../../vendor-server/config.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { fetchTls, http } from './http.ts';
import { until } from './process.ts';
import { call, expectOk, startTestVendor, terminalSocket, type TerminalClient } from './vendor.ts';
import { startWalletMallDouble, type WalletMallDouble } from './wallet-mall-double.ts';
import { TEST_PIN_HASH_COST } from './pin-cost.ts';

/** A token of another store, which this store does not hold in its float. */
export const BOLT: TokenType = { code: 'BOLT', name: 'Bolt token', kind: 'vendor', issuer: 'bolt', faceValueMinor: 7, currency: 'EUR', acceptedBy: ['bolt'] };

export interface LinkedStore {
  vendorDir: string;
  init: InitResult;
  double: WalletMallDouble;
  server: RunningVendorServer;
  cards: string[];
  till: { terminalId: string; credential: string; socket: TerminalClient };
  restart: () => Promise<void>;
  close: () => Promise<void>;
  /** Everything the store logged so far (debug level), to look for what must never be there. */
  logged: () => string;
}

/** Pairs a till with the operator API and opens its socket (no cashier signed in). */
export async function pairTill(url: string, operatorToken: string, caPem: string, name = 'Till 1'): Promise<{ terminalId: string; credential: string; socket: TerminalClient }> {
  const created = await http(`${url}/api/terminals`, 'POST', { name }, { authorization: `Bearer ${operatorToken}` });
  if (created.status !== 200) throw new Error(`create terminal: ${created.text}`);
  const res = await fetchTls(`${url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: created.body.pairingCode }) });
  const paired = (await res.json()) as { terminalId: string; credential: string };
  return { ...paired, socket: await connectTill(url, caPem, paired.credential) };
}

export async function connectTill(url: string, caPem: string, credential: string): Promise<TerminalClient> {
  const socket = terminalSocket({ url, caPem }, credential);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (err) => reject(err));
  });
  return socket;
}

/**
 * A mall double and the demo store (floats of MALL, ACME and SUNNY, customers with MALL
 * and ACME) linked to it, started in this process with a signed-in till.
 */
export async function startLinkedStore(root: string, opts: { exchange?: VendorConfig['exchange']; ttlMs?: number } = {}): Promise<LinkedStore> {
  const double = await startWalletMallDouble(join(root, 'mall'), opts.ttlMs === undefined ? {} : { ttlMs: opts.ttlMs });
  const vendorDir = join(root, 'vendor');
  const init = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
  const keys = await loadKeys(vendorDir);
  await double.addVendor('acme', 'ACME Market', keys.publicJwk as unknown as Record<string, unknown>);
  await double.addVendor('bolt', 'Bolt Hardware', keys.publicJwk as unknown as Record<string, unknown>);
  double.tokenTypes = [...demoTokenTypes('acme'), BOLT];
  await double.linkVendor(vendorDir, { batchAgeMs: 100 });
  if (opts.exchange !== undefined) await writeConfig(vendorDir, { ...(await loadConfig(vendorDir)), exchange: opts.exchange });
  let logged = '';
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => (logged += d.toString('latin1')));
  const logger = createLogger({ level: 'debug', name: 'vendor-server', destination: sink });
  const start = async () => {
    const server = await startTestVendor(vendorDir, { logger });
    await until('the mall snapshot', () => (server.sync?.cachedSnapshot() ?? undefined) === undefined ? undefined : true, 30_000);
    return server;
  };
  const server = await start();
  const till = await pairTill(server.url, init.operatorToken, server.caPem);
  expectOk(await call(till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  const store: LinkedStore = {
    vendorDir,
    init,
    double,
    server,
    cards: (init.demo?.customers ?? []).map((c) => c.card),
    till,
    logged: () => logged,
    async restart() {
      store.till.socket.disconnect();
      await store.server.close();
      store.server = await start();
      store.till = { ...store.till, socket: await connectTill(store.server.url, store.server.caPem, store.till.credential) };
      expectOk(await call(store.till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    },
    async close() {
      store.till.socket.disconnect();
      await store.server.close();
      await double.close();
    },
  };
  return store;
}

/** What a refusal must leave as it was: the journal's length, every balance, the float. */
export function ledgerPicture(server: RunningVendorServer): string {
  return JSON.stringify({ seq: server.ledger.state.seq, balances: server.ledger.state.balances });
}
