import { randomUUID } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { SaleResult } from '../../core/index.ts';
import { backupStore } from '../../vendor-server/backup.ts';
import { initMall } from '../../mall-sync/init.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { http } from '../helpers/http.ts';
import { pinMall } from '../helpers/mall.ts';
import { call, expectOk, startTestVendor, tempDir, terminalSocket, type TerminalClient } from '../helpers/vendor.ts';
import { capturedLogger } from './helpers-files.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

/** Every file and directory under root with its permission bits. */
async function modes(root: string, dir = root, out: string[] = []): Promise<string[]> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    out.push(`${path.slice(root.length)} ${entry.isDirectory() ? 'd' : 'f'} ${((await stat(path)).mode & 0o777).toString(8)}`);
    if (entry.isDirectory()) await modes(root, path, out);
  }
  return out;
}

describe('vendor-server: files, keys and logs hold no secret for others', function () {
  this.timeout(120_000);

  it('a whole run, with every secret used and misused, logs none of them; every file is 0600 and every directory 0700 even with umask 0', async () => {
    const { dir, cleanup } = await tempDir('mallpos-secrets-');
    // The store is linked to a mall (its key and authority pinned) that nothing serves.
    const mallDir = join(dir, 'mall');
    const mallUrl = 'https://127.0.0.1:9';
    await initMall({ dataDir: mallDir });
    // With umask 0, anything created with default modes would be world-readable.
    const umask = process.umask(0);
    const { logger, text } = capturedLogger('trace');
    const secrets: string[] = [];
    try {
      const store = join(dir, 'store');
      const init = await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
      secrets.push(init.operatorToken);
      await pinMall(store, mallDir, mallUrl);
      const server = await startTestVendor(store, { logger, mallUrl });
      const sockets: TerminalClient[] = [];
      try {
        const op = (method: string, path: string, body?: unknown, token = init.operatorToken, headers: Record<string, string> = {}) =>
          http(`${server.url}${path}`, method, body, { authorization: `Bearer ${token}`, ...headers });
        const cashierPin = '739146';
        const supervisorPin = '582903';
        expect((await op('PUT', '/api/staff/cas1', { name: 'Cashier One', role: 'cashier', pin: cashierPin })).status).to.equal(200);
        expect((await op('PUT', '/api/staff/sup1', { name: 'Supervisor One', role: 'supervisor', pin: supervisorPin })).status).to.equal(200);
        secrets.push(cashierPin, supervisorPin);
        // A wrong operator token, and a malformed body carrying a PIN at the top.
        const wrongToken = `mpo_${randomUUID()}`;
        secrets.push(wrongToken);
        expect((await op('GET', '/api/float', undefined, wrongToken)).status).to.equal(401);
        const badPin = '99887766554433';
        secrets.push(badPin);
        expect((await op('PUT', '/api/staff/cas2', { name: 'x', role: 'boss', pin: badPin })).status).to.equal(400);

        const created = await op('POST', '/api/terminals', { name: 'Till 1' });
        const code = created.body.pairingCode as string;
        secrets.push(code);
        expect((await http(`${server.url}/pair`, 'POST', { code: 'WRONGCODE9' })).status).to.equal(403);
        secrets.push('WRONGCODE9');
        const paired = await http(`${server.url}/pair`, 'POST', { code });
        const credential = paired.body.credential as string;
        secrets.push(credential, paired.body.device as string);

        const bogus = `${credential.slice(0, -8)}AAAAAAAA`;
        const refused = terminalSocket(server, bogus);
        await new Promise<void>((resolve) => refused.once('connect_error', () => resolve()));
        refused.disconnect();

        const socket: TerminalClient = terminalSocket(server, credential);
        sockets.push(socket);
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        const wrongPin = '000111222';
        secrets.push(wrongPin);
        expect((await call(socket, 'cashier:login', { staffId: 'cas1', pin: wrongPin })).ok).to.equal(false);
        expectOk(await call(socket, 'cashier:login', { staffId: 'cas1', pin: cashierPin }));
        const card = init.demo?.customers[0]?.card ?? null;
        const sale = expectOk(await call<SaleResult>(socket, 'sale:commit', { key: `${paired.body.terminalId}:${randomUUID()}`, lines: [{ code: '4006381333931', qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
        expect((await call(socket, 'sale:refund', { key: `${paired.body.terminalId}:${randomUUID()}`, saleId: sale.saleId, reason: 'wrong item', supervisor: { staffId: 'sup1', pin: wrongPin } })).ok).to.equal(false);
        expectOk(await call(socket, 'sale:refund', { key: `${paired.body.terminalId}:${randomUUID()}`, saleId: sale.saleId, reason: 'wrong item', supervisor: { staffId: 'sup1', pin: supervisorPin } }));
        // The server's own log calls with secrets at the top level are redacted too.
        server.logger.info({ pin: supervisorPin, token: credential }, 'top-level secret fields');
        await backupStore(store, join(dir, 'backup'));
        await op('GET', '/api/ledger/export');
        await op('GET', '/health');

        const owner = JSON.parse(await readFile(join(store, 'run', 'owner.json'), 'utf8')) as { controlToken: string };
        secrets.push(owner.controlToken);
      } finally {
        for (const s of sockets) s.disconnect();
        await server.close();
      }
      secrets.push((await readFile(join(store, 'keys', 'pin-pepper.key'), 'utf8')).trim());
      secrets.push((JSON.parse(await readFile(join(store, 'keys', 'vendor-key.jwk.json'), 'utf8')) as { d: string }).d);
      for (const key of ['ca-key.pem', 'server-key.pem']) secrets.push((await readFile(join(store, 'tls', key), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, ''));

      const logged = text();
      expect(logged).to.include('terminal paired').and.include('top-level secret fields').and.include('[redacted]');
      for (const secret of secrets) expect(logged, 'a secret in the log').to.not.include(secret);

      for (const root of [store, join(dir, 'backup')]) {
        const listed = await modes(root);
        expect(listed.length).to.be.greaterThan(10);
        for (const line of listed) expect(line, root).to.match(/ (d 700|f 600)$/);
      }
    } finally {
      process.umask(umask);
      await cleanup();
    }
  });
});
