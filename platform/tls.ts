import { createHash, createHmac, randomBytes, timingSafeEqual, webcrypto, X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { dirname, join } from 'node:path';
import type * as X509 from '@peculiar/x509';
import { fail, MallposError, type ErrorCode } from '../core/index.ts';
import { scryptQueued } from './scrypt.ts';
import { writeFileDurable } from './storage/index.ts';

/**
 * TLS for the store network: a certificate authority per process that serves TLS (the
 * vendor server, the mall), a server certificate it signs for the configured host names
 * and addresses, and the pieces a client needs to pin that authority.
 *
 * Keys are ECDSA P-256: every TLS stack speaks it, and a key pair costs well under a
 * millisecond, so tests can make fresh authorities freely.
 */

type X509Lib = typeof X509;
let x509Loading: Promise<X509Lib> | null = null;

/**
 * @peculiar/x509 is loaded only where certificates are made (init, re-issue): it takes
 * most of a second to load, and servers and terminals that only read certificates (with
 * node:crypto) should not pay for it at every start. It needs the Reflect metadata API,
 * which Node does not have, loaded first. Imported as CommonJS (its build for Node, and
 * what a bundle's chunk of it exports), its exports are the module's `default`.
 */
function x509Lib(): Promise<X509Lib> {
  x509Loading ??= (async () => {
    await import('reflect-metadata');
    const imported = await import('@peculiar/x509');
    const lib = (imported.default as X509Lib | undefined) ?? imported;
    lib.cryptoProvider.set(webcrypto as unknown as Crypto);
    return lib;
  })();
  return x509Loading;
}

const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Long enough that a store never has to think about it; the authority key stays on the store's disk. */
export const CA_VALID_DAYS = 20 * 365;
/** Server certificates are re-issued from the authority at start when they come this close to expiry. */
export const SERVER_CERT_VALID_DAYS = 397;
export const SERVER_CERT_RENEW_DAYS = 30;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface TlsPaths {
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}

export function tlsPaths(dir: string): TlsPaths {
  return {
    caCert: join(dir, 'ca-cert.pem'),
    caKey: join(dir, 'ca-key.pem'),
    cert: join(dir, 'server-cert.pem'),
    key: join(dir, 'server-key.pem'),
  };
}

/** What a server needs to listen with TLS, and the authority its clients pin. */
export interface TlsIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
  names: string[];
}

function serial(): string {
  // A positive 128-bit serial: the high bit cleared so that DER never reads it as negative.
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return (await x509Lib()).PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  const der = (await x509Lib()).PemConverter.decode(pem)[0];
  if (der === undefined) throw new Error('no PEM block');
  return (await webcrypto.subtle.importKey('pkcs8', der, EC_ALGORITHM, false, ['sign'])) as unknown as CryptoKey;
}

function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']) as unknown as Promise<CryptoKeyPair>;
}

/** A new self-signed certificate authority that may sign server certificates only. */
export async function createCertificateAuthority(commonName: string, now = new Date()): Promise<PemPair> {
  const x509 = await x509Lib();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: [commonName] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_VALID_DAYS * DAY_MS),
    signingAlgorithm: EC_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/** The names a server certificate always lists, so that local clients and tests can reach it. */
export const LOCAL_NAMES = ['localhost', '127.0.0.1', '::1'];

/** One spelling per name: lower case, IPv6 addresses compressed as URLs write them. */
function normaliseName(name: string): string {
  const n = name.trim().toLowerCase();
  // An IPv6 address in its shortest form, as the URL parser writes it; a name with no
  // colon is none (and is not given to isIP, whose IPv6 pattern costs a process about
  // fifteen milliseconds to compile at its first use).
  if (!n.includes(':')) return n;
  try {
    return new URL(`http://[${n}]/`).hostname.slice(1, -1);
  } catch {
    return n;
  }
}

/** Sorted, de-duplicated names: the local ones plus the configured ones. */
export function serverNames(configured: readonly string[]): string[] {
  return [...new Set([...LOCAL_NAMES, ...configured].map(normaliseName))].sort();
}

/** A server certificate for `names` (host names and IP addresses), signed by the authority. */
export async function issueServerCertificate(ca: PemPair, names: readonly string[], now = new Date()): Promise<PemPair> {
  const x509 = await x509Lib();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKeyPem(ca.keyPem);
  const keys = await generateKeyPair();
  const first = names.find((n) => isIP(n) === 0) ?? names[0] ?? 'localhost';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [first] }],
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + SERVER_CERT_VALID_DAYS * DAY_MS),
    signingAlgorithm: EC_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(names.map((n) => (isIP(n) === 0 ? { type: 'dns' as const, value: n } : { type: 'ip' as const, value: n }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * Writes a file that only its owner may read, durably: it is created 0600 (never
 * readable by others, not even for a moment), synced, renamed into place, and its
 * directory synced.
 */
export async function writeSecretFile(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileDurable(path, data);
}

/** The names (DNS and IP) a certificate is valid for, lower-case and sorted. */
export function certificateNames(certPem: string): string[] {
  const alt = new X509Certificate(certPem).subjectAltName ?? '';
  return alt
    .split(', ')
    .map((part) => part.replace(/^(DNS|IP Address):/, ''))
    .filter((n) => n !== '')
    .map(normaliseName)
    .sort();
}

/** The SHA-256 of a certificate's SubjectPublicKeyInfo (base64url): what a pin names. */
export function spkiSha256(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64url');
}

/** The certificate in DER: what pairing proofs are computed over. */
export function certificateDer(certPem: string): Buffer {
  return new X509Certificate(certPem).raw;
}

/** Whether `certPem` is a certificate authority and its signature verifies with its own key. */
export function isSelfSignedAuthority(certPem: string): boolean {
  try {
    const cert = new X509Certificate(certPem);
    return cert.ca && cert.verify(cert.publicKey);
  } catch {
    return false;
  }
}

/**
 * Creates the authority and a server certificate for `names` in `dir`. Every file is
 * 0600 like the rest of a data directory: a certificate is no secret, but its 0700
 * directory keeps others out anyway, and the authority reaches terminals by pairing
 * and stores by link-mall, never by reading this file as another user. Callers refuse an initialised data directory first; files left by
 * an init that did not finish are replaced, like the signing key.
 */
export async function createTlsIdentity(dir: string, commonName: string, names: readonly string[]): Promise<TlsIdentity> {
  const paths = tlsPaths(dir);
  const ca = await createCertificateAuthority(commonName);
  const all = serverNames(names);
  const server = await issueServerCertificate(ca, all);
  await writeSecretFile(paths.caKey, ca.keyPem);
  await writeSecretFile(paths.key, server.keyPem);
  await writeSecretFile(paths.caCert, ca.certPem);
  await writeSecretFile(paths.cert, server.certPem);
  return { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem, names: all };
}

async function readPem(path: string, label: string, code: ErrorCode): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(code, missing ? `the ${label} ${path} is missing` : `the ${label} ${path} cannot be read: ${(err as Error).message}`);
  }
}

/**
 * Loads the TLS files of `dir`. The server certificate is re-issued from the authority
 * when the configured names changed or it is close to expiry, so a store never serves
 * a certificate its terminals would refuse for a reason the operator cannot see.
 */
export async function loadTlsIdentity(dir: string, configuredNames: readonly string[], code: ErrorCode, now = new Date()): Promise<TlsIdentity & { reissued: boolean }> {
  const paths = tlsPaths(dir);
  const caPem = await readPem(paths.caCert, 'certificate authority', code);
  let certPem = await readPem(paths.cert, 'server certificate', code);
  let keyPem = await readPem(paths.key, 'server key', code);
  const names = serverNames(configuredNames);
  let current: X509Certificate;
  try {
    current = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    if (!ca.ca || !current.checkIssued(ca) || !current.verify(ca.publicKey)) fail(code, `${paths.cert} is not signed by ${paths.caCert}`);
  } catch (err) {
    if (err instanceof MallposError) throw err;
    return fail(code, `the TLS files in ${dir} cannot be used: ${(err as Error).message}`);
  }
  const sameNames = JSON.stringify(certificateNames(certPem)) === JSON.stringify(names);
  const fresh = Date.parse(current.validTo) - now.getTime() > SERVER_CERT_RENEW_DAYS * DAY_MS;
  if (sameNames && fresh) return { caPem, certPem, keyPem, names, reissued: false };
  const caKeyPem = await readPem(paths.caKey, 'certificate authority key', code);
  const issued = await issueServerCertificate({ certPem: caPem, keyPem: caKeyPem }, names, now);
  await writeSecretFile(paths.key, issued.keyPem);
  await writeSecretFile(paths.cert, issued.certPem);
  certPem = issued.certPem;
  keyPem = issued.keyPem;
  return { caPem, certPem, keyPem, names, reissued: true };
}

// ---------------------------------------------------------------------------------------
// Pairing proof: how a terminal learns which authority to pin without trusting the network.

const PAIRING_LABEL = 'mallpos pairing v1';
/** scrypt cost: each guess of a pairing code costs an attacker this much, offline or not. */
const PAIRING_SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/**
 * The key a pairing proof is made with, derived from the code's SHA-256 (what the store
 * keeps) with scrypt, salted with the authority's certificate. Anyone may ask for a
 * proof, so the code must be expensive to guess from one: 40 bits times one scrypt.
 */
export function pairingProofKey(codeSha256Hex: string, caPem: string): Promise<Buffer> {
  const salt = createHash('sha256').update(PAIRING_LABEL).update(certificateDer(caPem)).digest();
  return scryptQueued(Buffer.from(codeSha256Hex, 'hex'), salt, 32, PAIRING_SCRYPT);
}

/** The proof that whoever sends `caPem` knows the pairing code: an HMAC over the certificate. */
export function pairingProof(key: Buffer, caPem: string): string {
  return createHmac('sha256', key).update(PAIRING_LABEL).update(certificateDer(caPem)).digest('base64url');
}

export function proofMatches(expected: string, presented: string): boolean {
  const a = Buffer.from(expected, 'base64url');
  const b = Buffer.from(presented, 'base64url');
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------
// A small HTTPS client: Node's fetch cannot be given a certificate authority to pin.

export interface TlsRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** The only authority trusted for this request (PEM). */
  ca?: string;
  /**
   * Accept any certificate: only for the first step of pairing, which sends nothing
   * secret and checks what it gets by other means. Returns the peer's certificate chain.
   */
  insecure?: boolean;
  timeoutMs?: number;
  /** Largest answer read, in bytes. */
  bodyBytesMax?: number;
  /**
   * A keep-alive agent whose connections (and TLS sessions) later requests to the same
   * origin and authority reuse; without one, each request opens and closes its own
   * connection.
   */
  agent?: HttpsAgent;
}

export interface TlsResponse {
  status: number;
  ok: boolean;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = unknown>(): T;
}

/** Raised when no answer could be had: refused, timed out, or the certificate did not verify. */
export class TlsRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'TlsRequestError';
  }
}

export const TLS_BODY_BYTES_MAX = 16 * 1024 * 1024;

/**
 * The TLS context of each authority trusted lately. Making one parses the authority's
 * certificate into a store of its own, which a request that gave only `ca` would do
 * again every time; a process trusts one or a few authorities (its store's, its mall's).
 */
const contextsByCa = new Map<string, SecureContext>();
const CONTEXTS_MAX = 16;

function contextTrusting(ca: string): SecureContext {
  let context = contextsByCa.get(ca);
  if (context === undefined) {
    context = createSecureContext({ ca });
    if (contextsByCa.size >= CONTEXTS_MAX) contextsByCa.delete(contextsByCa.keys().next().value as string);
    contextsByCa.set(ca, context);
  }
  return context;
}

/** How long an idle kept-alive connection is kept: well below a Node server's 5 s, so the client is the one that closes it. */
const KEEP_ALIVE_IDLE_MS = 1_000;

/**
 * An agent for `tlsRequest` that keeps connections open between requests to the same
 * origin and authority: one TLS handshake per server rather than per request, on both
 * sides. Idle connections close after KEEP_ALIVE_IDLE_MS and do not keep the process
 * alive.
 */
export function keepAliveAgent(): HttpsAgent {
  return new HttpsAgent({ keepAlive: true, timeout: KEEP_ALIVE_IDLE_MS });
}

/** Errors of a kept-alive connection that the server closed as the request went out. */
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE']);

/** A reset of a reused connection before any answer: `tlsRequest` sends the request again. */
class StaleConnectionError extends TlsRequestError {}

/**
 * One HTTPS request that trusts only `ca` (or nothing, with `insecure`). The answer is
 * read whole, up to `bodyBytesMax`. A request that went out on a kept-alive connection
 * which the server had closed meanwhile (reset before any answer) is sent once more, on
 * a new connection: the server closed the connection without reading the request, or
 * read it and answered nothing, and every request this project sends with an agent
 * may be repeated (reads, and changes under an idempotency key or a sequence number).
 */
export async function tlsRequest(url: string, opts: TlsRequestOptions = {}): Promise<TlsResponse> {
  try {
    return await tlsRequestOnce(url, opts);
  } catch (err) {
    if (!(err instanceof StaleConnectionError)) throw err;
    return tlsRequestOnce(url, opts);
  }
}

function tlsRequestOnce(url: string, opts: TlsRequestOptions): Promise<TlsResponse> {
  const target = new URL(url);
  if (target.protocol !== 'https:') return Promise.reject(new TlsRequestError(`${target.origin} is not an https:// address`, 'ERR_NOT_HTTPS'));
  if (opts.insecure !== true && opts.ca === undefined) return Promise.reject(new TlsRequestError('no certificate authority to trust', 'ERR_NO_CA'));
  const limit = opts.bodyBytesMax ?? TLS_BODY_BYTES_MAX;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      target,
      {
        method: opts.method ?? 'GET',
        headers: { ...(opts.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(opts.body)) }), ...opts.headers },
        agent: opts.agent ?? false,
        // `ca` is given beside its context so that an agent keeps connections apart by the authority they were verified against.
        ...(opts.insecure === true ? { rejectUnauthorized: false } : { ca: opts.ca, secureContext: contextTrusting(opts.ca as string), rejectUnauthorized: true }),
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > limit) {
            req.destroy(new TlsRequestError(`the answer from ${target.origin} is larger than ${limit} bytes`, 'ERR_TOO_LARGE'));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          resolve({
            status,
            ok: status >= 200 && status < 300,
            headers: res.headers,
            text,
            json: <T>() => JSON.parse(text) as T,
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new TlsRequestError(`${target.origin} did not answer in time`, 'ETIMEDOUT')));
    let answered = false;
    req.once('response', () => (answered = true));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof TlsRequestError) reject(err);
      else if (req.reusedSocket && !answered && STALE_CONNECTION.has(err.code ?? '')) reject(new StaleConnectionError(err.message, err.code));
      else reject(new TlsRequestError(err.message, err.code));
    });
    req.end(opts.body);
  });
}

/** Whether a request failed because the peer's certificate did not verify (wrong authority, name or signature). */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME|SIGNATURE/.test(code);
}
