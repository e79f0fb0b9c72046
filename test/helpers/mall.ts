import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { FeeSchedule } from '../../core/index.ts';
import type { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { loadKeys } from '../../vendor-server/config.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import type { ChildServer } from './process.ts';
import { ROOT } from './process.ts';
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

/** Starts `mall-sync serve` as a child process and waits for its URL. */
export function spawnMall(dataDir: string, port: number, timeoutMs = 20_000): Promise<ChildServer> {
  const child = spawn(process.execPath, ['bin/mall-sync.js', 'serve', '--data-dir', dataDir, '--port', String(port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mall did not start:\n${out}`));
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve({ child, url: m[1], output: () => out });
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mall exited with ${code}:\n${out}`));
    });
  });
}

export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
