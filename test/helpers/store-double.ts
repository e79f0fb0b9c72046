import { createServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { Server } from 'socket.io';
import type { ClientToServerEvents, ServerStatus, ServerToClientEvents } from '../../core/index.ts';
import { createCertificateAuthority, issueServerCertificate, spkiSha256, writeSecretFile, type PemPair } from '../../platform/tls.ts';

/**
 * What the terminal's stand-ins for the store server share: a TLS socket.io server with
 * its own certificate authority, the status it pushes, and the paired credential a
 * terminal's data directory holds for it.
 */
export async function startDoubleServer(caName: string): Promise<{ ca: PemPair; https: HttpsServer; io: Server<ClientToServerEvents, ServerToClientEvents> }> {
  const ca = await createCertificateAuthority(caName);
  const leaf = await issueServerCertificate(ca, ['localhost', '127.0.0.1']);
  const https = createServer({ key: leaf.keyPem, cert: leaf.certPem });
  const io = new Server<ClientToServerEvents, ServerToClientEvents>(https, { transports: ['websocket'] });
  return { ca, https, io };
}

export function doubleStatus(journalSeq: number): ServerStatus {
  return {
    vendorId: 'V-DOUBLE',
    storeName: 'Double Store',
    storeAddress: ['1 Test Street'],
    currency: 'EUR',
    tokenNames: { ACME: 'ACME token' },
    at: new Date().toISOString(),
    journalSeq,
    sync: { configured: false, eventsWaiting: 0, oldestWaitingAgeS: null, lastAckAt: null, lastError: null, snapshotStale: false },
  };
}

/** Writes the credential a terminal paired with the stand-in at `url` would hold. */
export async function writeDoubleCredential(
  dataDir: string,
  p: { url: string; caPem: string; terminalId: string; name: string; device: string; credential: string },
): Promise<void> {
  const credential = {
    format: 2,
    server: p.url,
    terminalId: p.terminalId,
    name: p.name,
    vendorId: 'V-DOUBLE',
    storeName: 'Double Store',
    caPem: p.caPem,
    caSpkiSha256: spkiSha256(p.caPem),
    device: p.device,
    credential: p.credential,
    expiresAt: new Date(Date.now() + 24 * 3600_000).toISOString(),
    pairedAt: new Date().toISOString(),
  };
  await writeSecretFile(join(dataDir, 'credential.json'), `${JSON.stringify(credential, null, 2)}\n`);
}

/**
 * The answers a test asked a stand-in to lose, as a dropped acknowledgement would be:
 * the request is applied, the terminal hears nothing and must send it again.
 */
export class LostAnswers {
  readonly #left = new Map<string, number>();

  /** The next `times` answers to `event` are lost. */
  lose(event: string, times = 1): void {
    this.#left.set(event, times);
  }

  /** Whether this answer to `event` is one to lose; counts it when it is. */
  take(event: string): boolean {
    const left = this.#left.get(event) ?? 0;
    if (left <= 0) return false;
    this.#left.set(event, left - 1);
    return true;
  }
}
