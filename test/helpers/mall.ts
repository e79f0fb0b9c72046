import { join } from 'node:path';
import type { FeeSchedule } from '../../core/index.ts';
import type { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { readFile } from 'node:fs/promises';
import { loadMallKeys } from '../../mall-sync/config.ts';
import { loadConfig, loadKeys, writeConfig } from '../../vendor-server/config.ts';
import { trustAuthority } from './http.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import { silentLogger } from './vendor.ts';
import type { Logger } from '../../platform/logger.ts';
import { TEST_PIN_HASH_COST } from './pin-cost.ts';

export const TEST_FEES: FeeSchedule = {
  royaltyBps: 250,
  royaltyBpsByVendor: {},
  royaltyBpsByToken: {},
  reimbursementTollMinor: 5,
  customerDataTollMinor: 10,
  exchangeServiceBps: 100,
};

/** A mall registry that knows the demo vendor, its key and the demo token types. */
export async function registerDemoVendor(admin: MallAdminClient, vendorDir: string, vendorId = 'acme'): Promise<void> {
  await admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' }).catch(() => undefined);
  const keys = await loadKeys(vendorDir);
  await admin.registerVendor({ id: vendorId, name: 'ACME Market', jwk: keys.publicJwk as Record<string, unknown> });
  for (const tt of demoTokenTypes(vendorId)) await admin.upsertTokenType(tt);
  await admin.setFees(TEST_FEES);
}

export interface MallAndVendor {
  mallDir: string;
  vendorDir: string;
  adminToken: string;
  /** The mall's certificate authority, pinned in the vendor's config. */
  mallCaPem: string;
  vendorInit: InitResult;
}

/**
 * Initialises a mall and a demo vendor (floats from the mall) in `dir`, and links the
 * vendor to the mall the way `link-mall` does: the mall's key and authority pinned. The
 * URL is a placeholder: tests pass the running mall's with `mallUrl`.
 */
export async function initMallAndVendor(dir: string): Promise<MallAndVendor> {
  const mallDir = join(dir, 'mall');
  const vendorDir = join(dir, 'vendor');
  const mall = await initMall({ dataDir: mallDir });
  const vendorInit = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: true, pinHashCost: TEST_PIN_HASH_COST });
  await pinMall(vendorDir, mallDir, 'https://127.0.0.1:8700');
  return { mallDir, vendorDir, adminToken: mall.adminToken, mallCaPem: mall.caPem, vendorInit };
}

/** Writes the mall's key and authority (read from its data directory) into a vendor's config. */
export async function pinMall(vendorDir: string, mallDir: string, url: string): Promise<void> {
  const mallKeys = await loadMallKeys(mallDir);
  const caPem = await readFile(join(mallDir, 'tls', 'ca-cert.pem'), 'utf8');
  const config = await loadConfig(vendorDir);
  await writeConfig(vendorDir, { ...config, mall: { url, jwk: mallKeys.publicJwk, caPem, snapshotMaxAgeHours: 72, batchEventsMax: 500, batchAgeMs: 1000 } });
}

/** Starts a mall on 127.0.0.1 and trusts its authority in the test helpers. */
export async function startTestMall(dataDir: string, port = 0, opts: { clock?: () => Date; logger?: Logger } = {}): Promise<RunningMall> {
  const mall = await startMallServer({ dataDir, port, host: '127.0.0.1', logger: opts.logger ?? silentLogger(), defaultMetrics: false, clock: opts.clock });
  trustAuthority(mall.url, mall.caPem);
  return mall;
}

export { spawnMall, until } from './process.ts';
