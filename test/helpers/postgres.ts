import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../mall-sync/store/postgres-migrate.ts';
import { announcement, RUN_DIR_ENV, sharedInRun } from './run-shared.ts';

/**
 * A real PostgreSQL server for the tests: Debian's binaries (`initdb`, `pg_ctl`), a
 * cluster in a temp directory, reached only through a unix socket in that directory (no
 * TCP port, so nothing collides with other runs). `initdb` refuses to run as root: as
 * root the server runs as the `postgres` user (or `nobody`), which owns the directory.
 *
 * One shared cluster serves a whole test run, all parallel workers included:
 * `freshDatabase()` copies a migrated template database (CREATE DATABASE ... TEMPLATE),
 * which takes milliseconds, instead of one initdb per test. The run's main process stops
 * it at the end; a cluster a test starts for itself is stopped by that test, and killed
 * at the process's exit if it was not.
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
const urlFor = (dir: string) => (database: string) => `postgresql://${SUPERUSER}@localhost/${database}?host=${encodeURIComponent(dir)}&port=${SOCKET_PORT}`;

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
export async function startCluster(opts: { fsync?: boolean; sharedBuffers?: string; maxConnections?: number } = {}): Promise<PgCluster> {
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
    `-c max_connections=${opts.maxConnections ?? 200}`,
    `-c shared_buffers=${opts.sharedBuffers ?? '32MB'}`,
    `-c fsync=${opts.fsync === false ? 'off' : 'on'}`,
    `-c full_page_writes=${opts.fsync === false ? 'off' : 'on'}`,
  ].join(' ');
  const cluster: PgCluster = {
    dir,
    socketDir: dir,
    url: urlFor(dir),
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

/** What a test needs of the run's shared cluster: its directory and its connection URLs. */
export interface SharedPostgres {
  dir: string;
  url(database: string): string;
}

const NAME = 'postgres';
/** How long a worker waits for another to bring the shared cluster up: initdb on a busy machine. */
const SHARED_START_DEADLINE_MS = 180_000;

let shared: Promise<{ cluster: SharedPostgres; template: string }> | null = null;
let databases = 0;

const TEMPLATE = 'mall_template';

/** A new cluster with a template database that has the mall's schema. */
async function startTemplatedCluster(): Promise<PgCluster> {
  const cluster = await startCluster({ fsync: false, maxConnections: 500 });
  await adminQuery(cluster, `CREATE DATABASE ${TEMPLATE}`);
  const pool = new pg.Pool({ connectionString: cluster.url(TEMPLATE), max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return cluster;
}

/**
 * The run's shared cluster, with a template database that has the mall's schema: the
 * first process that needs it starts it (`sharedInRun`); the main process stops it at the
 * end of the run (`stopSharedPostgres`). Without a run directory (a test file loaded some
 * other way) the process starts a cluster of its own, stopped at its exit.
 */
function sharedCluster(): Promise<{ cluster: SharedPostgres; template: string }> {
  shared ??= (async () => {
    const runDir = process.env[RUN_DIR_ENV];
    if (runDir === undefined) return { cluster: await startTemplatedCluster(), template: TEMPLATE };
    const { announced } = await sharedInRun(
      runDir,
      NAME,
      async () => {
        const cluster = await startTemplatedCluster();
        // The run's main process stops it, not this one: a worker may end before the others.
        running.delete(cluster);
        return { dir: cluster.dir };
      },
      SHARED_START_DEADLINE_MS,
    );
    return { cluster: { dir: announced.dir, url: urlFor(announced.dir) }, template: TEMPLATE };
  })();
  return shared;
}

/**
 * Stops the run's shared cluster, if a process started one: called by the main process
 * at the end of the run, or at its exit (`immediate`: no time to wait for a clean stop).
 */
export function stopSharedPostgres(runDir: string, immediate = false): void {
  const ready = announcement(runDir, NAME);
  if (!existsSync(ready)) return;
  const { dir } = JSON.parse(readFileSync(ready, 'utf8')) as { dir: string };
  const data = join(dir, 'data');
  if (immediate) {
    killPostmaster(data);
  } else if (existsSync(join(data, 'postmaster.pid'))) {
    try {
      run(serverUser(), join(postgresBinDir(), 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], 90_000);
    } catch {
      killPostmaster(data);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(ready, { force: true });
}

async function adminQuery(cluster: SharedPostgres, sql: string): Promise<void> {
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
  // The process id keeps names apart across the run's parallel workers.
  const name = `mall_${process.pid}_${databases}`;
  await adminQuery(cluster, `CREATE DATABASE ${name} TEMPLATE ${template}`);
  return cluster.url(name);
}

/** The shared cluster itself (tests that need a second database client). */
export async function sharedPostgres(): Promise<SharedPostgres> {
  return (await sharedCluster()).cluster;
}

// A cluster this process started and did not stop (or hand over to the run) dies with it.
process.once('exit', () => {
  for (const c of running) {
    killPostmaster(join(c.dir, 'data'));
    rmSync(c.dir, { recursive: true, force: true });
  }
});
