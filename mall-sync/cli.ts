import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { JWK } from 'jose';
import { MallposError, type FeeSchedule, type TokenType } from '../core/index.ts';
import { MallAdminClient, withMallAdmin } from './admin-client.ts';
import { DEFAULT_DATA_DIR } from './config.ts';
import { describeStatement, reconcile } from './reconcile.ts';
import { dieWith, portNumber } from '../platform/cli.ts';
import type { ReceiptVerdict } from './receipt-verify.ts';

// The server, a mall's creation, the move to PostgreSQL and the audit are imported by the
// commands that run them, so that the others do not read and compile them at every run.

/** Exit status when reconcile finds a gap or a tamper alarm. */
export const EXIT_PROBLEMS = 2;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return n;
}

function wholeUnits(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('a whole number, not negative');
  return n;
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Reads JSON from a file, from stdin ('-'), or inline when the text starts with '{'. */
async function readJsonArg(arg: string, what: string): Promise<unknown> {
  let text: string;
  if (arg.trim().startsWith('{')) text = arg;
  else if (arg === '-') text = await readFile('/dev/stdin', 'utf8');
  else {
    try {
      text = await readFile(resolve(arg), 'utf8');
    } catch (err) {
      throw new InvalidArgumentError(`cannot read ${what} from ${arg}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidArgumentError(`${what} in ${arg.slice(0, 60)} is not JSON`);
  }
}

/** A JWK, or the output of `vendor-server key` ({ vendorId, kid, jwk }). */
async function readJwk(arg: string): Promise<Record<string, unknown>> {
  const json = (await readJsonArg(arg, 'the public key')) as Record<string, unknown> | null;
  if (json === null || typeof json !== 'object') throw new InvalidArgumentError('the public key must be a JSON object');
  const inner = json['jwk'];
  return (typeof inner === 'object' && inner !== null ? inner : json) as Record<string, unknown>;
}

const die = dieWith('mall-sync');

const program = new Command()
  .name('mall-sync')
  .description('mallpos mall sync: registry of vendors, keys and token types; ingests signed batches; clears and reconciles')
  .showHelpAfterError();

const dataDirOption = ['--data-dir <dir>', 'data directory', DEFAULT_DATA_DIR] as const;

program
  .command('init')
  .description('create the mall key pair, an admin credential and a config in a new data directory')
  .option(...dataDirOption)
  .option('--name <name>', 'the mall\'s name (default "Mall")')
  .option('--currency <code>', 'currency of all clearing amounts, ISO 4217 (default EUR)')
  .option('--port <port>', 'port to listen on (default 8700)', portNumber)
  .option('--host <host>', 'address to listen on (default 127.0.0.1)')
  .option('--store <kind>', 'where the mall keeps its data: embedded (a journal in the data directory, one process) or postgres (several processes may serve)', 'embedded')
  .option('--database-url <url>', 'with --store postgres: the database (or set MALLPOS_DATABASE_URL, which keeps a password out of the config)')
  .action(async (o: { dataDir: string; name?: string; currency?: string; port?: number; host?: string; store: string; databaseUrl?: string }) => {
    try {
      if (o.store !== 'embedded' && o.store !== 'postgres') throw new InvalidArgumentError('--store is embedded or postgres');
      if (o.store === 'embedded' && o.databaseUrl !== undefined) throw new InvalidArgumentError('--database-url goes with --store postgres');
      const postgres = o.store === 'postgres' ? { databaseUrl: o.databaseUrl } : undefined;
      const { initMall } = await import('./init.ts');
      const r = await initMall({ dataDir: resolve(o.dataDir), name: o.name, currency: o.currency, port: o.port, host: o.host, postgres });
      console.log(`Created mall "${r.config.name}" (${r.config.currency}) in ${resolve(o.dataDir)}`);
      console.log(`Mall key id (kid): ${r.kid}`);
      console.log(`Mall certificate authority: ${resolve(o.dataDir)}/tls/ca-cert.pem (stores link with: vendor-server link-mall --url https://HOST:PORT --mall-ca FILE --mall-key-thumbprint ${r.kid})`);
      console.log('');
      console.log('Admin credential (shown only this once; keep it safe):');
      console.log(`  ${r.adminToken}`);
      console.log('');
      console.log(`Start it with: mall-sync serve --data-dir ${o.dataDir}`);
    } catch (err) {
      die(err);
    }
  });

program
  .command('serve')
  .description('serve the vendor <-> mall API (batches, snapshots, cursors, statements) and the admin API')
  .option(...dataDirOption)
  .option('--port <port>', 'port to listen on (default: the config\'s, 8700)', portNumber)
  .option('--host [host]', 'address to listen on (default 127.0.0.1; --host alone means all interfaces)')
  .action(async (o: { dataDir: string; port?: number; host?: string | boolean }) => {
    try {
      const host = o.host === true ? '0.0.0.0' : typeof o.host === 'string' ? o.host : undefined;
      const { startMallServer } = await import('./server.ts');
      const mall = await startMallServer({ dataDir: resolve(o.dataDir), port: o.port, host });
      const stop = (signal: string) => {
        mall.logger.info({ signal }, 'stopping');
        mall.close().then(() => process.exit(0), (err: unknown) => die(err));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    } catch (err) {
      die(err);
    }
  });

program
  .command('reconcile')
  .description(`write every vendor's statement for a range of UTC days as CSV, JSON and signed JSON; exits ${EXIT_PROBLEMS} on a gap or a tamper alarm`)
  .option(...dataDirOption)
  .requiredOption('--from <day>', 'first day, YYYY-MM-DD (UTC, by event time)')
  .requiredOption('--to <day>', 'last day, YYYY-MM-DD (inclusive)')
  .option('--out <dir>', 'where to write the statements (default <data-dir>/statements/<from>_<to>)')
  .action(async (o: { dataDir: string; from: string; to: string; out?: string }) => {
    try {
      const r = await reconcile(resolve(o.dataDir), o.from, o.to, o.out === undefined ? undefined : resolve(o.out));
      for (const s of r.statements) console.log(describeStatement(s));
      console.log(`${r.statements.length} statements written to ${r.outDir}`);
      for (const d of r.decided) console.log(`decided: ${d}`);
      if (r.problems.length > 0) {
        for (const p of r.problems) console.error(p);
        process.exit(EXIT_PROBLEMS);
      }
    } catch (err) {
      die(err);
    }
  });

program
  .command('migrate-store')
  .description('move a stopped mall from its embedded journal into an empty PostgreSQL database, then switch its config to it')
  .option(...dataDirOption)
  .requiredOption('--from <kind>', 'the store the mall uses now (embedded)')
  .requiredOption('--to <kind>', 'the store to move to (postgres)')
  .option('--database-url <url>', 'the database (or set MALLPOS_DATABASE_URL)')
  .action(async (o: { dataDir: string; from: string; to: string; databaseUrl?: string }) => {
    try {
      if (o.from !== 'embedded' || o.to !== 'postgres') throw new InvalidArgumentError('a mall moves --from embedded --to postgres');
      const { migrateStore } = await import('./migrate-store.ts');
      const r = await migrateStore(resolve(o.dataDir), { databaseUrl: o.databaseUrl });
      print(r);
      console.log(`Moved ${r.events} events (${r.batches} batches) into PostgreSQL; the config now says store postgres. Check with: mall-sync reconcile --data-dir ${o.dataDir} --from DAY --to DAY`);
    } catch (err) {
      die(err);
    }
  });

program
  .command('export-archive')
  .description('write the audit archive of a mall on PostgreSQL into a directory, for "mall-sync audit --archive DIR"')
  .option(...dataDirOption)
  .requiredOption('--out <dir>', 'where to write it')
  .action(async (o: { dataDir: string; out: string }) => {
    try {
      const { exportStoreArchive } = await import('./migrate-store.ts');
      print(await exportStoreArchive(resolve(o.dataDir), resolve(o.out)));
    } catch (err) {
      die(err);
    }
  });

const vendor = program.command('vendor').description('register vendors and manage their keys');
vendor
  .command('add')
  .description('register a vendor with its public key (a JWK, or the output of "vendor-server key")')
  .option(...dataDirOption)
  .requiredOption('--id <id>', 'the vendor id (lower-case letters, digits, -)')
  .requiredOption('--name <name>', 'the vendor\'s name')
  .requiredOption('--jwk <file|json|->', 'the vendor\'s Ed25519 public key')
  .action(async (o: { dataDir: string; id: string; name: string; jwk: string }) => {
    try {
      const jwk = await readJwk(o.jwk);
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.registerVendor({ id: o.id, name: o.name, jwk })));
    } catch (err) {
      die(err);
    }
  });
vendor
  .command('list')
  .description('list vendors with their keys and completeness (last batch, gaps, staleness)')
  .option(...dataDirOption)
  .action(async (o: { dataDir: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.vendors()));
    } catch (err) {
      die(err);
    }
  });
vendor
  .command('key-add')
  .description('add (rotate to) a new key: the active key becomes retired and still verifies batches')
  .option(...dataDirOption)
  .requiredOption('--id <id>', 'the vendor id')
  .requiredOption('--jwk <file|json|->', 'the new Ed25519 public key')
  .action(async (o: { dataDir: string; id: string; jwk: string }) => {
    try {
      const jwk = await readJwk(o.jwk);
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.addKey(o.id, jwk)));
    } catch (err) {
      die(err);
    }
  });
vendor
  .command('key-revoke')
  .description('revoke a key: batches signed with it never verify again')
  .option(...dataDirOption)
  .requiredOption('--id <id>', 'the vendor id')
  .requiredOption('--kid <kid>', 'the key id (JWK thumbprint)')
  .option('--reason <text>', 'why (kept with the key)')
  .action(async (o: { dataDir: string; id: string; kid: string; reason?: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.revokeKey(o.id, o.kid, o.reason)));
    } catch (err) {
      die(err);
    }
  });

program
  .command('allot')
  .description('issue tokens to a vendor; mall tokens are bought at face value (the vendor owes units x face value)')
  .option(...dataDirOption)
  .requiredOption('--vendor <id>', 'the vendor')
  .requiredOption('--token <code>', 'the token type')
  .requiredOption('--units <n>', 'how many tokens', positiveInt)
  .requiredOption('--reference <text>', 'a note kept with the allotment (e.g. "float 2026-11")')
  .option('--key <key>', 'idempotency key: run again with the same key to retry safely (default: a new one)')
  .action(async (o: { dataDir: string; vendor: string; token: string; units: number; reference: string; key?: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.allot({ vendor: o.vendor, token: o.token, units: o.units, reference: o.reference }, o.key)));
    } catch (err) {
      die(err);
    }
  });

program
  .command('token-type')
  .description('register or change token types from JSON (code, name, kind, issuer, faceValueMinor, currency, acceptedBy, products, expiresAt)')
  .option(...dataDirOption)
  .requiredOption('--file <file|json|->', 'a token type as JSON, or an array of them')
  .action(async (o: { dataDir: string; file: string }) => {
    try {
      const json = await readJsonArg(o.file, 'the token types');
      const types = (Array.isArray(json) ? json : [json]) as TokenType[];
      print(
        await withMallAdmin(resolve(o.dataDir), async (c) => {
          const done: TokenType[] = [];
          for (const tt of types) done.push(await c.upsertTokenType(tt));
          return Array.isArray(json) ? done : done[0];
        }),
      );
    } catch (err) {
      die(err);
    }
  });

program
  .command('audit')
  .description(`recompute every vendor's position and every issued statement from an archive alone (no database); exits ${EXIT_PROBLEMS} on any difference`)
  .requiredOption('--archive <dir>', 'the mall\'s archive folder (<data-dir>/archive) or a copy of it')
  .option('--mall-key <file>', 'the mall\'s public JWK to verify with (default: the archive\'s mall-key.json)')
  .action(async (o: { archive: string; mallKey?: string }) => {
    try {
      const pinned = o.mallKey === undefined ? undefined : ((await readJsonArg(o.mallKey, 'the mall key')) as { jwk?: Record<string, unknown> });
      const mallJwk = pinned === undefined ? undefined : ((pinned.jwk ?? pinned) as JWK);
      const { auditArchive } = await import('./audit.ts');
      const r = await auditArchive(resolve(o.archive), mallJwk === undefined ? {} : { mallJwk });
      print({ ok: r.ok, registryEntries: r.registryEntries, batches: r.batches, statements: r.statements, positions: r.positions, differences: r.differences });
      if (!r.ok) {
        for (const d of r.differences) console.error(`DIFFERENCE ${d}`);
        process.exit(EXIT_PROBLEMS);
      }
    } catch (err) {
      die(err);
    }
  });

program
  .command('gap-decide')
  .description('record a signed decision on a vendor\'s open gap (a batch seen ahead of the next expected): wait, or demand a resend')
  .option(...dataDirOption)
  .requiredOption('--vendor <id>', 'the vendor')
  .requiredOption('--decision <wait|resend>', 'wait for the missing batches, or demand that the vendor resends')
  .option('--from <seq>', 'with resend: the batch seq to resend from (default: the next one the mall expects)', positiveInt)
  .option('--note <text>', 'why (kept with the decision)')
  .action(async (o: { dataDir: string; vendor: string; decision: string; from?: number; note?: string }) => {
    try {
      if (o.decision !== 'wait' && o.decision !== 'resend') throw new InvalidArgumentError('--decision is wait or resend');
      const decision = o.decision;
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.decideGap(o.vendor, { decision, ...(o.from === undefined ? {} : { resendFromSeq: o.from }), ...(o.note === undefined ? {} : { note: o.note }) })));
    } catch (err) {
      die(err);
    }
  });

program
  .command('fees')
  .description('set the fee schedule from a JSON file; all fees are integers')
  .addHelpText(
    'after',
    `
Fields (all required; rates in basis points, 10,000 = 100 %; amounts in minor units of the mall's currency):
  royaltyBps              royalty the redeeming vendor owes the mall on the face value of every redemption
  royaltyBpsByVendor      {"<vendor id>": bps}: a vendor's own royalty rate (wins over the two others)
  royaltyBpsByToken       {"<token code>": bps}: a token type's royalty rate (wins over royaltyBps)
  reimbursementTollMinor  charged to an issuer (not the mall) once per sale in which it reimburses another vendor,
                          and once per exchange that gives up its tokens
  customerDataTollMinor   charged to a vendor each time it is given another store's customer data (POST
                          /v1/vendors/:vendor/customer-data), none when the request is refused
  exchangeServiceBps      service charge on exchanging one issuer's tokens for another's, on the face value given
                          up, charged to the issuer of the tokens given up (not the mall)
Each fee is rounded once, half up, where it is computed. Fees in force when a batch arrives apply to it; an
exchange is checked against the schedule in force at its own time (every schedule set is kept).`,
  )
  .option(...dataDirOption)
  .requiredOption('--file <file|json|->', 'the fee schedule as JSON')
  .action(async (o: { dataDir: string; file: string }) => {
    try {
      const fees = (await readJsonArg(o.file, 'the fee schedule')) as FeeSchedule;
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.setFees(fees)));
    } catch (err) {
      die(err);
    }
  });

program
  .command('party')
  .description('register a party that is not a vendor (a manufacturer or another issuer)')
  .option(...dataDirOption)
  .requiredOption('--id <id>', 'the party id')
  .requiredOption('--name <name>', 'its name')
  .option('--kind <kind>', 'manufacturer or issuer', 'manufacturer')
  .action(async (o: { dataDir: string; id: string; name: string; kind: string }) => {
    try {
      if (o.kind !== 'manufacturer' && o.kind !== 'issuer') throw new InvalidArgumentError('--kind is manufacturer or issuer');
      const kind = o.kind;
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.addParty({ id: o.id, name: o.name, kind })));
    } catch (err) {
      die(err);
    }
  });

program
  .command('customer')
  .description('a card in the customer directory: home store, customer id there, consent, other stores, wallet')
  .option(...dataDirOption)
  .requiredOption('--card <card>', 'the customer card')
  .action(async (o: { dataDir: string; card: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c: MallAdminClient) => c.customer(o.card)));
    } catch (err) {
      die(err);
    }
  });

const wallet = program.command('wallet').description("a card's mall wallet: its PIN status, and lifting a lock after wrong PINs");
wallet
  .command('status')
  .description('whether the wallet has a PIN, the wrong PINs since the last right one (by store) and whether it is locked')
  .option(...dataDirOption)
  .requiredOption('--card <card>', 'the customer card')
  .action(async (o: { dataDir: string; card: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c: MallAdminClient) => c.walletPin(o.card)));
    } catch (err) {
      die(err);
    }
  });
wallet
  .command('unlock')
  .description('lift the lock of a wallet after 10 wrong PINs (and clear its count): holds with the right PIN work again at every store')
  .option(...dataDirOption)
  .requiredOption('--card <card>', 'the customer card')
  .action(async (o: { dataDir: string; card: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c: MallAdminClient) => c.walletUnlock(o.card)));
    } catch (err) {
      die(err);
    }
  });

program
  .command('positions')
  .description('clearing positions of all parties (they sum to zero)')
  .option(...dataDirOption)
  .action(async (o: { dataDir: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c: MallAdminClient) => c.positions()));
    } catch (err) {
      die(err);
    }
  });

// ---- verifiable receipts ---------------------------------------------------------------

/** Exit status of verify-receipt for a genuine receipt whose sale has not reached the mall yet. */
export const EXIT_RECEIPT_UNSYNCED = 3;
/** The most QR text read from stdin: far above a real receipt's. */
const RECEIPT_ARG_CHARS_MAX = 8 * 1024;

program
  .command('verify-receipt')
  .description(`check a receipt's QR code against the mall's key directory and the batches it ingested; exits 0 when confirmed, ${EXIT_RECEIPT_UNSYNCED} when genuine but not yet synced, ${EXIT_PROBLEMS} otherwise (MISMATCH included)`)
  .argument('<qr-text>', "the receipt's QR text (a compact JWS), or - to read it from stdin")
  .option(...dataDirOption)
  .option('--url <url>', 'ask the mall at this https:// address instead of the one in --data-dir (with --mall-ca)')
  .option('--mall-ca <file>', "the mall's certificate authority (PEM), with --url")
  .action(async (qrArg: string, o: { dataDir: string; url?: string; mallCa?: string }) => {
    try {
      const qr = qrArg === '-' ? await readFile('/dev/stdin', 'utf8') : qrArg;
      if (qr.length > RECEIPT_ARG_CHARS_MAX) throw new MallposError('MALL_ERR_VALIDATION', `the QR text is longer than ${RECEIPT_ARG_CHARS_MAX} characters: it is not a receipt`);
      const ask = (c: MallAdminClient) => c.request<ReceiptVerdict>('POST', '/v1/receipts/verify', { qr });
      let verdict: ReceiptVerdict;
      if (o.url !== undefined) {
        if (o.mallCa === undefined) throw new MallposError('MALL_ERR_VALIDATION', '--url needs --mall-ca FILE: the mall\'s certificate authority');
        const caPem = await readFile(resolve(o.mallCa), 'utf8');
        // The check is public: no admin credential goes with it.
        verdict = await ask(new MallAdminClient(o.url.replace(/\/+$/, ''), '', caPem));
      } else {
        verdict = await withMallAdmin(resolve(o.dataDir), ask);
      }
      print(verdict);
      console.error(`${verdict.verdict === 'MISMATCH' ? '*** ' : ''}${verdict.verdict}: ${verdict.message}`);
      process.exitCode = verdict.verdict === 'confirmed' ? 0 : verdict.verdict === 'not-yet-synced' ? EXIT_RECEIPT_UNSYNCED : EXIT_PROBLEMS;
    } catch (err) {
      die(err);
    }
  });

// ---- gift certificates and coupons -------------------------------------------------------

function wholeMinor(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('a whole number of minor units, 0 or more');
  return n;
}

const lot = program.command('lot').description('mall-wide lots in mall tokens: list one, see them, cancel one; stores forward their customers\' bids');
lot
  .command('create')
  .description('list a lot in mall tokens, open to the customers of every store; prints the lot')
  .option(...dataDirOption)
  .requiredOption('--title <text>', 'what is sold (printed on the winner\'s receipt)')
  .requiredOption('--token <code>', 'a mall token (kind mall)')
  .requiredOption('--closes <time>', 'when it closes (an ISO time); late bids move it on')
  .option('--opens <time>', 'when it opens (default: now)')
  .option('--reserve <n>', 'the least it sells for, in tokens (default 0)', wholeUnits, 0)
  .option('--increment <n>', 'how much each bid beats the one before by', positiveInt, 1)
  .option('--snipe-window <s>', 'a bid this many seconds before the close moves it on', wholeUnits)
  .option('--extend <s>', 'how far after such a bid the close moves', wholeUnits)
  .option('--key <key>', 'idempotency key: run again with the same key to get the same lot (default: a new one)')
  .action(async (o: { dataDir: string; title: string; token: string; closes: string; opens?: string; reserve: number; increment: number; snipeWindow?: number; extend?: number; key?: string }) => {
    try {
      const body = {
        key: o.key ?? `lot:${randomUUID()}`,
        title: o.title,
        token: o.token,
        reserveUnits: o.reserve,
        incrementUnits: o.increment,
        closesAt: o.closes,
        ...(o.opens === undefined ? {} : { opensAt: o.opens }),
        ...(o.snipeWindow === undefined ? {} : { snipeWindowSeconds: o.snipeWindow }),
        ...(o.extend === undefined ? {} : { extendSeconds: o.extend }),
      };
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.createLot(body)));
    } catch (err) {
      die(err);
    }
  });
lot
  .command('list')
  .description('every mall lot with its high bid, status and result')
  .option(...dataDirOption)
  .action(async (o: { dataDir: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.lots()));
    } catch (err) {
      die(err);
    }
  });
lot
  .command('show')
  .description('one mall lot: reserve, high bidder\'s card and store, result')
  .option(...dataDirOption)
  .requiredOption('--lot <id>', 'the lot (mlot-...)')
  .action(async (o: { dataDir: string; lot: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.lot(o.lot)));
    } catch (err) {
      die(err);
    }
  });
lot
  .command('cancel')
  .description('cancel an open mall lot: the high bid\'s hold goes back to its wallet')
  .option(...dataDirOption)
  .requiredOption('--lot <id>', 'the lot (mlot-...)')
  .requiredOption('--reason <text>', 'why (kept with the lot)')
  .action(async (o: { dataDir: string; lot: string; reason: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.cancelLot(o.lot, o.reason)));
    } catch (err) {
      die(err);
    }
  });

const instruments = program.command('instruments').description('gift certificates and coupons: issue, status, void, double spends, the offline policy and the keys that sign them');
instruments
  .command('issue')
  .description('issue mall gift certificates signed with the mall\'s instrument key; prints their short codes and compact forms (what the QR code carries)')
  .option(...dataDirOption)
  .option('--kind <kind>', 'gift (the mall issues gift certificates; coupons are signed by their manufacturer)', 'gift')
  .requiredOption('--token <code>', 'a token type the mall issues')
  .requiredOption('--units <n>', 'the value of each certificate in tokens', positiveInt)
  .requiredOption('--expires <date>', 'when they expire (YYYY-MM-DD or an ISO time)')
  .option('--count <n>', 'how many certificates', positiveInt, 1)
  .option('--key <key>', 'idempotency key: run again with the same key to get the same certificates (default: a new one)')
  .action(async (o: { dataDir: string; kind: string; token: string; units: number; expires: string; count: number; key?: string }) => {
    try {
      if (o.kind !== 'gift') throw new InvalidArgumentError('the mall issues gift certificates (--kind gift); a manufacturer signs its coupons with its own key');
      const expiresAt = /^\d{4}-\d{2}-\d{2}$/.test(o.expires) ? `${o.expires}T23:59:59Z` : o.expires;
      const key = o.key ?? `issue:${randomUUID()}`;
      print({ key, ...(await withMallAdmin(resolve(o.dataDir), (c) => c.issueInstruments({ key, token: o.token, units: o.units, expiresAt, count: o.count }))) });
    } catch (err) {
      die(err);
    }
  });
instruments
  .command('status')
  .description('an instrument\'s value, what remains, holds, state, who sold it and whether it was spent twice')
  .option(...dataDirOption)
  .requiredOption('--code <code>', 'its short code (ISSUER-SERIAL-NN)')
  .action(async (o: { dataDir: string; code: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.instrument(o.code)));
    } catch (err) {
      die(err);
    }
  });
instruments
  .command('void')
  .description('void a gift certificate nobody redeemed or holds (unsold stock, or one sold by mistake)')
  .option(...dataDirOption)
  .requiredOption('--code <code>', 'its short code')
  .requiredOption('--reason <text>', 'why (kept with the void)')
  .action(async (o: { dataDir: string; code: string; reason: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.voidInstrument(o.code, o.reason)));
    } catch (err) {
      die(err);
    }
  });
instruments
  .command('double-spent')
  .description('instruments redeemed beyond their value by stores that could not see each other')
  .option(...dataDirOption)
  .action(async (o: { dataDir: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.doubleSpentInstruments()));
    } catch (err) {
      die(err);
    }
  });
instruments
  .command('policy')
  .description('show the offline acceptance policy the snapshot publishes, or set it (all three values)')
  .option(...dataDirOption)
  .option('--offline-instrument-max-minor <n>', 'the most one sale may take from one instrument offline (minor units at face value)', wholeMinor)
  .option('--offline-store-daily-max-minor <n>', 'the most a store may take from instruments offline in one day', wholeMinor)
  .option('--snapshot-max-age-hours <n>', 'a store takes instruments offline only with a snapshot younger than this', positiveInt)
  .action(async (o: { dataDir: string; offlineInstrumentMaxMinor?: number; offlineStoreDailyMaxMinor?: number; snapshotMaxAgeHours?: number }) => {
    try {
      const given = [o.offlineInstrumentMaxMinor, o.offlineStoreDailyMaxMinor, o.snapshotMaxAgeHours].filter((v) => v !== undefined).length;
      if (given !== 0 && given !== 3) throw new InvalidArgumentError('set all three values of the policy, or none to show it');
      print(
        await withMallAdmin(resolve(o.dataDir), (c) =>
          given === 0
            ? c.instrumentPolicy()
            : c.setInstrumentPolicy({ offlineInstrumentMaxMinor: o.offlineInstrumentMaxMinor as number, offlineStoreDailyMaxMinor: o.offlineStoreDailyMaxMinor as number, snapshotMaxAgeHours: o.snapshotMaxAgeHours as number }),
        ),
      );
    } catch (err) {
      die(err);
    }
  });
instruments
  .command('keys')
  .description('the mall\'s and manufacturers\' instrument keys (vendors sign their own certificates with their registered keys)')
  .option(...dataDirOption)
  .action(async (o: { dataDir: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.instrumentKeys()));
    } catch (err) {
      die(err);
    }
  });

const manufacturer = program.command('manufacturer').description('a manufacturer\'s coupon keys, published in the snapshot\'s key directory');
manufacturer
  .command('add-key')
  .description('register the Ed25519 public key a manufacturer signs its coupons with')
  .option(...dataDirOption)
  .requiredOption('--id <id>', 'the manufacturer (a party of kind manufacturer)')
  .requiredOption('--jwk <file|json|->', 'the public key')
  .action(async (o: { dataDir: string; id: string; jwk: string }) => {
    try {
      const jwk = await readJwk(o.jwk);
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.addInstrumentKey(o.id, jwk)));
    } catch (err) {
      die(err);
    }
  });
manufacturer
  .command('withdraw-key')
  .description('withdraw a key from the directory: every coupon it signed is refused from now on')
  .option(...dataDirOption)
  .requiredOption('--kid <kid>', 'the key id (JWK thumbprint)')
  .option('--reason <text>', 'why')
  .action(async (o: { dataDir: string; kid: string; reason?: string }) => {
    try {
      print(await withMallAdmin(resolve(o.dataDir), (c) => c.withdrawInstrumentKey(o.kid, o.reason)));
    } catch (err) {
      die(err);
    }
  });

// Not awaited at the top level: the build makes this program a CommonJS script (bin/build.js).
void program.parseAsync(process.argv);
