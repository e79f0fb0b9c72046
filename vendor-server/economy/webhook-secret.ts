import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fail } from '../../core/index.ts';
import { writeFileDurable } from '../../platform/storage/index.ts';

/**
 * The secret the store shares with its payment provider: notifications of online
 * purchases are signed with it (HMAC-SHA256). It is made at `vendor-server init` (32
 * random bytes), kept in the data directory readable by the server's user only, shown and
 * rotated by `vendor-server webhook-secret [--rotate]`. After a rotation the previous
 * secret is still accepted for `WEBHOOK_SECRET_GRACE_MS`, so notifications the provider
 * signed before it learnt the new one are not lost.
 */
export const WEBHOOK_SECRET_FILE = 'webhook-secret.json';
/** How long the previous secret is accepted after a rotation: a day. */
export const WEBHOOK_SECRET_GRACE_MS = 24 * 60 * 60_000;
const SECRET_PATTERN = /^mpwh_[0-9a-f]{64}$/;

const secretFileSchema = z.strictObject({
  format: z.literal(1),
  current: z.strictObject({ secret: z.string().regex(SECRET_PATTERN), createdAt: z.iso.datetime() }),
  previous: z.strictObject({ secret: z.string().regex(SECRET_PATTERN), retiredAt: z.iso.datetime() }).nullable(),
});

export type WebhookSecretFile = z.output<typeof secretFileSchema>;

export function webhookSecretPath(dataDir: string): string {
  return join(dataDir, WEBHOOK_SECRET_FILE);
}

function newSecret(): string {
  return `mpwh_${randomBytes(32).toString('hex')}`;
}

export async function readWebhookSecrets(dataDir: string): Promise<WebhookSecretFile | null> {
  let text: string;
  try {
    text = await readFile(webhookSecretPath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail('VND_ERR_CONFIG', `${WEBHOOK_SECRET_FILE} is not JSON: rotate the webhook secret with "vendor-server webhook-secret --rotate"`);
  }
  const parsed = secretFileSchema.safeParse(json);
  if (!parsed.success) fail('VND_ERR_CONFIG', `${WEBHOOK_SECRET_FILE} is not a webhook secret file: rotate it with "vendor-server webhook-secret --rotate"`);
  return parsed.data;
}

/**
 * The secrets file as the webhook last read it. A notification costs a `stat`, not a
 * read and a parse: the file is read again only when it is another file (a rotation
 * renames a new one into place) or was changed where it is, so a rotation by the CLI
 * counts at the next notification without a restart.
 */
export class WebhookSecrets {
  private cached: { stamp: string; file: WebhookSecretFile } | null = null;

  constructor(private readonly dataDir: string) {}

  async current(): Promise<WebhookSecretFile | null> {
    let stamp: string;
    try {
      const st = await stat(webhookSecretPath(this.dataDir));
      stamp = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.cached = null;
      return null;
    }
    if (this.cached?.stamp === stamp) return this.cached.file;
    // Replaced between the stat and the read: the next stat differs and reads it again.
    const file = await readWebhookSecrets(this.dataDir);
    this.cached = file === null ? null : { stamp, file };
    return file;
  }
}

/** Creates the secret (at init, or for a store made before webhooks existed); an existing one is kept. */
export async function ensureWebhookSecret(dataDir: string, now = new Date()): Promise<WebhookSecretFile> {
  const existing = await readWebhookSecrets(dataDir);
  if (existing !== null) return existing;
  const file: WebhookSecretFile = { format: 1, current: { secret: newSecret(), createdAt: now.toISOString() }, previous: null };
  await writeFileDurable(webhookSecretPath(dataDir), `${JSON.stringify(file, null, 2)}\n`, 0o600);
  return file;
}

/** Makes a new secret; the one it replaces stays valid for the grace period. */
export async function rotateWebhookSecret(dataDir: string, now = new Date()): Promise<WebhookSecretFile> {
  const existing = await readWebhookSecrets(dataDir).catch(() => null);
  const file: WebhookSecretFile = {
    format: 1,
    current: { secret: newSecret(), createdAt: now.toISOString() },
    previous: existing === null ? null : { secret: existing.current.secret, retiredAt: now.toISOString() },
  };
  await writeFileDurable(webhookSecretPath(dataDir), `${JSON.stringify(file, null, 2)}\n`, 0o600);
  return file;
}

/** The secrets a notification may be signed with now: the current one, and the previous one within its grace. */
export function acceptedSecrets(file: WebhookSecretFile, now: number): string[] {
  const out = [file.current.secret];
  if (file.previous !== null && now - Date.parse(file.previous.retiredAt) <= WEBHOOK_SECRET_GRACE_MS) out.push(file.previous.secret);
  return out;
}
