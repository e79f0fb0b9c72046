import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import { fail, MallposError, parse } from '../core/index.ts';
import type { Logger } from '../platform/logger.ts';
import { pairingProof, pairingProofKey } from '../platform/tls.ts';
import type { AccessStore, TerminalRecord } from './access.ts';
import type { VendorConfig, VendorKeys } from './config.ts';
import { issueAccessCredential, issueDeviceCredential, verifyAccessCredential, verifyDeviceCredential } from './credentials.ts';

/**
 * How a terminal proves who it is, from pairing to every request:
 * 1. `GET /pair/ca` (the terminal does not trust the connection yet and sends nothing
 *    secret) answers the store's certificate authority and, for each pending pairing
 *    code, an HMAC over that certificate keyed by a slow hash of the code. The terminal
 *    pins the authority only if one proof matches its code: a listener who does not know
 *    the code cannot make one for its own certificate.
 * 2. `POST /pair` over the pinned connection redeems the code for a device credential
 *    (long-lived, only good for step 3) and a first access credential.
 * 3. `POST /terminal/credential` with the device credential gives a fresh access
 *    credential; the terminal renews before expiry and presents the new one on its open
 *    socket with `credential:renew`.
 * Revoking a terminal or pairing it again invalidates both credentials at once.
 */
export interface TerminalAuthDeps {
  config: VendorConfig;
  keys: VendorKeys;
  access: AccessStore;
  logger: Logger;
  /** The store's certificate authority (PEM). */
  caPem: string;
}

/** What a socket remembers of the credential it was opened (or last renewed) with. */
export interface CredentialHolder {
  terminalId: string;
  credentialId: string;
  expiresAtMs: number;
}

/** The most pending pairing codes one `GET /pair/ca` answers proofs for. */
export const PENDING_PROOFS_MAX = 64;

export const deviceCredentialRequest = z.strictObject({ device: z.string().min(1).max(4096) });
export const renewRequest = z.strictObject({ credential: z.string().min(1).max(4096) });

const CREDENTIAL_REFUSALS = {
  revoked: ['VND_ERR_TERMINAL_REVOKED', 'this terminal has been revoked'],
  replaced: ['VND_ERR_CREDENTIAL_REPLACED', 'this terminal was paired again: this credential is no longer valid'],
  unknown: ['VND_ERR_UNAUTHENTICATED', 'this terminal is not known to the store'],
} as const;

/** Refuses a credential that is not (or no longer) the valid one, saying why: revoked, replaced by pairing again, unknown. */
export function checkPairing(access: AccessStore, terminalId: string, credentialId: string): void {
  const state = access.credentialState(terminalId, credentialId);
  if (state !== 'valid') fail(CREDENTIAL_REFUSALS[state][0], CREDENTIAL_REFUSALS[state][1]);
}

/** Checks the access credential a socket presents in its handshake. */
export async function authenticateTerminal(deps: Pick<TerminalAuthDeps, 'keys' | 'access'>, vendorId: string, token: unknown): Promise<CredentialHolder> {
  const verified = await verifyAccessCredential(deps.keys, vendorId, token);
  checkPairing(deps.access, verified.terminalId, verified.credentialId);
  return verified;
}

/** Before every request: the pairing still stands and the access credential has not expired. */
export function checkCredentialLive(access: AccessStore, holder: CredentialHolder, nowMs = Date.now()): void {
  checkPairing(access, holder.terminalId, holder.credentialId);
  if (nowMs >= holder.expiresAtMs) fail('VND_ERR_CREDENTIAL_EXPIRED', 'the access credential has expired: renew it');
}

/** `credential:renew`: a newer access credential of the same pairing extends the socket's life. */
export async function renewCredential(deps: Pick<TerminalAuthDeps, 'keys' | 'access'>, vendorId: string, holder: CredentialHolder, payload: unknown): Promise<{ expiresAt: string }> {
  const { credential } = parse(renewRequest, payload);
  const next = await authenticateTerminal(deps, vendorId, credential);
  if (next.terminalId !== holder.terminalId || next.credentialId !== holder.credentialId) {
    fail('VND_ERR_UNAUTHENTICATED', 'the new credential belongs to another terminal or pairing');
  }
  holder.expiresAtMs = Math.max(holder.expiresAtMs, next.expiresAtMs);
  return { expiresAt: new Date(holder.expiresAtMs).toISOString() };
}

/**
 * Cuts a socket off when its access credential expires without being renewed; the
 * terminal reconnects with a fresh one. Returns a function that stops watching.
 */
export function cutOffAtExpiry(holder: CredentialHolder, cutOff: () => void): () => void {
  let timer: NodeJS.Timeout | null = null;
  const arm = () => {
    const leftMs = holder.expiresAtMs - Date.now();
    if (leftMs <= 0) {
      timer = null;
      cutOff();
      return;
    }
    timer = setTimeout(arm, Math.min(leftMs, 2 ** 31 - 1));
    timer.unref();
  };
  arm();
  return () => {
    if (timer !== null) clearTimeout(timer);
  };
}

/** What `POST /pair` answers after redeeming a code. */
export async function pairedCredentials(deps: Pick<TerminalAuthDeps, 'keys' | 'config'>, terminal: TerminalRecord, credentialId: string) {
  const { config, keys } = deps;
  const access = await issueAccessCredential(keys, config.vendorId, terminal.id, credentialId, config.accessTtlSeconds);
  return {
    terminalId: terminal.id,
    name: terminal.name,
    vendorId: config.vendorId,
    storeName: config.storeName,
    credential: access.credential,
    expiresAt: new Date(access.expiresAtMs).toISOString(),
    device: await issueDeviceCredential(keys, config.vendorId, terminal.id, credentialId),
  };
}

/**
 * The unauthenticated routes of pairing and renewal, with their own error answers in
 * the operator API's shape (`{ error: { code, message } }`).
 */
export function terminalAuthRouter(deps: TerminalAuthDeps): express.Router {
  const { access, config, keys, logger, caPem } = deps;
  const router = express.Router();
  // The proof key of each pending code costs one scrypt: computed once per code.
  const proofKeys = new Map<string, Promise<Buffer>>();

  const send = (run: (req: Request) => Promise<unknown>) => (req: Request, res: Response, next: NextFunction) => {
    run(req).then((body) => res.json(body), next);
  };

  router.get(
    '/pair/ca',
    send(async () => {
      const now = Date.now();
      const pending: string[] = [];
      for (const t of Object.values(access.data.terminals)) {
        if (t.pairing !== null && t.revokedAt === null && Date.parse(t.pairing.expiresAt) > now) pending.push(t.pairing.codeHash);
      }
      for (const hash of proofKeys.keys()) if (!pending.includes(hash)) proofKeys.delete(hash);
      const proofs: string[] = [];
      for (const hash of pending.slice(-PENDING_PROOFS_MAX)) {
        let key = proofKeys.get(hash);
        if (key === undefined) {
          key = pairingProofKey(hash, caPem);
          proofKeys.set(hash, key);
        }
        proofs.push(pairingProof(await key, caPem));
      }
      return { vendorId: config.vendorId, storeName: config.storeName, ca: caPem, proofs };
    }),
  );

  router.post(
    '/terminal/credential',
    express.json({ limit: 8 * 1024, strict: true }),
    send(async (req) => {
      const { device } = parse(deviceCredentialRequest, req.body);
      const verified = await verifyDeviceCredential(keys, config.vendorId, device);
      checkPairing(access, verified.terminalId, verified.credentialId);
      const issued = await issueAccessCredential(keys, config.vendorId, verified.terminalId, verified.credentialId, config.accessTtlSeconds);
      logger.debug({ terminal: verified.terminalId }, 'access credential renewed');
      return { credential: issued.credential, expiresAt: new Date(issued.expiresAtMs).toISOString() };
    }),
  );

  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const e = err as { type?: string };
    if (err instanceof MallposError) res.status(err.status).json({ error: err.toWire() });
    else if (e.type === 'entity.parse.failed') res.status(400).json({ error: { code: 'CORE_ERR_VALIDATION', message: 'the request body is not valid JSON' } });
    else if (e.type === 'entity.too.large') res.status(413).json({ error: { code: 'VND_ERR_PAYLOAD_TOO_LARGE', message: 'the request is too large' } });
    else {
      logger.error({ err }, 'unexpected error');
      res.status(500).json({ error: { code: 'VND_ERR_INTERNAL', message: 'internal error in the store server' } });
    }
  });
  return router;
}
