import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RunningMall } from '../../mall-sync/server.ts';
import { createCertificateAuthority, issueServerCertificate, serverNames } from '../../platform/tls.ts';
import { loadConfig } from '../../vendor-server/config.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { checkMallIdentity } from '../../vendor-server/sync/mall-sync-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { registerDemoVendor, startTestMall, until } from '../helpers/mall.ts';
import { runCli } from '../helpers/process.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

async function refusal(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
  return 'accepted';
}

describe('vendor server: link-mall pins the mall\'s key and certificate', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let mall: RunningMall;
  let mallDir: string;
  let vendorDir: string;
  let adminToken: string;
  let impostor: Server;
  let impostorUrl: string;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-link-'));
    mallDir = join(dir, 'mall');
    vendorDir = join(dir, 'vendor');
    adminToken = (await initMall({ dataDir: mallDir })).adminToken;
    await initVendor({ dataDir: vendorDir, demo: true, mallFloat: true, pinHashCost: TEST_PIN_HASH_COST });
    mall = await startTestMall(mallDir);
    await writeFile(join(dir, 'mall-ca.pem'), mall.caPem);
    await writeFile(join(dir, 'mall-key.json'), JSON.stringify({ kid: mall.keys.kid, jwk: mall.keys.publicJwk }));
    // Another server on the network that claims to be the mall: its own authority, and a
    // mall key of its own.
    const otherCa = await createCertificateAuthority('Impostor mall');
    const cert = await issueServerCertificate(otherCa, serverNames([]));
    const otherMall = join(dir, 'other-mall');
    const other = await initMall({ dataDir: otherMall });
    await writeFile(join(dir, 'other-ca.pem'), otherCa.certPem);
    await writeFile(join(dir, 'other-key.json'), JSON.stringify({ kid: other.kid, jwk: { kty: 'OKP', crv: 'Ed25519', x: JSON.parse(await readFile(join(otherMall, 'keys', 'mall-key.jwk.json'), 'utf8')).x } }));
    impostor = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kid: mall.keys.kid, jwk: mall.keys.publicJwk }));
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    impostorUrl = `https://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((resolve) => impostor.close(resolve));
    await mall.close();
    await cleanup();
  });

  it('refuses a mall that serves another key than the one given, and writes nothing', async () => {
    const before = await readFile(join(vendorDir, 'config.json'), 'utf8');
    const byFile = await runCli(['link-mall', '--data-dir', vendorDir, '--url', mall.url, '--mall-ca', join(dir, 'mall-ca.pem'), '--mall-key', join(dir, 'other-key.json')]);
    expect(byFile.code).to.equal(1);
    expect(byFile.stderr).to.include('VND_ERR_MALL_IDENTITY');
    const byThumbprint = await refusal(() => checkMallIdentity({ url: mall.url, caPem: mall.caPem, thumbprint: 'A'.repeat(43) }));
    expect(byThumbprint).to.equal('VND_ERR_MALL_IDENTITY');
    expect(await readFile(join(vendorDir, 'config.json'), 'utf8')).to.equal(before);
  });

  it('refuses a server whose certificate is not from the given mall authority, even with the right key', async () => {
    const before = await readFile(join(vendorDir, 'config.json'), 'utf8');
    // The impostor serves the real mall's public key, but cannot present a certificate of the mall's authority.
    const cli = await runCli(['link-mall', '--data-dir', vendorDir, '--url', impostorUrl, '--mall-ca', join(dir, 'mall-ca.pem'), '--mall-key-thumbprint', mall.keys.kid]);
    expect(cli.code).to.equal(1);
    expect(cli.stderr).to.include('VND_ERR_MALL_IDENTITY');
    // The real mall is refused when the store is given another authority.
    const otherCa = await readFile(join(dir, 'other-ca.pem'), 'utf8');
    expect(await refusal(() => checkMallIdentity({ url: mall.url, caPem: otherCa, thumbprint: mall.keys.kid }))).to.equal('VND_ERR_MALL_IDENTITY');
    expect(await refusal(() => checkMallIdentity({ url: mall.url.replace('https://', 'http://'), caPem: mall.caPem, thumbprint: mall.keys.kid }))).to.equal('VND_ERR_CONFIG');
    expect(await readFile(join(vendorDir, 'config.json'), 'utf8')).to.equal(before);
  });

  it('a store that was not linked does not sync: there is no key to trust', async () => {
    const err = await refusal(() => startTestVendor(vendorDir, { mallUrl: mall.url }));
    expect(err).to.equal('VND_ERR_CONFIG');
  });

  it('links with the right key and authority, then syncs only over TLS to that mall', async () => {
    const cli = await runCli(['link-mall', '--data-dir', vendorDir, '--url', mall.url, '--mall-ca', join(dir, 'mall-ca.pem'), '--mall-key', join(dir, 'mall-key.json')]);
    expect(cli.code, cli.stderr).to.equal(0);
    const config = await loadConfig(vendorDir);
    expect(config.mall?.caPem).to.equal(mall.caPem);
    expect(config.mall?.jwk).to.deep.include({ x: mall.keys.publicJwk.x });
    const admin = new MallAdminClient(mall.url, adminToken, mall.caPem);
    await registerDemoVendor(admin, vendorDir);
    const vendor = await startTestVendor(vendorDir, { syncOverrides: { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 200 } });
    try {
      await until('synced with the mall', async () => ((await vendor.sync?.status())?.lastAckAt !== null ? true : undefined));
      expect((await vendor.sync?.status())?.lastError).to.equal(null);
    } finally {
      await vendor.close();
    }
  });

  it('stops syncing when something on the network presents another certificate for the mall', async () => {
    // A store linked to the mall's address finds the impostor there instead.
    const before = await loadConfig(vendorDir);
    const vendor = await startTestVendor(vendorDir, { mallUrl: impostorUrl, syncOverrides: { snapshotEveryMs: 100, batchAgeMs: 20, backoffBaseMs: 50, backoffMaxMs: 200 } });
    try {
      const lastAck = (await vendor.sync?.status())?.lastAckAt ?? null;
      const error = await until('a sync error', async () => (await vendor.sync?.status())?.lastError ?? undefined);
      expect(error).to.match(/certificate/);
      expect((await vendor.sync?.status())?.lastAckAt ?? null).to.equal(lastAck);
    } finally {
      await vendor.close();
    }
    expect((await loadConfig(vendorDir)).mall).to.deep.equal(before.mall);
    // The impostor's certificate really is a TLS certificate for the same address: only the pin refuses it.
    const peer = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: Number(new URL(impostorUrl).port), rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().subjectaltname ?? '');
        s.end();
      });
      s.on('error', reject);
    });
    expect(peer).to.include('IP Address:127.0.0.1');
  });
});
