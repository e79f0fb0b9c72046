import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { fail } from '../../core/index.ts';
import { OPERATOR_TOKEN_ENV, operatorCall } from '../cashier-day/cli.ts';

interface Target {
  dataDir: string;
  url?: string;
}

function whole(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) fail('CORE_ERR_AMOUNT', `${name} must be a whole number, not ${v.slice(0, 20)}`);
    return n;
  };
}

/**
 * The operator's auction commands: `lot list|show|create|cancel`. They ask the running
 * store (one writer per data directory), authenticated with the operator credential
 * from the environment; create and cancel carry an idempotency key (--key to repeat one).
 */
export function addAuctionCommands(program: Command, defaultDataDir: string, die: (err: unknown) => never): void {
  const target = (c: Command) => c.option('--data-dir <dir>', 'data directory', defaultDataDir).option('--url <url>', 'the running vendor server (default: from the config)');
  const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));
  const lot = program.command('lot').description(`auction lots (asks the running server; operator credential in ${OPERATOR_TOKEN_ENV})`);

  target(lot.command('list').description('the open lots and those closed in the last day')).action(async (o: Target) => {
    try {
      print(await operatorCall(o, 'GET', '/api/lots'));
    } catch (err) {
      die(err);
    }
  });

  target(lot.command('show').description('one lot: its high bid, time left and result'))
    .argument('<lot-id>', 'the lot, e.g. lot-000001')
    .action(async (id: string, o: Target) => {
      try {
        print(await operatorCall(o, 'GET', `/api/lots/${encodeURIComponent(id)}`));
      } catch (err) {
        die(err);
      }
    });

  target(lot.command('create').description('list a lot: a catalog product (--code) or a described item (--title only)'))
    .requiredOption('--title <text>', 'what is auctioned, as bidders see it')
    .requiredOption('--token <code>', 'the token type bids are made in (the store\'s own or one it accepts)')
    .option('--code <gtin>', 'the catalog product auctioned')
    .option('--reserve <units>', 'the least the lot sells for; below it the lot closes unsold', whole('--reserve'), 0)
    .option('--increment <units>', 'the least a bid must beat the high bid by', whole('--increment'), 1)
    .option('--opens-at <time>', 'when bidding opens (ISO 8601; default now)')
    .option('--closes-at <time>', 'when bidding closes (ISO 8601)')
    .option('--minutes <n>', 'close this many minutes from now (instead of --closes-at)', whole('--minutes'))
    .option('--buy-now <units>', 'a bid of this much buys the lot at once', whole('--buy-now'))
    .option('--snipe-window <seconds>', 'a bid this close to the close moves it on (default 30)', whole('--snipe-window'))
    .option('--extend <seconds>', 'to this long after that bid (default 30)', whole('--extend'))
    .option('--key <key>', 'idempotency key: repeat it to get the same lot back after a lost answer')
    .action(async (o: Target & { title: string; token: string; code?: string; reserve: number; increment: number; opensAt?: string; closesAt?: string; minutes?: number; buyNow?: number; snipeWindow?: number; extend?: number; key?: string }) => {
      try {
        const closesAt = o.closesAt ?? (o.minutes === undefined ? fail('CORE_ERR_VALIDATION', 'give --closes-at or --minutes') : new Date(Date.now() + o.minutes * 60_000).toISOString());
        const body = {
          title: o.title,
          token: o.token,
          reserveUnits: o.reserve,
          incrementUnits: o.increment,
          closesAt,
          ...(o.code === undefined ? {} : { code: o.code }),
          ...(o.opensAt === undefined ? {} : { opensAt: o.opensAt }),
          ...(o.buyNow === undefined ? {} : { buyNowUnits: o.buyNow }),
          ...(o.snipeWindow === undefined ? {} : { snipeWindowSeconds: o.snipeWindow }),
          ...(o.extend === undefined ? {} : { extendSeconds: o.extend }),
        };
        print(await operatorCall(o, 'POST', '/api/lots', body, { 'idempotency-key': o.key ?? randomUUID() }));
      } catch (err) {
        die(err);
      }
    });

  target(lot.command('cancel').description('cancel a lot before its first bid'))
    .argument('<lot-id>', 'the lot, e.g. lot-000001')
    .requiredOption('--reason <text>', 'why it is withdrawn')
    .option('--key <key>', 'idempotency key')
    .action(async (id: string, o: Target & { reason: string; key?: string }) => {
      try {
        print(await operatorCall(o, 'POST', `/api/lots/${encodeURIComponent(id)}/cancel`, { reason: o.reason }, { 'idempotency-key': o.key ?? randomUUID() }));
      } catch (err) {
        die(err);
      }
    });
}
