import { join } from 'node:path';
import type { FeeSchedule } from '../../core/index.ts';
import type { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { loadKeys } from '../../vendor-server/config.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import { silentLogger } from './vendor.ts';

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
  vendorInit: InitResult;
}

/** Initialises a mall and a demo vendor (floats from the mall) in `dir`. */
export async function initMallAndVendor(dir: string): Promise<MallAndVendor> {
  const mallDir = join(dir, 'mall');
  const vendorDir = join(dir, 'vendor');
  const mall = await initMall({ dataDir: mallDir });
  const vendorInit = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: true });
  return { mallDir, vendorDir, adminToken: mall.adminToken, vendorInit };
}

export function startTestMall(dataDir: string, port = 0): Promise<RunningMall> {
  return startMallServer({ dataDir, port, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
}

export { spawnMall, until } from './process.ts';
