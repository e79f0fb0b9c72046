import { pino, type Logger } from 'pino';

/**
 * JSON logs. Anything that could hold a secret is redacted by path, so a credential,
 * PIN, pairing code or operator token never reaches a log line.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  '*.authorization',
  '*.pin',
  '*.*.pin',
  '*.credential',
  '*.token',
  '*.code',
  '*.operatorToken',
  '*.pairingCode',
];

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    { level: opts.level ?? process.env['LOG_LEVEL'] ?? 'info', name: opts.name ?? 'vendor-server', redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    opts.destination ?? process.stdout,
  );
}

export type { Logger };
