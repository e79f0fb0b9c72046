/**
 * The ceiling: the least any mall must do with a batch before it can ack it, and
 * nothing more. The same HTTP path and body parser as mall-sync (express.json with the
 * mall's body limit), then: the vendor's key by kid, flattenedVerify (EdDSA), JSON.parse
 * of the payload, and verifyBatchEvents (sha256 of every event's text, each event parsed,
 * seqs, prev links and totals). No registry, no judging, no ack signature, no storage.
 *
 *   node --import tsx bench/mall/ceiling-server.ts <keys.json>
 *
 * keys.json maps kid -> public JWK. Listens on 127.0.0.1 on an ephemeral port and prints
 * {"port":N}; exits when its parent (the bench) is gone.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { flattenedVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import { verifyBatchEvents, type BatchPayload, type FlattenedJws } from '../../core/index.ts';
import { BATCH_BODY_BYTES_MAX } from '../../mall-sync/config.ts';
import { exitWithParent } from './exit-with-parent.ts';

const keysFile = process.argv[2];
if (keysFile === undefined) {
  console.error('usage: ceiling-server.ts <keys.json>');
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
  flattenedVerify(jws, key, { algorithms: ['EdDSA'] }).then(
    ({ payload }) => {
      const batch = JSON.parse(decoder.decode(payload)) as BatchPayload;
      const verified = verifyBatchEvents(batch, null);
      res.status(200).type('application/json').send(`{"events":${verified.events.length},"lastHash":"${verified.lastHash}"}`);
    },
    (err: unknown) => next(err),
  );
});
app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
  res.status(400).json({ error: (err as Error).message });
});

const http = createServer(app);
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
