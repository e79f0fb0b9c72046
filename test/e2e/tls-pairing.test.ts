import { stat } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { MallposError } from '../../core/index.ts';
import { createCertificateAuthority, issueServerCertificate, serverNames, tlsRequest } from '../../platform/tls.ts';
import { credentialPath, pairTerminal } from '../../terminal/credential.ts';
import { startDemoStore, tempDir, type DemoStore } from '../helpers/vendor.ts';

interface Mitm {
  url: string;
  /** Every request the listener could read, in clear: method, path and body. */
  seen: string[];
  close(): Promise<void>;
}

/**
 * A listener in the middle with its own certificate authority: it terminates the
 * terminal's TLS with a certificate for the same names, reads everything, and forwards
 * to the real store (trusting the store's authority). With `swapAuthority` it also
 * replaces the authority in the pairing answer by its own while keeping the store's
 * proofs, the best it can do without the code.
 */
async function startMitm(store: DemoStore, opts: { swapAuthority: boolean }): Promise<Mitm> {
  const ca = await createCertificateAuthority('Not the store');
  const cert = await issueServerCertificate(ca, serverNames([]));
  const seen: string[] = [];
  const server: Server = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      tlsRequest(`${store.server.url}${req.url}`, {
        method: req.method ?? 'GET',
        ca: store.server.caPem,
        ...(body === '' ? {} : { body, headers: { 'content-type': 'application/json' } }),
      }).then(
        (real) => {
          let text = real.text;
          if (opts.swapAuthority && req.url === '/pair/ca') text = JSON.stringify({ ...real.json<object>(), ca: ca.certPem });
          res.writeHead(real.status, { 'content-type': 'application/json' }).end(text);
        },
        () => res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function pairingRefused(run: () => Promise<unknown>): Promise<MallposError> {
  try {
    await run();
  } catch (err) {
    if (err instanceof MallposError) return err;
    throw err;
  }
  throw new Error('pairing went through');
}

describe('e2e: pairing pins the store certificate against a listener in the middle', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let cleanups: (() => Promise<void>)[] = [];

  beforeEach(async () => {
    cleanups = [];
    store = await startDemoStore();
    cleanups.push(() => store.close());
  });
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  async function newCode(): Promise<{ terminalId: string; code: string }> {
    const created = await store.operator('POST', '/api/terminals', { name: 'Till MITM' });
    expect(created.status).to.equal(200);
    return { terminalId: created.body.terminalId as string, code: created.body.pairingCode as string };
  }

  async function terminalDir(): Promise<string> {
    const { dir, cleanup } = await tempDir('mallpos-mitm-term-');
    cleanups.push(cleanup);
    return dir;
  }

  for (const swapAuthority of [false, true]) {
    const how = swapAuthority ? 'passes its own authority off as the store\'s' : 'presents its own certificate';
    it(`refuses to pair through a listener that ${how}, and sends it nothing secret`, async () => {
      const mitm = await startMitm(store, { swapAuthority });
      cleanups.push(() => mitm.close());
      const { terminalId, code } = await newCode();
      const dir = await terminalDir();
      const seqBefore = store.server.ledger.state.seq;

      const err = await pairingRefused(() => pairTerminal(dir, mitm.url, code));
      expect(err.code).to.equal('POS_ERR_STORE_IDENTITY');

      // The listener saw only the request for the authority: never the code, never a redemption.
      expect(mitm.seen).to.deep.equal(['GET /pair/ca ']);
      expect(mitm.seen.join('\n')).not.to.include(code);
      expect(await stat(credentialPath(dir)).then(() => true, () => false)).to.equal(false);
      // The code was not used up: the terminal pairs with the real store afterwards.
      expect(store.server.access.terminal(terminalId).pairedAt).to.equal(null);
      expect(store.server.ledger.state.seq).to.equal(seqBefore);
      const paired = await pairTerminal(dir, store.server.url, code);
      expect(paired.terminalId).to.equal(terminalId);
      expect(paired.caPem).to.equal(store.server.caPem);
    });
  }

  it('refuses when the store answers but the code is not one of its pending codes', async () => {
    await newCode();
    const dir = await terminalDir();
    const err = await pairingRefused(() => pairTerminal(dir, store.server.url, 'ABCDEFGH'));
    expect(err.code).to.equal('POS_ERR_STORE_IDENTITY');
  });

  it('refuses a plain http:// address before sending anything', async () => {
    const { code } = await newCode();
    const dir = await terminalDir();
    const err = await pairingRefused(() => pairTerminal(dir, store.server.url.replace('https://', 'http://'), code));
    expect(err.code).to.equal('POS_ERR_CONFIG');
  });

  it('pins the authority on disk, readable by the terminal only', async () => {
    const { code } = await newCode();
    const dir = await terminalDir();
    const paired = await pairTerminal(dir, store.server.url, code);
    expect(paired.caPem).to.equal(store.server.caPem);
    expect(paired.device).to.be.a('string');
    expect((await stat(join(dir, 'credential.json'))).mode & 0o777).to.equal(0o600);
  });
});
