import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { fail, MallposError, type ErrorCode } from '../../core/index.ts';
import { tlsRequest } from '../../platform/tls.ts';
import { loadConfig, loadStoreTls } from '../config.ts';

/** Where the operator credential and a supervisor's PIN come from: never the command line, which others can read. */
export const OPERATOR_TOKEN_ENV = 'MALLPOS_OPERATOR_TOKEN';
export const SUPERVISOR_PIN_ENV = 'MALLPOS_SUPERVISOR_PIN';

interface Target {
  dataDir: string;
  url?: string;
}

/** One request to the running store's operator API, trusting only the store's own authority. */
export async function operatorCall(o: Target, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
  const token = process.env[OPERATOR_TOKEN_ENV];
  if (token === undefined || token === '') fail('VND_ERR_UNAUTHENTICATED', `set ${OPERATOR_TOKEN_ENV} to the operator credential "vendor-server init" printed`);
  const dataDir = resolve(o.dataDir);
  const config = await loadConfig(dataDir);
  const url = o.url ?? `https://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host}:${config.port}`;
  const { caPem } = await loadStoreTls(dataDir, config);
  const res = await tlsRequest(`${url.replace(/\/+$/, '')}${path}`, {
    method,
    ca: caPem,
    timeoutMs: 30_000,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  }).catch((err: Error) => fail('VND_ERR_CONFIG', `no vendor server answers at ${url}: is it running? (${err.message})`));
  const answer = res.json<{ error?: { code: string; message: string; details?: Record<string, unknown> } }>();
  if (!res.ok) {
    const e = answer.error;
    throw new MallposError((e?.code ?? 'VND_ERR_INTERNAL') as ErrorCode, e?.message ?? `the server answered ${res.status}`, e?.details);
  }
  return answer;
}

/**
 * The cashier's-day commands: they ask the running store (one writer per data
 * directory), authenticated with the operator credential from the environment.
 */
export function addCashierDayCommands(program: Command, defaultDataDir: string, die: (err: unknown) => never): void {
  const target = (c: Command) => c.option('--data-dir <dir>', 'data directory', defaultDataDir).option('--url <url>', 'the running vendor server (default: from the config)');
  const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

  target(program.command('shifts').description(`list shifts and their counts, newest last (asks the running server; operator credential in ${OPERATOR_TOKEN_ENV})`))
    .option('--status <status>', 'open or closed')
    .action(async (o: Target & { status?: string }) => {
      try {
        print(await operatorCall(o, 'GET', `/api/shifts${o.status === undefined ? '' : `?status=${encodeURIComponent(o.status)}`}`));
      } catch (err) {
        die(err);
      }
    });

  target(program.command('force-close-shift').description(`a supervisor closes a shift left open, e.g. by a crashed till (PIN in ${SUPERVISOR_PIN_ENV})`))
    .argument('<shift-id>', 'the shift, e.g. sh-42')
    .requiredOption('--supervisor <staff-id>', 'the supervisor approving it')
    .requiredOption('--reason <text>', 'why the shift is closed for the cashier')
    .option('--counted <minor>', 'the cash counted in the drawer, in minor units (without it the shift closes uncounted)', (v) => Number(v))
    .action(async (shiftId: string, o: Target & { supervisor: string; reason: string; counted?: number }) => {
      try {
        const pin = process.env[SUPERVISOR_PIN_ENV];
        if (pin === undefined || pin === '') fail('VND_ERR_SUPERVISOR_REQUIRED', `set ${SUPERVISOR_PIN_ENV} to the supervisor's PIN`);
        const body = { supervisor: { staffId: o.supervisor, pin }, reason: o.reason, ...(o.counted === undefined ? {} : { count: { totalMinor: o.counted } }) };
        print(await operatorCall(o, 'POST', `/api/shifts/${encodeURIComponent(shiftId)}/force-close`, body, { 'idempotency-key': randomUUID() }));
      } catch (err) {
        die(err);
      }
    });

  target(program.command('close-day').description('close the business day: the signed Z report of everything since the last Z (all shifts must be closed)'))
    .option('--key <key>', 'idempotency key: repeat it to get the same Z back after a lost answer')
    .option('--terminal <id>', 'the till whose day is closed, where the store closes its days per till')
    .action(async (o: Target & { key?: string; terminal?: string }) => {
      try {
        const body = o.terminal === undefined ? {} : { terminalId: o.terminal };
        print(await operatorCall(o, 'POST', '/api/closures/z', body, { 'idempotency-key': o.key ?? randomUUID() }));
      } catch (err) {
        die(err);
      }
    });

  target(program.command('closures').description('list the Z reports and month and year closures'))
    .option('--kind <kind>', 'Z, month or year')
    .action(async (o: Target & { kind?: string }) => {
      try {
        print(await operatorCall(o, 'GET', `/api/closures${o.kind === undefined ? '' : `?kind=${encodeURIComponent(o.kind)}`}`));
      } catch (err) {
        die(err);
      }
    });

  target(program.command('x-report').description('the totals of the open business day so far (changes nothing)'))
    .option('--terminal <id>', 'the till, where the store closes its days per till')
    .action(async (o: Target & { terminal?: string }) => {
      try {
        print(await operatorCall(o, 'GET', `/api/reports/x${o.terminal === undefined ? '' : `?terminal=${encodeURIComponent(o.terminal)}`}`));
      } catch (err) {
        die(err);
      }
    });
}
