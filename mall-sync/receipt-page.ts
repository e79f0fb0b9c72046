import express, { type Express, type Request, type Response } from 'express';
import { fail } from '../core/index.ts';
import { RECEIPT_QR_CHARS_MAX } from '../core/receipt-proof.ts';
import { route } from '../platform/http.ts';
import type { Logger } from '../platform/logger.ts';
import type { ReceiptVerdict, ReceiptVerifier } from './receipt-verify.ts';

/**
 * The mall's public receipt check: anyone holding a receipt may ask, so nothing here
 * needs a credential, and everything here treats its input as hostile. The input is
 * bounded (the JSON body to a few KiB, the QR text to RECEIPT_QR_CHARS_MAX), parsed
 * strictly by the verifier, and never written into HTML without escaping; a failure
 * shows a code, never a stack.
 *
 *   POST /v1/receipts/verify   {"qr": "<QR text>"}  -> the verdict as JSON
 *   GET  /receipts[?qr=...]    a small HTML page with a form, and the verdict when asked
 */
export const RECEIPT_BODY_BYTES_MAX = 8 * 1024;

export interface ReceiptRouteDeps {
  verifier: ReceiptVerifier;
  /** Brings the state up to every event committed so far (a mall on PostgreSQL). */
  caughtUp: () => Promise<void>;
  logger: Logger;
}

export function mountReceiptRoutes(app: Express, deps: ReceiptRouteDeps): void {
  const { verifier, caughtUp, logger } = deps;
  // Only a holder of the store's key can make a MISMATCH: the operator hears of each one.
  const verify = async (qr: unknown): Promise<ReceiptVerdict> => {
    const verdict = await verifier.verify(qr);
    if (verdict.verdict === 'MISMATCH') {
      logger.error({ vendor: verdict.receipt?.vendor, saleId: verdict.receipt?.saleId, kid: verdict.key?.kid, differences: verdict.sync?.differences }, 'receipt MISMATCH: a receipt signed with the store\'s key differs from the sale the mall ingested');
    }
    return verdict;
  };
  app.post(
    '/v1/receipts/verify',
    express.json({ limit: RECEIPT_BODY_BYTES_MAX, strict: true }),
    route(async (req) => {
      const body = req.body as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).length !== 1 || !Object.hasOwn(body, 'qr')) {
        fail('MALL_ERR_VALIDATION', 'send {"qr": "<the receipt\'s QR text>"}');
      }
      await caughtUp();
      return verify((body as { qr: unknown }).qr);
    }),
  );
  app.get('/receipts', (req: Request, res: Response) => {
    const raw = req.query['qr'];
    pageHeaders(res);
    if (raw === undefined) {
      res.status(200).send(page('', null));
      return;
    }
    // A repeated or nested parameter is not a receipt: the verifier says so.
    const qr: unknown = typeof raw === 'string' ? raw : null;
    caughtUp()
      .then(() => verify(qr))
      .then(
        (verdict) => {
          res.status(200).send(page(typeof qr === 'string' && qr.length <= RECEIPT_QR_CHARS_MAX ? qr : '', verdict));
        },
        (err: unknown) => {
          logger.error({ err }, 'receipt check failed');
          res.status(503).send(page('', null, 'The mall could not check this receipt just now. Try again in a moment.'));
        },
      );
  });
}

function pageHeaders(res: Response): void {
  res.type('html');
  // No script, no outside resource, no framing: the page is text, one style sheet and a form.
  res.set('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  res.set('x-content-type-options', 'nosniff');
  res.set('referrer-policy', 'no-referrer');
  res.set('cache-control', 'no-store');
}

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

const TITLES: Record<ReceiptVerdict['verdict'], string> = {
  confirmed: 'Genuine and confirmed',
  'not-yet-synced': 'Genuine, not yet synced with the mall',
  MISMATCH: 'MISMATCH: this receipt does not match the sale the store reported',
  'key-retired': 'Not valid: signed with a key retired before the sale',
  'bad-signature': 'Not valid: the signature does not verify',
  'key-revoked': 'Not valid: signed with a revoked key',
  'key-unknown': 'Not valid: signed with a key that is not the store\'s',
  'vendor-unknown': 'Not valid: unknown store',
  malformed: 'Not a mallpos receipt',
};

function page(qr: string, verdict: ReceiptVerdict | null, problem?: string): string {
  const e = escapeHtml;
  const rows: [string, string][] = [];
  if (verdict?.receipt) {
    const r = verdict.receipt;
    rows.push(['Store', `${verdict.vendorName ?? ''} (${r.vendor})`], ['Sale', r.saleId], ['Time', r.at], ['Total', `${r.totalMinor} ${r.currency} (minor units)`]);
    const tokens = Object.entries(r.debits).map(([t, n]) => `${n} ${t}`).join(', ');
    rows.push(['Tokens', tokens === '' ? 'none' : tokens], ['Cash due', `${r.cashDueMinor} ${r.currency} (minor units)`]);
  }
  if (verdict?.key) rows.push(['Key', `${verdict.key.kid} (${verdict.key.status}${verdict.key.validAtSale ? ', valid at the sale' : ', not valid at the sale'})`]);
  if (verdict?.sync) rows.push(['Batch', `${verdict.sync.batchSeq}, acknowledged ${verdict.sync.ackedAt}`], ['Event hash', verdict.sync.eventHash]);
  const cls = verdict === null ? '' : verdict.genuine ? 'ok' : 'bad';
  const result =
    verdict === null
      ? problem === undefined
        ? ''
        : `<p class="bad">${e(problem)}</p>`
      : `<h2 class="${cls}">${e(TITLES[verdict.verdict])}</h2><p>${e(verdict.message)}</p>${verdict.sync && verdict.sync.differences.length > 0 ? `<ul>${verdict.sync.differences.map((d) => `<li>${e(d)}</li>`).join('')}</ul>` : ''}${rows.length > 0 ? `<table>${rows.map(([k, v]) => `<tr><th>${e(k)}</th><td>${e(v)}</td></tr>`).join('')}</table>` : ''}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Check a receipt</title>
<style>body{font-family:sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}textarea{width:100%;font-family:monospace}.ok{color:#075e07}.bad{color:#a00000}th{text-align:left;padding-right:1rem;vertical-align:top}td{word-break:break-all}</style>
</head><body><h1>Check a receipt</h1>
<form method="get" action="/receipts"><p><label for="qr">The text of the receipt's QR code:</label></p>
<textarea id="qr" name="qr" rows="6" maxlength="${RECEIPT_QR_CHARS_MAX}">${e(qr)}</textarea>
<p><button type="submit">Check</button></p></form>
${result}
</body></html>
`;
}
