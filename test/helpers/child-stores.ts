import { join } from 'node:path';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { loadConfig, loadKeys, writeConfig, type VendorConfig } from '../../vendor-server/config.ts';
import { demoOwnTokenType, demoTokenTypes, initVendor, type DemoProfileName } from '../../vendor-server/init.ts';
import { pinMall } from './mall.ts';
import { killHard, spawnMall, spawnVendorServer, type ChildServer } from './process.ts';
import { call, expectOk, type TerminalClient } from './vendor.ts';
import { pairTill } from './xchg-store.ts';
import { TEST_PIN_HASH_COST } from './pin-cost.ts';

/**
 * A mall and demo stores as real child processes (mall-sync serve, vendor-server serve),
 * each store with one till signed in over socket.io: the set-up of the e2e tests that run
 * several stores of one mall. Everything started is stopped by the `cleanups` given, run
 * in order (the newest first).
 */
export type Cleanups = (() => Promise<void>)[];

export interface ChildMall {
  dir: string;
  server: ChildServer & { caPem: string };
  admin: MallAdminClient;
}

export interface ChildStore {
  id: string;
  dir: string;
  operatorToken: string;
  server: ChildServer & { caPem: string };
  till: { terminalId: string; socket: TerminalClient };
}

/** A new mall in `dir`/mall, serving, with the demo's manufacturer registered. */
export async function startChildMall(dir: string, cleanups: Cleanups): Promise<ChildMall> {
  const mallDir = join(dir, 'mall');
  const init = await initMall({ dataDir: mallDir });
  const server = await spawnMall(mallDir);
  cleanups.unshift(() => killHard(server.child));
  const admin = new MallAdminClient(server.url, init.adminToken, server.caPem);
  await admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
  return { dir: mallDir, server, admin };
}

/**
 * A demo store of `profile` in `dir`/`profile`, registered at the mall with its token
 * types and an opening float of 10,000 MALL, linked to it (batches pushed after 100 ms),
 * serving, with a till whose cashier is signed in. `config` is laid over the store's.
 */
export async function openChildStore(mall: ChildMall, dir: string, profile: DemoProfileName, cleanups: Cleanups, config: Partial<VendorConfig> = {}): Promise<ChildStore> {
  const storeDir = join(dir, profile);
  const init = await initVendor({ dataDir: storeDir, demo: true, mallFloat: true, demoProfile: profile, pinHashCost: TEST_PIN_HASH_COST });
  await mall.admin.registerVendor({ id: init.config.vendorId, name: init.config.storeName, jwk: (await loadKeys(storeDir)).publicJwk as Record<string, unknown> });
  const types = profile === 'acme' ? demoTokenTypes('acme') : [demoOwnTokenType('bella')];
  for (const tt of types) await mall.admin.upsertTokenType(tt);
  await mall.admin.allot({ vendor: init.config.vendorId, token: 'MALL', units: 10_000, reference: 'opening float' });
  await pinMall(storeDir, mall.dir, mall.server.url);
  const linked = await loadConfig(storeDir);
  await writeConfig(storeDir, { ...linked, mall: { ...(linked.mall as NonNullable<typeof linked.mall>), batchAgeMs: 100 }, ...config });
  const server = await spawnVendorServer(storeDir);
  cleanups.unshift(() => killHard(server.child));
  const till = await pairTill(server.url, init.operatorToken, server.caPem);
  cleanups.unshift(async () => void till.socket.close());
  expectOk(await call(till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  return { id: init.config.vendorId, dir: storeDir, operatorToken: init.operatorToken, server, till };
}
