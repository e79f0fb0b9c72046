import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fail } from '../core/index.ts';
import { writeFileDurable } from '../platform/storage/index.ts';

/** What pairing leaves on the terminal's disk: the server and the signed credential. */
export const credentialSchema = z.strictObject({
  server: z.string().url(),
  terminalId: z.string().min(1).max(40),
  name: z.string().min(1).max(80),
  vendorId: z.string().min(1).max(40),
  storeName: z.string().min(1).max(80),
  credential: z.string().min(10).max(4096),
  pairedAt: z.string(),
});

export type TerminalCredential = z.output<typeof credentialSchema>;

export function credentialPath(dataDir: string): string {
  return join(dataDir, 'credential.json');
}

/** Exchanges a one-time pairing code for the terminal's credential and stores it. */
export async function pairTerminal(dataDir: string, server: string, code: string): Promise<TerminalCredential> {
  const base = server.replace(/\/+$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }), signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    fail('POS_ERR_OFFLINE', `cannot reach the store server at ${base}: ${(err as Error).message}`);
  }
  const body = (await res.json().catch(() => null)) as { error?: { message: string }; terminalId?: string; name?: string; vendorId?: string; storeName?: string; credential?: string } | null;
  if (!res.ok || body === null || body.credential === undefined) {
    fail('POS_ERR_NOT_PAIRED', `pairing refused: ${body?.error?.message ?? `HTTP ${res.status}`}`);
  }
  const credential = credentialSchema.parse({
    server: base,
    terminalId: body.terminalId,
    name: body.name,
    vendorId: body.vendorId,
    storeName: body.storeName,
    credential: body.credential,
    pairedAt: new Date().toISOString(),
  });
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeFileDurable(credentialPath(dataDir), `${JSON.stringify(credential, null, 2)}\n`);
  return credential;
}

export async function loadCredential(dataDir: string): Promise<TerminalCredential> {
  let text: string;
  try {
    text = await readFile(credentialPath(dataDir), 'utf8');
  } catch {
    fail('POS_ERR_NOT_PAIRED', `this terminal is not paired: run "pos-terminal pair --server URL --code CODE --data-dir ${dataDir}"`);
  }
  const parsed = credentialSchema.safeParse(JSON.parse(text));
  if (!parsed.success) fail('POS_ERR_CONFIG', `${credentialPath(dataDir)} is not a valid credential file: pair again`);
  return parsed.data;
}
