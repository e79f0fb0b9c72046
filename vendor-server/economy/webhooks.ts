import { createHmac, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { fail, MallposError, parse } from '../../core/index.ts';
import { paymentWebhookBody } from '../../core/economy-requests.ts';
import { route } from '../../platform/http.ts';
import type { Logger } from '../../platform/logger.ts';
import type { LedgerService } from '../ledger/service.ts';
import type { VendorMetrics } from '../metrics.ts';
import { toWireError } from '../terminal-socket.ts';
import { creditOnlinePayment } from './token-sales.ts';
import { acceptedSecrets, WebhookSecrets } from './webhook-secret.ts';

/**
 * `POST /webhooks/payments`: the payment provider tells the store that a customer paid
 * online for tokens (claim 32). Outside the operator API's bearer credential: the
 * notification proves itself by its signature, made the way common payment providers
 * make theirs:
 *   Mallpos-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 * checked over the raw body bytes as they arrived, with a constant-time compare, the time
 * within `WEBHOOK_TOLERANCE_S` of the server's clock (so a captured delivery cannot be
 * replayed later, and one replayed within the window credits nothing twice: the payment
 * id is the idempotency key). The answer is 200 only once the credit is on disk.
 */
export const WEBHOOK_PATH = '/webhooks/payments';
export const WEBHOOK_TOLERANCE_S = 300;
export const WEBHOOK_BODY_BYTES_MAX = 16 * 1024;
export const SIGNATURE_HEADER = 'mallpos-signature';
/** A header listing more v1 signatures than this is refused rather than tried one by one. */
const SIGNATURES_MAX = 4;

export interface WebhookDeps {
  dataDir: string;
  ledger: LedgerService;
  logger: Logger;
  metrics: VendorMetrics;
  clock?: () => number;
}

/** The signature over a body at a time: lower-case hex, as the header carries it. */
export function webhookSignature(secret: string, t: number | string, rawBody: Buffer | string): string {
  return createHmac('sha256', secret).update(`${String(t)}.`).update(rawBody).digest('hex');
}

/** The header's timestamp and v1 signatures, or null when it is not of the form. */
function parseSignatureHeader(header: string | undefined): { t: number; v1: Buffer[] } | null {
  if (header === undefined || header.length > 1024) return null;
  let t: number | null = null;
  const v1: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) return null;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === 't') {
      if (t !== null || !/^[0-9]{1,12}$/.test(value)) return null;
      t = Number(value);
    } else if (name === 'v1') {
      if (!/^[0-9a-f]{64}$/.test(value) || v1.length >= SIGNATURES_MAX) return null;
      v1.push(Buffer.from(value, 'hex'));
    }
    // Other schemes (v0, future versions) are ignored, as providers' own libraries do.
  }
  return t === null || v1.length === 0 ? null : { t, v1 };
}

function verify(secrets: string[], header: { t: number; v1: Buffer[] }, raw: Buffer): boolean {
  let ok = false;
  for (const secret of secrets) {
    const expected = Buffer.from(webhookSignature(secret, header.t, raw), 'hex');
    // Every candidate is compared, so the time taken does not say which one matched.
    for (const given of header.v1) if (timingSafeEqual(expected, given)) ok = true;
  }
  return ok;
}

export function paymentWebhookRouter(deps: WebhookDeps): express.Router {
  const router = express.Router();
  const now = deps.clock ?? Date.now;
  const secrets = new WebhookSecrets(deps.dataDir);
  router.post(
    WEBHOOK_PATH,
    express.raw({ type: () => true, limit: WEBHOOK_BODY_BYTES_MAX }),
    route(async (req: Request) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const header = parseSignatureHeader(req.header(SIGNATURE_HEADER));
      if (header === null) fail('VND_ERR_WEBHOOK_SIGNATURE', `send the signature as "Mallpos-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>"`);
      const file = await secrets.current();
      if (file === null) fail('VND_ERR_CONFIG', 'this store has no webhook secret: create one with "vendor-server webhook-secret"');
      const nowMs = now();
      if (!verify(acceptedSecrets(file, nowMs), header, raw)) {
        deps.logger.warn({ path: WEBHOOK_PATH, from: req.socket.remoteAddress }, 'payment notification with a wrong signature refused');
        fail('VND_ERR_WEBHOOK_SIGNATURE', 'the signature does not match the body with the store\'s webhook secret');
      }
      // Checked after the signature, so the time in the header is the sender's own.
      if (Math.abs(nowMs / 1000 - header.t) > WEBHOOK_TOLERANCE_S) {
        deps.logger.warn({ path: WEBHOOK_PATH, t: header.t }, 'payment notification outside the time window refused');
        fail('VND_ERR_WEBHOOK_SIGNATURE', `the notification is signed at ${header.t}, more than ${WEBHOOK_TOLERANCE_S} s from the store's clock`);
      }
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        return fail('CORE_ERR_VALIDATION', 'the notification body is not JSON');
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('CORE_ERR_VALIDATION', 'the notification body is not a JSON object');
      const body = parse(paymentWebhookBody, json);
      const ack = await creditOnlinePayment(deps.ledger, body);
      deps.logger.info({ paymentId: body.paymentId, provider: body.provider, seq: ack.seq, token: ack.token, units: ack.units }, 'online purchase credited');
      return ack;
    }),
  );
  // The webhook's own refusals, in the store's error shape, before anything else sees the request.
  router.use(WEBHOOK_PATH, (err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string };
    let wire;
    let status: number;
    if (e.type === 'entity.too.large') {
      wire = { code: 'VND_ERR_PAYLOAD_TOO_LARGE', message: `a notification is at most ${WEBHOOK_BODY_BYTES_MAX} bytes` };
      status = 413;
    } else {
      wire = toWireError(err, deps.logger);
      status = err instanceof MallposError ? err.status : 500;
    }
    deps.metrics.rejected.inc({ code: wire.code });
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json({ error: wire });
  });
  return router;
}
