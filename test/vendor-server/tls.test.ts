import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { createCertificateAuthority, issueServerCertificate, keepAliveAgent, serverNames, tlsRequest } from '../../platform/tls.ts';
import { loadConfig, writeConfig } from '../../vendor-server/config.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { StoreLink } from '../../terminal/store-link.ts';
import { until } from '../helpers/process.ts';
import { call, expectOk, silentLogger, startDemoStore, startTestVendor, tempDir, terminalSocket, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931';

function connectError(s: TerminalClient): Promise<string | undefined> {
  return new Promise((resolve) => s.once('connect_error', (err: Error & { data?: { code: string } }) => resolve(err.data?.code)));
}

async function renewWith(store: DemoStore, device: string) {
  return tlsRequest(`${store.server.url}/terminal/credential`, { method: 'POST', ca: store.server.caPem, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ device }) });
}

describe('vendor server: TLS and terminal credentials', function () {
  this.timeout(60_000);

  describe('the store certificate authority', () => {
    let dir: string;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ dir, cleanup } = await tempDir('mallpos-tls-'));
      await initVendor({ dataDir: dir, tlsNames: ['till-server.shop.lan', '10.1.2.3'], pinHashCost: TEST_PIN_HASH_COST });
    });
    after(async () => cleanup());

    it('keeps its keys readable by the owner only and names the store in its certificate', async () => {
      for (const f of ['ca-key.pem', 'server-key.pem']) expect((await stat(join(dir, 'tls', f))).mode & 0o777, f).to.equal(0o600);
      const ca = new X509Certificate(await readFile(join(dir, 'tls', 'ca-cert.pem')));
      const cert = new X509Certificate(await readFile(join(dir, 'tls', 'server-cert.pem')));
      expect(ca.ca).to.equal(true);
      expect(cert.ca).to.equal(false);
      expect(cert.verify(ca.publicKey)).to.equal(true);
      for (const name of ['DNS:localhost', 'IP Address:127.0.0.1', 'DNS:till-server.shop.lan', 'IP Address:10.1.2.3']) expect(cert.subjectAltName).to.include(name);
    });

    it('serves TLS only, and a client that trusts another authority is refused', async () => {
      const server = await startTestVendor(dir);
      try {
        const ok = await tlsRequest(`${server.url}/health`, { ca: server.caPem });
        expect(ok.status).to.equal(200);
        const other = await createCertificateAuthority('Another store');
        const refused = await tlsRequest(`${server.url}/health`, { ca: other.certPem }).then(() => 'answered', (err: { code?: string }) => err.code);
        expect(refused).to.match(/CERT|SIGNATURE|UNABLE/);
        // Plain HTTP to the same port gets no answer in clear.
        const plain = await new Promise<string>((resolve) => {
          const req = httpRequest(`${server.url.replace('https://', 'http://')}/health`, (res) => resolve(`HTTP ${res.statusCode}`));
          req.on('error', (err) => resolve(`error ${err.message}`));
          req.end();
        });
        expect(plain).not.to.equal('HTTP 200');
      } finally {
        await server.close();
      }
    });

    it('carries requests over one kept-alive connection with an agent, and still checks the authority of each', async () => {
      const server = await startTestVendor(dir);
      let connections = 0;
      const agent = new (class extends HttpsAgent {
        override createConnection(...args: Parameters<HttpsAgent['createConnection']>): ReturnType<HttpsAgent['createConnection']> {
          connections += 1;
          return super.createConnection(...args);
        }
      })({ keepAlive: true });
      try {
        for (let i = 0; i < 3; i++) expect((await tlsRequest(`${server.url}/health`, { ca: server.caPem, agent })).status).to.equal(200);
        expect(connections).to.equal(1);
        // A request that trusts another authority does not ride the connection verified against the store's.
        const other = await createCertificateAuthority('Another store');
        const refused = await tlsRequest(`${server.url}/health`, { ca: other.certPem, agent }).then(() => 'answered', (err: { code?: string }) => err.code);
        expect(refused).to.match(/CERT|SIGNATURE|UNABLE/);
        expect(connections).to.equal(2);
      } finally {
        agent.destroy();
        await server.close();
      }
    });

    it('sends a request once more on a new connection when the server had closed the kept-alive one, and never repeats one on a new connection', async () => {
      const ca = await createCertificateAuthority('Closing server');
      const cert = await issueServerCertificate(ca, serverNames([]));
      // A server that answers the first request on a connection and drops the connection,
      // without a word, when a second request arrives on it: as a server does that closed
      // an idle connection just as the client sent on it. `/drop` is dropped on any connection.
      const seen: string[] = [];
      const requestsOn = new WeakMap<object, number>();
      const server = createHttpsServer({ key: cert.keyPem, cert: cert.certPem, keepAliveTimeout: 60_000 }, (req, res) => {
        const n = (requestsOn.get(req.socket) ?? 0) + 1;
        requestsOn.set(req.socket, n);
        seen.push(`${req.url} #${n}`);
        if (n > 1 || req.url === '/drop') req.socket.destroy();
        else res.end('ok');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const agent = keepAliveAgent();
      try {
        expect((await tlsRequest(`${url}/a`, { ca: ca.certPem, agent })).text).to.equal('ok');
        // On the kept connection, dropped; then once more on a new one, answered.
        expect((await tlsRequest(`${url}/b`, { ca: ca.certPem, agent })).text).to.equal('ok');
        expect(seen).to.deep.equal(['/a #1', '/b #2', '/b #1']);
        // A connection dropped that was new is the server's answer: nothing is sent again.
        agent.destroy();
        const fresh = keepAliveAgent();
        const dropped = await tlsRequest(`${url}/drop`, { ca: ca.certPem, agent: fresh }).then(() => 'answered', (err: { code?: string }) => err.code);
        fresh.destroy();
        expect(dropped).to.equal('ECONNRESET');
        expect(seen.filter((r) => r.startsWith('/drop'))).to.deep.equal(['/drop #1']);
      } finally {
        agent.destroy();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    it('re-issues the server certificate from the same authority when the names change', async () => {
      const config = await loadConfig(dir);
      await writeConfig(dir, { ...config, tlsNames: [...config.tlsNames, 'second-name.shop.lan'] });
      const server = await startTestVendor(dir, { logger: silentLogger() });
      try {
        const cert = new X509Certificate(await readFile(join(dir, 'tls', 'server-cert.pem')));
        expect(cert.subjectAltName).to.include('DNS:second-name.shop.lan');
        expect(cert.verify(new X509Certificate(server.caPem).publicKey)).to.equal(true);
        expect((await tlsRequest(`${server.url}/health`, { ca: server.caPem })).status).to.equal(200);
      } finally {
        await server.close();
      }
    });
  });

  describe('credential lifetime', () => {
    // The link renews after two thirds of a lifetime: the last third (1.3 s) is the time a
    // busy machine has to answer the renewal before the socket is cut off.
    const TTL_S = 4;
    let store: DemoStore;
    before(async () => {
      store = await startDemoStore({ accessTtlSeconds: TTL_S });
    });
    after(async () => store.close());

    it('an access credential expires: its socket is cut off and it cannot connect again', async () => {
      const paired = await store.pairTerminal('Till short');
      const socket = await store.connect(paired.credential);
      expectOk(await call(socket, 'product:lookup', { code: PEN }));
      const dropped = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
      await dropped;
      expect(Date.now()).to.be.at.least(Date.parse(paired.expiresAt));
      const again = terminalSocket(store.server, paired.credential);
      expect(await connectError(again)).to.equal('VND_ERR_CREDENTIAL_EXPIRED');
      again.disconnect();
    });

    it('the device credential renews access, and renewal on an open socket keeps it open', async () => {
      const paired = await store.pairTerminal('Till renew');
      const socket = await store.connect(paired.credential);
      let disconnected = false;
      socket.once('disconnect', () => (disconnected = true));
      const firstExpiry = Date.parse(paired.expiresAt);
      // Renew twice, past the first expiry, on the same socket.
      let expiresAt = firstExpiry;
      while (Date.now() < firstExpiry + 1_500) {
        await until('renewal due', () => (Date.now() >= expiresAt - 1_200 ? true : undefined), 10_000);
        const res = await renewWith(store, paired.device);
        expect(res.status, res.text).to.equal(200);
        const renewed = expectOk(await call<{ expiresAt: string }>(socket, 'credential:renew', { credential: res.json<{ credential: string }>().credential }));
        expiresAt = Date.parse(renewed.expiresAt);
      }
      expect(disconnected).to.equal(false);
      expectOk(await call(socket, 'product:lookup', { code: PEN }));
      socket.disconnect();
    });

    it('refuses to renew with an access credential, or with another terminal\'s credential on a socket', async () => {
      const a = await store.pairTerminal('Till A');
      const b = await store.pairTerminal('Till B');
      const asDevice = await renewWith(store, a.credential);
      expect(asDevice.status).to.equal(401);
      const socket = await store.connect(a.credential);
      const swapped = await call(socket, 'credential:renew', { credential: b.credential });
      expect(swapped.ok).to.equal(false);
      if (!swapped.ok) expect(swapped.error.code).to.equal('VND_ERR_UNAUTHENTICATED');
      socket.disconnect();
    });

    it('revocation cuts off the socket and the device credential at once, and changes nothing else', async () => {
      const paired = await store.pairTerminal('Till revoked');
      const socket = await store.connect(paired.credential);
      const seq = store.server.ledger.state.seq;
      const balances = JSON.stringify(store.server.ledger.state.balances);
      const dropped = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
      const res = await store.operator('POST', `/api/terminals/${paired.terminalId}/revoke`);
      expect(res.status).to.equal(200);
      await dropped;
      const renew = await renewWith(store, paired.device);
      expect(renew.status).to.equal(403);
      expect(renew.json<{ error: { code: string } }>().error.code).to.equal('VND_ERR_TERMINAL_REVOKED');
      const again = terminalSocket(store.server, paired.credential);
      expect(await connectError(again)).to.equal('VND_ERR_TERMINAL_REVOKED');
      again.disconnect();
      expect(store.server.ledger.state.seq).to.equal(seq);
      expect(JSON.stringify(store.server.ledger.state.balances)).to.equal(balances);
    });

    it('pairing again replaces both credentials: the old ones are refused', async () => {
      const first = await store.pairTerminal('Till again');
      const code = await store.operator('POST', `/api/terminals/${first.terminalId}/pairing-code`);
      expect(code.status).to.equal(200);
      const res = await tlsRequest(`${store.server.url}/pair`, { method: 'POST', ca: store.server.caPem, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: code.body.pairingCode }) });
      expect(res.status).to.equal(200);
      const old = await renewWith(store, first.device);
      expect(old.status).to.equal(401);
      expect(old.json<{ error: { code: string } }>().error.code).to.equal('VND_ERR_CREDENTIAL_REPLACED');
      const fresh = await renewWith(store, res.json<{ device: string }>().device);
      expect(fresh.status).to.equal(200);
      const again = terminalSocket(store.server, first.credential);
      // Replaced, unless its short lifetime ran out first (the expiry is checked before the pairing).
      expect(await connectError(again)).to.be.oneOf(['VND_ERR_CREDENTIAL_REPLACED', 'VND_ERR_CREDENTIAL_EXPIRED']);
      again.disconnect();
    });

    it('the terminal link renews by itself and stays connected across several lifetimes, until revoked', async () => {
      const paired = await store.pairTerminal('Till link');
      const link = new StoreLink(store.server.url, { caPem: store.server.caPem, device: paired.device, credential: paired.credential, expiresAt: paired.expiresAt });
      try {
        expect(await link.waitConnected(10_000)).to.equal(true);
        let drops = 0;
        link.onStatus((s) => {
          if (s.state !== 'connected') drops += 1;
        });
        const end = Date.parse(paired.expiresAt) + 2 * TTL_S * 1000;
        await until('three lifetimes', () => (Date.now() > end && link.accessExpiresAtMs > end - TTL_S * 1000 ? true : undefined), 60_000);
        expect(drops, 'no reconnect was needed').to.equal(0);
        expect(await link.request('product:lookup', { code: PEN })).to.have.property('name');
        await store.operator('POST', `/api/terminals/${paired.terminalId}/revoke`);
        await until('revoked', () => (link.status().state === 'revoked' ? true : undefined), 10_000);
      } finally {
        link.close();
      }
    });

    it('a link whose credential expired while it was away renews before it reconnects', async () => {
      const paired = await store.pairTerminal('Till away');
      await until('expired', () => (Date.now() > Date.parse(paired.expiresAt) ? true : undefined), 10_000);
      const link = new StoreLink(store.server.url, { caPem: store.server.caPem, device: paired.device, credential: paired.credential, expiresAt: paired.expiresAt });
      try {
        expect(await link.waitConnected(10_000)).to.equal(true);
        expect(link.accessExpiresAtMs).to.be.greaterThan(Date.now());
      } finally {
        link.close();
      }
    });
  });

  it('a connection cannot be opened without TLS to the store authority', async () => {
    const { dir, cleanup } = await tempDir('mallpos-tls-ca-');
    await initVendor({ dataDir: dir, pinHashCost: TEST_PIN_HASH_COST });
    const server = await startTestVendor(dir);
    try {
      const other = await createCertificateAuthority('Another store');
      const s = terminalSocket({ url: server.url, caPem: other.certPem }, 'anything');
      const err = await new Promise<Error>((resolve) => s.once('connect_error', resolve));
      s.disconnect();
      expect(String(err.message)).to.match(/websocket error|certificate|self.signed|unable/i);
    } finally {
      await server.close();
      await cleanup();
    }
  });

  it('the pairing answer hands out no proof when no code is pending', async () => {
    const store = await startDemoStore();
    try {
      const res = await tlsRequest(`${store.server.url}/pair/ca`, { ca: store.server.caPem });
      expect(res.json<{ proofs: string[]; ca: string }>()).to.deep.include({ proofs: [], ca: store.server.caPem });
    } finally {
      await store.close();
    }
  });
});
