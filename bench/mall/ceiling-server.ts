/**
 * The ceiling: the least any mall must do with a batch before it can ack it, and
 * nothing more. The same HTTP path and body parser as mall-sync (express.json with the
 * mall's body limit), then: the vendor's key by kid, flattenedVerify (EdDSA), JSON.parse
 * of the payload, and verifyBatchEvents (sha256 of every event's text, each event parsed,
 * seqs, prev links and totals). No registry, no judging, no ack signature, no storage.
 *
 * It serves HTTPS like the mall (same TLS options, a P-256 certificate from its own
 * certificate authority, made by platform/tls.ts as `mall-sync init` makes the mall's), so
 * both sides of the comparison pay for the same transport.
 *
 *   node --import tsx bench/mall/ceiling-server.ts <keys.json> <tls-dir>
 *
 * keys.json maps kid -> public JWK; the authority and certificate are written to tls-dir
 * (the bench trusts tls-dir/ca-cert.pem). Listens on 127.0.0.1 on an ephemeral port and
 * prints {"port":N}; exits when its parent (the bench) is gone.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { flattenedVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import { verifyBatchEvents, type BatchPayload, type FlattenedJws } from '../../core/index.ts';
import { BATCH_BODY_BYTES_MAX } from '../../mall-sync/config.ts';
import { createTlsIdentity } from '../../platform/tls.ts';
import { exitWithParent } from './exit-with-parent.ts';

const keysFile = process.argv[2];
const tlsDir = process.argv[3];
if (keysFile === undefined || tlsDir === undefined) {
  console.error('usage: ceiling-server.ts <keys.json> <tls-dir>');
  process.exit(2);
}
const jwks = JSON.parse(readFileSync(keysFile, 'utf8')) as Record<string, JWK>;
const keys = new Map<string, CryptoKey>();
for (const [kid, jwk] of Object.entries(jwks)) keys.set(kid, (await importJWK(jwk, 'EdDSA')) as CryptoKey);
const decoder = new TextDecoder('utf-8', { fatal: true });

const app = express();
app.disable('x-powered-by');
app.post('/v1/batches', express.json({ limit: BATCH_BODY_BYTES_MAX, strict: true, type: () => true }), (req: Request, res: Response, next: NextFunction) => {
  const jws = req.body as FlattenedJws;
  const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString('utf8')) as { kid?: string };
  const key = keys.get(header.kid ?? '');
  if (key === undefined) {
    res.status(401).json({ error: 'unknown kid' });
    return;
  }
  // A throw while checking the payload must become an answer, not an unhandled rejection.
  flattenedVerify(jws, key, { algorithms: ['EdDSA'] })
    .then(({ payload }) => {
      const batch = JSON.parse(decoder.decode(payload)) as BatchPayload;
      // The payload is canonical JSON, so each token's totals arrive as {events, units};
      // verifyBatchEvents compares them in the order batchTotals builds them, {units, events}
      // (the mall gets that order from its payload schema): a handful of objects per batch.
      const totals = Object.create(null) as BatchPayload['totals'];
      for (const [token, t] of Object.entries(batch.totals)) totals[token] = { units: t.units, events: t.events };
      batch.totals = totals;
      const verified = verifyBatchEvents(batch, null);
      res.status(200).type('application/json').send(`{"events":${verified.events.length},"lastHash":"${verified.lastHash}"}`);
    })
    .catch(next);
});
app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
  res.status(400).json({ error: (err as Error).message });
});

const tls = await createTlsIdentity(tlsDir, 'mallpos bench ceiling', []);
const http = createServer({ key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' }, app);
http.requestTimeout = 60_000;
http.headersTimeout = 20_000;
const stop = () => {
  http.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();
http.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (http.address() as AddressInfo).port }));
});
