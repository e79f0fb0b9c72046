import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../mall-sync/store/postgres-migrate.ts';

/**
 * A real PostgreSQL server for the tests: Debian's binaries (`initdb`, `pg_ctl`), a
 * cluster in a temp directory, reached only through a unix socket in that directory (no
 * TCP port, so nothing collides with other runs). `initdb` refuses to run as root: as
 * root the server runs as the `postgres` user (or `nobody`), which owns the directory.
 *
 * One shared cluster serves a whole test run: `freshDatabase()` copies a migrated
 * template database (CREATE DATABASE ... TEMPLATE), which takes milliseconds, instead of
 * one initdb per test. Clusters are stopped by a root `after` hook, and killed on exit.
 */

const PG_VERSIONS = ['17', '16', '15'];

export function postgresBinDir(): string {
  const fromEnv = process.env['MALLPOS_PG_BIN'];
  if (fromEnv !== undefined && existsSync(join(fromEnv, 'initdb'))) return fromEnv;
  const found = PG_VERSIONS.map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => existsSync(join(d, 'initdb')));
  if (found === undefined) {
    const installed = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').join(', ') : 'none';
    throw new Error(`PostgreSQL server binaries not found under /usr/lib/postgresql (versions there: ${installed}): apt-get install postgresql`);
  }
  return found;
}

/** The account the server runs as: ourselves, or an unprivileged one when we are root. */
function serverUser(): { name: string; uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  for (const name of ['postgres', 'nobody']) {
    const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    return { name, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  }
  throw new Error('running as root and there is neither a postgres nor a nobody account to run the PostgreSQL server as');
}

const SUPERUSER = 'mallpos';
/** The socket's "port": only its file name, since the server listens on no TCP port. */
const SOCKET_PORT = 5432;

export interface PgCluster {
  dir: string;
  socketDir: string;
  /** A connection URL for a database of this cluster. */
  url(database: string): string;
  /** Starts the server (again, after `kill`). */
  start(): Promise<void>;
  /** Immediate shutdown: the server process stops at once, as in a crash (pg_ctl -m immediate). */
  kill(): void;
  /** Stops the server and removes its directory. */
  stop(): void;
}

const running = new Set<PgCluster>();

function run(user: ReturnType<typeof serverUser>, cmd: string, args: string[], timeoutMs: number): void {
  const [file, argv] = user === null ? [cmd, args] : ['runuser', ['-u', user.name, '--', cmd, ...args]];
  const r = spawnSync(file, argv, { encoding: 'utf8', timeout: timeoutMs, cwd: tmpdir() });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
}

/**
 * A new cluster in a temp directory. `fsync: false` (the shared test cluster) keeps
 * commits in the OS page cache: a killed server process loses nothing, only a machine
 * crash would. Tests of durability start their own cluster with fsync on.
 */
export async function startCluster(opts: { fsync?: boolean; sharedBuffers?: string } = {}): Promise<PgCluster> {
  const bin = postgresBinDir();
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'mallpos-pg-'));
  const data = join(dir, 'data');
  if (user !== null) chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o700);
  run(user, join(bin, 'initdb'), ['-D', data, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], 120_000);
  const options = [
    `-k ${dir}`,
    "-c listen_addresses=''",
    `-p ${SOCKET_PORT}`,
    '-c max_connections=200',
    `-c shared_buffers=${opts.sharedBuffers ?? '32MB'}`,
    `-c fsync=${opts.fsync === false ? 'off' : 'on'}`,
    `-c full_page_writes=${opts.fsync === false ? 'off' : 'on'}`,
  ].join(' ');
  const cluster: PgCluster = {
    dir,
    socketDir: dir,
    url: (database) => `postgresql://${SUPERUSER}@localhost/${database}?host=${encodeURIComponent(dir)}&port=${SOCKET_PORT}`,
    start() {
      run(user, join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '120', '-o', options, 'start'], 150_000);
      running.add(cluster);
      return Promise.resolve();
    },
    kill() {
      run(user, join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], 60_000);
    },
    stop() {
      running.delete(cluster);
      if (existsSync(join(data, 'postmaster.pid'))) {
        try {
          run(user, join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], 90_000);
        } catch {
          killPostmaster(data);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await cluster.start();
  return cluster;
}

/** Immediate shutdown by signal to the postmaster named in its pid file (SIGQUIT: it takes its backends with it). */
function killPostmaster(data: string): void {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (Number.isSafeInteger(pid) && pid > 1) process.kill(pid, 'SIGQUIT');
  } catch {
    // No pid file, or the server is already gone.
  }
}

let shared: Promise<{ cluster: PgCluster; template: string }> | null = null;
let databases = 0;

/** The run's shared cluster, with a template database that has the mall's schema. */
function sharedCluster(): Promise<{ cluster: PgCluster; template: string }> {
  shared ??= (async () => {
    const cluster = await startCluster({ fsync: false });
    const template = 'mall_template';
    await adminQuery(cluster, `CREATE DATABASE ${template}`);
    const pool = new pg.Pool({ connectionString: cluster.url(template), max: 1 });
    try {
      await migrate(pool);
    } finally {
      await pool.end();
    }
    return { cluster, template };
  })();
  return shared;
}

async function adminQuery(cluster: PgCluster, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url('postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A new, migrated, empty database on the shared cluster: its URL. */
export async function freshDatabase(): Promise<string> {
  const { cluster, template } = await sharedCluster();
  databases += 1;
  const name = `mall_${process.pid}_${databases}`;
  await adminQuery(cluster, `CREATE DATABASE ${name} TEMPLATE ${template}`);
  return cluster.url(name);
}

/** The shared cluster itself (tests that need a second database client). */
export async function sharedPostgres(): Promise<PgCluster> {
  return (await sharedCluster()).cluster;
}

// Every cluster is stopped at the end of the run (a root hook: this module is loaded with the test files).
if (typeof after === 'function') {
  after(function () {
    this.timeout(120_000);
    for (const c of [...running]) c.stop();
  });
}
process.once('exit', () => {
  for (const c of running) {
    killPostmaster(join(c.dir, 'data'));
    rmSync(c.dir, { recursive: true, force: true });
  }
});
