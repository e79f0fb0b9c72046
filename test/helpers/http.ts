import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keepAliveAgent, tlsRequest } from '../../platform/tls.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field in tests
export type Json = any;

export interface HttpResult {
  status: number;
  body: Json;
  text: string;
}

/**
 * The certificate authorities tests trust, by origin (https://host:port). Every server
 * in a test has its own authority; the helpers that start one register it here, so
 * that a test reaches it the way a paired terminal or a linked store would: trusting
 * that authority and nothing else.
 */
const authorities = new Map<string, string>();

export function trustAuthority(url: string, caPem: string): void {
  authorities.set(new URL(url).origin, caPem);
}

export function authorityFor(url: string): string {
  const ca = authorities.get(new URL(url).origin);
  if (ca === undefined) throw new Error(`no certificate authority registered for ${new URL(url).origin}: start the server through a test helper`);
  return ca;
}

/** The authority registered for the URL's origin, if any (plain-HTTP comparison servers have none). */
export function authorityIfKnown(url: string): string | undefined {
  return authorities.get(new URL(url).origin);
}

/** Trusts the authority a server keeps in `<dataDir>/tls/ca-cert.pem` for its URL. */
export async function trustDataDir(url: string, dataDir: string): Promise<string> {
  const caPem = await readFile(join(dataDir, 'tls', 'ca-cert.pem'), 'utf8');
  trustAuthority(url, caPem);
  return caPem;
}

/** A Response-like answer, so tests read HTTPS answers as they would fetch's. */
export interface TlsFetchResponse {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<Json>;
}

/**
 * The connections of the tests' HTTPS requests, kept open between requests as a browser
 * or an API client keeps them: a test that sends thousands of requests pays a TLS
 * handshake per server, not per request. The agent keeps a pool per origin and trusted
 * authority (`keepAliveAgent`).
 */
const keepAlive = keepAliveAgent();

/**
 * `fetch` for the project's HTTPS servers: trusts only the authority registered for the
 * URL's origin. Plain http:// (the benchmarks' comparison servers) goes to fetch.
 */
export async function fetchTls(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal } = {}): Promise<TlsFetchResponse> {
  if (url.startsWith('http://')) return fetch(url, init);
  const res = await tlsRequest(url, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body === undefined ? {} : { body: init.body }),
    ca: authorityFor(url),
    agent: keepAlive,
  });
  return {
    status: res.status,
    ok: res.ok,
    headers: {
      get(name) {
        const v = res.headers[name.toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
      },
    },
    text: () => Promise.resolve(res.text),
    json: () => Promise.resolve(JSON.parse(res.text) as Json),
  };
}

/** One HTTP request with a JSON (or raw string) body; the answer parsed when it is JSON. */
export async function http(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const init = {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  };
  const res = url.startsWith('https://') ? await fetchTls(url, init) : await fetch(url, init);
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, text };
}
