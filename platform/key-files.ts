import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { z } from 'zod';
import { fail, MallposError, type ErrorCode } from '../core/index.ts';
import { writeFileDurable } from './storage/index.ts';

/**
 * Files of a data directory shared by the vendor server and the mall: a JSON config
 * checked by a schema, and an Ed25519 signing key (EdDSA) whose kid is its RFC 7638
 * thumbprint. Every problem is one typed error naming the file.
 */

/** Reads and checks a JSON config; `missing` is the sentence shown when there is none. */
export async function loadJsonConfig<S extends z.ZodType>(path: string, schema: S, code: ErrorCode, missing: string): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    fail(code, missing);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(code, `${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(code, `${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`.trim());
  }
  return parsed.data;
}

// A type alias (not an interface) so it passes where a plain JSON record is expected.
export type PublicSigningJwk = {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
};

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: PublicSigningJwk;
}

/** The RFC 7638 thumbprint of an Ed25519 public key: the kid every party uses. */
export function ed25519Thumbprint(x: string): Promise<string> {
  return calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x } as JWK);
}

/** Creates an Ed25519 key pair; the private JWK file is readable by its owner only. */
export async function createSigningKey(path: string, label: string, code: ErrorCode): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await ed25519Thumbprint(jwk.x as string);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // writeFileDurable creates the file owner-only: the private key is never readable by others.
  await writeFileDurable(path, `${JSON.stringify({ ...jwk, kid, alg: 'EdDSA', use: 'sig' }, null, 2)}\n`);
  return loadSigningKey(path, label, code);
}

/** Loads a private Ed25519 JWK; `label` names it in messages ("the vendor key ..."). */
export async function loadSigningKey(path: string, label: string, code: ErrorCode): Promise<SigningKey> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    fail(code, missing ? `the ${label} ${path} is missing` : `the ${label} ${path} cannot be read: ${(err as Error).message}`);
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.kid !== 'string') {
    fail(code, `the ${label} ${path} is not an Ed25519 private key`);
  }
  try {
    const privateKey = (await importJWK(jwk, 'EdDSA')) as CryptoKey;
    const publicJwk: PublicSigningJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: jwk.kid, alg: 'EdDSA', use: 'sig' };
    const publicKey = (await importJWK(publicJwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    return { kid: jwk.kid, privateKey, publicKey, publicJwk };
  } catch (err) {
    if (err instanceof MallposError) throw err;
    return fail(code, `the ${label} ${path} cannot be used: ${(err as Error).message}`);
  }
}
