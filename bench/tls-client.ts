import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tlsRequest } from '../platform/tls.ts';

/**
 * The benchmarks' side of TLS: every server a bench starts (mallpos and its comparison
 * servers alike) has its own certificate authority, and the bench reaches each one
 * trusting that authority and nothing else, as a paired terminal or a linked store does.
 */
const authorities = new Map<string, string>();

export function trustAuthority(url: string, caPem: string): void {
  authorities.set(new URL(url).origin, caPem);
}

export function authorityFor(url: string): string {
  const ca = authorities.get(new URL(url).origin);
  if (ca === undefined) throw new Error(`no certificate authority registered for ${new URL(url).origin}`);
  return ca;
}

/** Trusts the authority a server keeps in `<dir>/ca-cert.pem` (a data directory's `tls/`, or a comparison server's own). */
export async function trustAuthorityFile(url: string, dir: string): Promise<string> {
  const caPem = await readFile(join(dir, 'ca-cert.pem'), 'utf8');
  trustAuthority(url, caPem);
  return caPem;
}

/** Trusts the authority a server keeps in `<dataDir>/tls/ca-cert.pem` for its URL. */
export function trustDataDir(url: string, dataDir: string): Promise<string> {
  return trustAuthorityFile(url, join(dataDir, 'tls'));
}

export interface TlsFetchResponse {
  status: number;
  ok: boolean;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

/** A GET or POST to one of the bench's HTTPS servers, trusting only its registered authority. */
export async function fetchTls(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<TlsFetchResponse> {
  const res = await tlsRequest(url, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body === undefined ? {} : { body: init.body }),
    ...(init.timeoutMs === undefined ? {} : { timeoutMs: init.timeoutMs }),
    ca: authorityFor(url),
  });
  return { status: res.status, ok: res.ok, text: () => Promise.resolve(res.text), json: () => Promise.resolve(res.json()) };
}
