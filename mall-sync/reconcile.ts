import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatMinor } from '../core/index.ts';
import { writeFileDurable } from '../platform/storage/index.ts';
import { withMallAdmin } from './admin-client.ts';
import { mallPaths } from './config.ts';
import type { SignedStatement } from './service.ts';
import { checkRange, statementCsv, statementProblems } from './statements.ts';

export interface ReconcileResult {
  from: string;
  to: string;
  outDir: string;
  statements: SignedStatement[];
  files: string[];
  /** Undecided gaps, tamper and wallet alarms, and wallet differences found, each with its remedy: reconcile exits 2 when there are any. */
  problems: string[];
  /** Gaps an admin decided on (wait, or resend from a seq): reported, not a failure. */
  decided: string[];
}

/**
 * Reconciles a range of UTC days: every vendor's statement as CSV, JSON and a JSON JWS
 * signed by the mall key (verifiable with the snapshot's mall JWK), written durably into
 * `outDir`, plus `reconcile.json` listing the files and problems. Works against the
 * running mall (through its control token) or, when none runs, opens the store itself.
 */
export async function reconcile(dataDir: string, from: string, to: string, outDir?: string): Promise<ReconcileResult> {
  const range = checkRange(from, to);
  const out = outDir ?? join(mallPaths(dataDir).statementsDir, `${range.from}_${range.to}`);
  const { statements, wallet } = await withMallAdmin(dataDir, async (client) => ({ statements: await client.statements(range.from, range.to), wallet: await client.walletCheck() }));
  await mkdir(out, { recursive: true });
  const files: string[] = [];
  const problems: string[] = [];
  const decided: string[] = [];
  for (const s of statements) {
    const base = join(out, `${s.vendor}_${range.from}_${range.to}`);
    await writeFileDurable(`${base}.csv`, statementCsv(s.statement));
    await writeFileDurable(`${base}.json`, `${JSON.stringify(s.statement, null, 2)}\n`);
    await writeFileDurable(`${base}.jws.json`, `${JSON.stringify(s.jws)}\n`);
    files.push(`${base}.csv`, `${base}.json`, `${base}.jws.json`);
    const found = statementProblems(s.statement);
    problems.push(...found.problems);
    decided.push(...found.decided);
  }
  // The clearing sums to zero and the wallets hold what the stores' mall-wallet postings say.
  problems.push(...wallet.problems);
  const summary = {
    from: range.from,
    to: range.to,
    vendors: statements.map((s) => ({
      vendor: s.vendor,
      netMinor: s.statement.totals.netMinor,
      transactions: s.statement.totals.transactions,
      lastBatchSeq: s.statement.completeness.lastBatchSeq,
      gap: s.statement.completeness.gap,
      gapDecision: s.statement.completeness.gapDecision,
      alarms: s.statement.completeness.alarms.length,
      flaggedEvents: s.statement.completeness.flaggedEvents,
    })),
    wallet: wallet.tokens,
    problems,
    decidedGaps: decided,
    files,
  };
  await writeFileDurable(join(out, 'reconcile.json'), `${JSON.stringify(summary, null, 2)}\n`);
  files.push(join(out, 'reconcile.json'));
  return { from: range.from, to: range.to, outDir: out, statements, files, problems, decided };
}

/** One line per vendor for a person reading the terminal. */
export function describeStatement(s: SignedStatement): string {
  const st = s.statement;
  const t = st.totals;
  const c = st.completeness;
  const ago = c.secondsSinceLastBatch === null ? 'never' : `${Math.round(c.secondsSinceLastBatch / 60)} min ago`;
  return (
    `${st.vendor}: net ${formatMinor(t.netMinor, st.currency)} (${t.transactions} transactions, ${t.refunds} refunds, gross ${formatMinor(t.grossMinor, st.currency)}, ` +
    `royalty ${formatMinor(t.royaltyMinor, st.currency)}); last batch ${c.lastBatchSeq} (${ago}); ` +
    `gap: ${c.gap === null ? 'none' : `batch ${c.gap.expectedSeq} missing${c.gapDecision === null ? '' : ` (decided: ${c.gapDecision.decision})`}`}; alarms: ${c.alarms.length}; flagged: ${c.flaggedEvents}`
  );
}
