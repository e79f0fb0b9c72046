import { InvalidArgumentError } from 'commander';

/** Helpers shared by the three command lines (vendor-server, pos-terminal, mall-sync). */

export function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535');
  return n;
}

/**
 * Prints an error as one plain line, `<program>: <message> [<code>]` for a typed error
 * (any error with a *_ERR_* code), and exits non-zero.
 */
export function dieWith(program: string, opts: { stack: boolean } = { stack: true }): (err: unknown) => never {
  return (err: unknown): never => {
    const code = (err as { code?: unknown }).code;
    const e = err as Error;
    if (typeof code === 'string' && /^[A-Z]+_ERR_/.test(code)) console.error(`${program}: ${e.message} [${code}]`);
    else console.error(`${program}: ${(opts.stack ? e.stack : e.message) ?? String(err)}`);
    process.exit(1);
  };
}
