import { pino, type Logger } from 'pino';

/**
 * JSON logs. Secrets are redacted by field name, from an explicit list, wherever such a
 * field appears at the top of a log object or up to two levels inside it, so a
 * credential, PIN, pairing code or operator token never reaches a log line. Only named
 * fields are redacted: a catch-all such as every `code` would also hide error codes
 * (ENOSPC, VND_ERR_*) that an operator needs to read.
 */
export const SECRET_FIELDS = [
  'authorization',
  'cookie',
  'pin',
  'newPin',
  'supervisorPin',
  'customerPin',
  'walletPin',
  'newWalletPin',
  'oldPin',
  'token',
  'accessToken',
  'refreshToken',
  'operatorToken',
  'adminToken',
  'controlToken',
  'credential',
  'pairingCode',
  'password',
  'secret',
  'pepper',
  'privateKey',
] as const;

export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? process.env['LOG_LEVEL'] ?? 'info', name: opts.name ?? 'vendor-server', redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    opts.destination ?? process.stdout,
  );
}

export type { Logger };
