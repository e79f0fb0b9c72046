import { createServer, type Server } from 'node:https';
import { createTlsIdentity } from '../../platform/tls.ts';

/**
 * The HTTPS server a comparison server of the bench listens on: a P-256 certificate from
 * its own certificate authority (made by platform/tls.ts as `vendor-server init` makes
 * the store's) and the vendor server's TLS options, so that mallpos and what it is
 * compared with pay for the same transport. The authority is written to the directory
 * given as `--tls-dir`, where the bench reads the certificate it trusts.
 */
export async function benchHttpsServer(): Promise<Server> {
  const i = process.argv.indexOf('--tls-dir');
  const dir = i === -1 ? undefined : process.argv[i + 1];
  if (dir === undefined) throw new Error('usage: a bench server needs --tls-dir DIR');
  const tls = await createTlsIdentity(dir, 'mallpos bench server', []);
  return createServer({ key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' });
}
