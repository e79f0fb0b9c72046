import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fail, MallposError } from '../core/index.ts';
import { isCertificateError, isSelfSignedAuthority, writeSecretFile, pairingProof, pairingProofKey, proofMatches, spkiSha256, tlsRequest, TlsRequestError, type TlsResponse } from '../platform/tls.ts';

/**
 * What pairing leaves on the terminal's disk (0600): the store's address, the store's
 * certificate authority pinned at pairing (and its key's SHA-256, to name it in
 * messages), the long-lived device credential, and the last access credential.
 */
export const credentialSchema = z.strictObject({
  format: z.literal(2),
  server: z.string().url().startsWith('https://'),
  terminalId: z.string().min(1).max(40),
  name: z.string().min(1).max(80),
  vendorId: z.string().min(1).max(40),
  storeName: z.string().min(1).max(80),
  caPem: z.string().min(100).max(16 * 1024),
  caSpkiSha256: z.string().min(43).max(43),
  device: z.string().min(10).max(4096),
  /** The access credential at pairing; the link renews it from the device credential. */
  credential: z.string().min(10).max(4096),
  expiresAt: z.string(),
  pairedAt: z.string(),
});

export type TerminalCredential = z.output<typeof credentialSchema>;

/** What the link needs to reach its store: the pinned authority and the two credentials. */
export type LinkCredentials = Pick<TerminalCredential, 'caPem' | 'device' | 'credential' | 'expiresAt'>;

export const PAIR_TIMEOUT_MS = 10_000;

export function credentialPath(dataDir: string): string {
  return join(dataDir, 'credential.json');
}

function normaliseCode(code: string): string {
  return code.trim().toUpperCase();
}

function offline(base: string, err: unknown): never {
  return fail('POS_ERR_OFFLINE', `cannot reach the store server at ${base}: ${(err as Error).message}`);
}

function errorOf(res: TlsResponse): string {
  try {
    return res.json<{ error?: { message?: string } }>().error?.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

/**
 * Learns the store's certificate authority without trusting the network: the first
 * request sends nothing secret over a connection that is not yet verified, and the
 * authority it gets is pinned only if the store proves, with an HMAC keyed by a slow
 * hash of the pairing code, that it knows the code. A listener in the middle cannot
 * make that proof for its own certificate, so pairing stops before the code is sent.
 */
export async function fetchPinnedAuthority(base: string, code: string): Promise<{ caPem: string; spki: string }> {
  let res: TlsResponse;
  try {
    res = await tlsRequest(`${base}/pair/ca`, { insecure: true, timeoutMs: PAIR_TIMEOUT_MS, bodyBytesMax: 64 * 1024 });
  } catch (err) {
    offline(base, err);
  }
  let body: { ca?: unknown; proofs?: unknown };
  try {
    body = res.json();
  } catch {
    body = {};
  }
  const caPem = body.ca;
  const proofs = body.proofs;
  if (!res.ok || typeof caPem !== 'string' || caPem.length > 16 * 1024 || !Array.isArray(proofs) || !isSelfSignedAuthority(caPem)) {
    fail('POS_ERR_STORE_IDENTITY', `${base} did not answer with a store certificate authority: is it a mallpos store server?`);
  }
  const codeHash = createHash('sha256').update(normaliseCode(code)).digest('hex');
  const expected = pairingProof(await pairingProofKey(codeHash, caPem), caPem);
  if (!proofs.some((p) => typeof p === 'string' && proofMatches(expected, p))) {
    fail('POS_ERR_STORE_IDENTITY', `the server at ${base} could not prove it knows this pairing code: the code is wrong or expired, or something on the network is impersonating the store. Nothing was sent.`);
  }
  return { caPem, spki: spkiSha256(caPem) };
}

/**
 * Pairs the terminal: pins the store's authority (see fetchPinnedAuthority), then
 * redeems the one-time code over a connection that trusts only that authority, and
 * stores the credentials.
 */
export async function pairTerminal(dataDir: string, server: string, code: string): Promise<TerminalCredential> {
  const base = server.replace(/\/+$/, '');
  if (!base.startsWith('https://')) fail('POS_ERR_CONFIG', `the store server is reached over TLS: use an https:// address, not ${base}`);
  const { caPem, spki } = await fetchPinnedAuthority(base, code);
  let res: TlsResponse;
  try {
    res = await tlsRequest(`${base}/pair`, {
      method: 'POST',
      ca: caPem,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code }),
      timeoutMs: PAIR_TIMEOUT_MS,
      bodyBytesMax: 64 * 1024,
    });
  } catch (err) {
    if (isCertificateError(err)) fail('POS_ERR_STORE_IDENTITY', `the server at ${base} changed its certificate during pairing: ${(err as Error).message}`);
    offline(base, err);
  }
  const body = (() => {
    try {
      return res.json<Record<string, unknown>>();
    } catch {
      return null;
    }
  })();
  if (!res.ok || body === null) fail('POS_ERR_NOT_PAIRED', `pairing refused: ${errorOf(res)}`);
  const parsed = credentialSchema.safeParse({
    format: 2,
    server: base,
    terminalId: body['terminalId'],
    name: body['name'],
    vendorId: body['vendorId'],
    storeName: body['storeName'],
    caPem,
    caSpkiSha256: spki,
    device: body['device'],
    credential: body['credential'],
    expiresAt: body['expiresAt'],
    pairedAt: new Date().toISOString(),
  });
  if (!parsed.success) fail('POS_ERR_NOT_PAIRED', 'pairing answer is incomplete: is the store server up to date?');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeSecretFile(credentialPath(dataDir), `${JSON.stringify(parsed.data, null, 2)}\n`);
  return parsed.data;
}

export async function loadCredential(dataDir: string): Promise<TerminalCredential> {
  let text: string;
  try {
    text = await readFile(credentialPath(dataDir), 'utf8');
  } catch {
    fail('POS_ERR_NOT_PAIRED', `this terminal is not paired: run "pos-terminal pair --server https://HOST:8600 --code CODE --data-dir ${dataDir}"`);
  }
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  const parsed = credentialSchema.safeParse(json);
  if (!parsed.success) fail('POS_ERR_CONFIG', `${credentialPath(dataDir)} is not a valid credential file (it may come from a version without TLS): pair again`);
  return parsed.data;
}

/**
 * Gets a fresh access credential with the device credential, over a connection that
 * trusts only the pinned authority. A refusal (revoked, re-paired) is a RemoteRefusal;
 * no answer is an offline error.
 */
export async function renewAccessCredential(server: string, creds: Pick<LinkCredentials, 'caPem' | 'device'>, timeoutMs = PAIR_TIMEOUT_MS): Promise<{ credential: string; expiresAtMs: number }> {
  let res: TlsResponse;
  try {
    res = await tlsRequest(`${server}/terminal/credential`, {
      method: 'POST',
      ca: creds.caPem,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device: creds.device }),
      timeoutMs,
      bodyBytesMax: 64 * 1024,
    });
  } catch (err) {
    if (err instanceof TlsRequestError && isCertificateError(err)) {
      throw new MallposError('POS_ERR_STORE_IDENTITY', `the server at ${server} does not present the certificate this terminal pinned at pairing`);
    }
    throw new MallposError('POS_ERR_OFFLINE', `cannot reach the store server at ${server}: ${(err as Error).message}`);
  }
  let body: { credential?: unknown; expiresAt?: unknown; error?: { code?: unknown; message?: unknown } } = {};
  try {
    body = res.json();
  } catch {
    body = {};
  }
  if (!res.ok || typeof body.credential !== 'string' || typeof body.expiresAt !== 'string') {
    throw new RenewRefused(typeof body.error?.code === 'string' ? body.error.code : `HTTP_${res.status}`, typeof body.error?.message === 'string' ? body.error.message : `HTTP ${res.status}`);
  }
  return { credential: body.credential, expiresAtMs: Date.parse(body.expiresAt) };
}

/** The store answered and refused to renew (revoked, paired again, unknown). */
export class RenewRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RenewRefused';
  }
}
