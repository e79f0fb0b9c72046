import { Agent, request } from 'node:http';
import { Agent as TlsAgent, request as tlsRequest } from 'node:https';
import { nextBatch, type SignedBatch, type SimVendor } from './vendors.ts';

/**
 * The bench's senders: each vendor pushes its batches in order, one in flight at a time,
 * as vendor-server/sync does; at most `concurrency` vendors have a batch in flight
 * together. One keep-alive connection per sender, POST /v1/batches with the JWS as the
 * body, and every answer is checked before the vendor sends its next batch.
 */

const REQUEST_TIMEOUT_MS = 120_000;
/** An ack is well under 1 kB; an error body is short. Anything longer is cut. */
const RESPONSE_CHARS_MAX = 64 * 1024;

export interface Target {
  name: string;
  url: string;
  /** Several servers behind one name (mall workers on one database): vendor i sends to urls[i % n]. */
  urls?: readonly string[] | undefined;
  /** The certificate authority an https:// target is trusted by (the mall serves TLS only). */
  ca?: string | undefined;
  /** Throws when the answer is not the one this target gives to an accepted batch. */
  check: (batch: SignedBatch, status: number, text: string, retried?: boolean) => void;
}

export interface BatchSource {
  /** The vendor's next batch, or null once it has sent what it was given. */
  next(): Promise<SignedBatch | null>;
}

export function listSource(list: readonly SignedBatch[]): BatchSource {
  let i = 0;
  return { next: () => Promise.resolve(list[i++] ?? null) };
}

/** Cuts and signs the vendor's batches as they are needed (for fills, whose batches would not fit in memory). */
export function generatedSource(vendor: SimVendor, batches: number): BatchSource {
  let left = batches;
  return {
    next: () => {
      if (left <= 0) return Promise.resolve(null);
      left -= 1;
      return nextBatch(vendor);
    },
  };
}

export interface Sent {
  batches: number;
  events: number;
  ms: number;
}

function post(agent: Agent, url: URL, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? tlsRequest : request)(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < RESPONSE_CHARS_MAX) text += chunk.slice(0, RESPONSE_CHARS_MAX - text.length);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sends every source's batches to the target and resolves with the wall time from the
 * first request to the last answer. The first refused batch stops all senders.
 */
export async function drive(target: Target, sources: readonly BatchSource[], concurrency: number): Promise<Sent> {
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new Error(`assertion failed: concurrency ${concurrency} is a positive integer`);
  const urls = (target.urls ?? [target.url]).map((u) => new URL('/v1/batches', u));
  const url = urls[0] as URL;
  const agent = url.protocol === 'https:' ? new TlsAgent({ keepAlive: true, maxSockets: concurrency, ca: target.ca }) : new Agent({ keepAlive: true, maxSockets: concurrency });
  const ready = sources.map((_, i) => i);
  let batches = 0;
  let events = 0;
  let failed: Error | null = null;
  const worker = async () => {
    for (;;) {
      const i = ready.shift();
      if (i === undefined || failed !== null) return;
      const batch = await (sources[i] as BatchSource).next();
      if (batch === null) continue;
      let answer: { status: number; text: string };
      try {
        let retried = false;
        try {
          answer = await post(agent, urls[i % urls.length] as URL, batch.body);
        } catch (err) {
          // A keep-alive socket the server closed as it was reused: the same batch once more on a new one (a replay is fine then).
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ECONNRESET' && code !== 'EPIPE' && !/socket hang up/.test((err as Error).message)) throw err;
          retried = true;
          answer = await post(agent, urls[i % urls.length] as URL, batch.body);
        }
        target.check(batch, answer.status, answer.text, retried);
      } catch (err) {
        failed ??= new Error(`${target.name}: batch ${batch.seq} of ${batch.vendor}: ${(err as Error).message}`, { cause: err });
        return;
      }
      batches += 1;
      events += batch.events;
      ready.push(i);
    }
  };
  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, sources.length) }, worker));
  } finally {
    agent.destroy();
  }
  const ms = performance.now() - started;
  if (failed !== null) throw failed;
  return { batches, events, ms };
}

interface AckBody {
  ack?: { payload?: unknown };
  replayed?: unknown;
}

/** The mall accepts a batch with 200 and its signed ack: for this batch, not a replay, nothing flagged. */
export function checkMallAck(batch: SignedBatch, status: number, text: string, retried = false): void {
  if (status !== 200) throw new Error(`HTTP ${status}: ${text.slice(0, 500)}`);
  const body = JSON.parse(text) as AckBody;
  if (body.replayed !== false && !(retried && body.replayed === true)) throw new Error('the mall answered with a replayed ack: the batch was sent before');
  if (typeof body.ack?.payload !== 'string') throw new Error(`the answer holds no ack: ${text.slice(0, 200)}`);
  const ack = JSON.parse(Buffer.from(body.ack.payload, 'base64url').toString('utf8')) as { vendor: string; seq: number; batchHash: string; lastEventHash: string; events: number; flagged: unknown[] };
  if (ack.vendor !== batch.vendor || ack.seq !== batch.seq || ack.batchHash !== batch.hash || ack.events !== batch.events || ack.lastEventHash !== batch.lastEventHash) {
    throw new Error(`the ack does not match the batch: ${JSON.stringify(ack).slice(0, 300)}`);
  }
  if (ack.flagged.length !== 0) throw new Error(`the mall flagged ${ack.flagged.length} events, the bench sends only valid sales: ${JSON.stringify(ack.flagged[0]).slice(0, 300)}`);
}

/** The ceiling answers 200 with the count and the last event hash it computed. */
export function checkCeilingAnswer(batch: SignedBatch, status: number, text: string): void {
  if (status !== 200) throw new Error(`HTTP ${status}: ${text.slice(0, 500)}`);
  const body = JSON.parse(text) as { events?: unknown; lastHash?: unknown };
  if (body.events !== batch.events || body.lastHash !== batch.lastEventHash) throw new Error(`the ceiling did not hash the batch's events: ${text.slice(0, 200)}`);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('assertion failed: median of at least one value');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
