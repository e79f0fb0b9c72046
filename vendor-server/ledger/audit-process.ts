import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { auditReport, LOWEST_PRIORITY, type AuditJob } from './store.ts';

/**
 * The integrity audit's own process (started by IntegrityAudit in store.ts): it replays
 * the ledger's files from seq 1 and writes one JSON line, an AuditReport, to stdout.
 *
 * It ends as soon as its stdin closes: the server holds the other end, so a server that
 * exits, crashes or is killed (SIGKILL included) never leaves an audit behind.
 */

const job = JSON.parse(process.argv[2] ?? '') as AuditJob;
const nice = job.nice ?? LOWEST_PRIORITY;

// The parent lowers this process's main thread, but V8 and libuv start threads of their
// own before that, and Linux gives each thread its own nice value: every thread there is
// now is lowered too; threads started later inherit the main thread's.
try {
  for (const tid of readdirSync('/proc/self/task')) setPriority(Number(tid), nice);
} catch {
  setPriority(nice);
}

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

void auditReport(job).then((report) => process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0)));
