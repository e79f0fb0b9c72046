import { compactVerify, importJWK, type JWK } from 'jose';
import {
  addToTotals,
  CLOSURE_GENESIS_HASH,
  closureBodyText,
  closureHash,
  emptyTotals,
  fail,
  mergeTotals,
  totalsDifference,
  type ClosureReport,
  type JournalEvent,
  type PeriodClosureReport,
  type PeriodTotals,
  type ZReport,
} from '../../core/index.ts';
import type { Journal } from '../../platform/storage/index.ts';

export interface ClosuresReport {
  z: number;
  months: number;
  years: number;
  lastZ: number | null;
  grandTotalMinor: number;
}

function mismatch(what: string, seq: number, problem: string): never {
  return fail('VND_ERR_CLOSURE_MISMATCH', `${what} (journal seq ${seq}) does not agree with the journal: ${problem}`, { seq });
}

/**
 * Checks every closure in the journal against the events it covers: each Z's totals are
 * summed again from the journal's events in its seq range, its range follows the
 * previous Z's, its number, grand total and chain hash follow on, and its signature
 * verifies with the store's key over its canonical body; each month or year closure
 * sums exactly the Z reports of its period, in order. Throws VND_ERR_CLOSURE_MISMATCH
 * naming the first closure that disagrees.
 */
export async function verifyClosures(journal: Journal, toSeq: number, publicJwk: Record<string, unknown>): Promise<ClosuresReport> {
  // First pass: the closures, in order.
  const closures: { seq: number; at: string; report: ClosureReport }[] = [];
  if (toSeq > 0) {
    for await (const rec of journal.iterate(1, toSeq)) {
      if (!rec.text.includes('"type":"period.closed"')) continue;
      const e = JSON.parse(rec.text) as JournalEvent;
      if (e.type === 'period.closed') closures.push({ seq: e.seq, at: e.at, report: e.data });
    }
  }
  const zs = closures.filter((c): c is { seq: number; at: string; report: ZReport } => c.report.kind === 'Z');

  // Second pass: each Z's range summed again from its events.
  const sums = zs.map(() => emptyTotals());
  if (zs.length > 0) {
    let i = 0;
    const first = zs[0] as { report: ZReport };
    const from = Math.max(1, Math.min(first.report.fromSeq, toSeq));
    for await (const rec of journal.iterate(from, Math.min(toSeq, (zs[zs.length - 1] as { seq: number }).seq))) {
      while (i < zs.length && rec.seq >= (zs[i] as { seq: number }).seq) i += 1;
      const z = zs[i];
      if (z === undefined || rec.seq < z.report.fromSeq) continue;
      addToTotals(sums[i] as PeriodTotals, JSON.parse(rec.text) as JournalEvent, z.report.fromSeq);
    }
  }

  const key = await importJWK(publicJwk as JWK, 'EdDSA');
  const checkSignature = async (what: string, seq: number, r: ClosureReport) => {
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(r.signature, key));
    } catch (err) {
      return mismatch(what, seq, `its signature does not verify with the store's key (${(err as Error).message})`);
    }
    if (Buffer.from(payload).toString('utf8') !== closureBodyText(r)) mismatch(what, seq, 'its signature covers another body');
  };

  let prev: { report: ZReport; seq: number } | null = null;
  for (const [i, z] of zs.entries()) {
    const r = z.report;
    const what = `Z ${r.zNumber} of ${r.day}`;
    const expectedNumber = (prev?.report.zNumber ?? 0) + 1;
    if (r.zNumber !== expectedNumber) mismatch(what, z.seq, `it is numbered ${r.zNumber}, the one before it was ${expectedNumber - 1}`);
    if (prev !== null && r.fromSeq !== prev.seq + 1) mismatch(what, z.seq, `it starts at seq ${r.fromSeq}, the previous Z ended at seq ${prev.seq}`);
    if (r.toSeq !== z.seq - 1) mismatch(what, z.seq, `it says it covers up to seq ${r.toSeq}, but it was journalled at seq ${z.seq}`);
    if (r.closedAt !== z.at) mismatch(what, z.seq, `it says it closed at ${r.closedAt}, its event is dated ${z.at}`);
    const diff = totalsDifference(r.totals, sums[i] as PeriodTotals);
    if (diff !== null) mismatch(what, z.seq, `its ${diff}`);
    const grand = (prev?.report.grandTotalMinor ?? 0) + r.totals.netMinor;
    if (r.grandTotalMinor !== grand) mismatch(what, z.seq, `its grand total is ${r.grandTotalMinor}, the Z reports add up to ${grand}`);
    const prevHash = prev === null ? CLOSURE_GENESIS_HASH : closureHash(prev.report);
    if (r.prevHash !== prevHash) mismatch(what, z.seq, 'it does not chain to the previous Z report');
    await checkSignature(what, z.seq, r);
    prev = { report: r, seq: z.seq };
  }

  // Month and year closures: the Z reports of their period, in order, none left out.
  const zByNumber = new Map(zs.map((z) => [z.report.zNumber, z.report]));
  for (const kind of ['month', 'year'] as const) {
    let last: PeriodClosureReport | null = null;
    for (const c of closures) {
      const r = c.report;
      if (r.kind !== kind) continue;
      const what = `the ${kind} closure ${r.number} of ${r.period}`;
      if (r.number !== (last?.number ?? 0) + 1) mismatch(what, c.seq, `it is numbered ${r.number} after ${last?.number ?? 0}`);
      if (r.fromZ !== (last?.toZ ?? 0) + 1 && last !== null) mismatch(what, c.seq, `it starts at Z ${r.fromZ}, the previous one ended at Z ${last.toZ}`);
      const sum = emptyTotals();
      for (let n = r.fromZ; n <= r.toZ; n += 1) {
        const z = zByNumber.get(n);
        if (z === undefined || z.day.slice(0, r.period.length) !== r.period) mismatch(what, c.seq, `Z ${n} is not a Z report of ${r.period}`);
        mergeTotals(sum, z.totals);
      }
      const next = zByNumber.get(r.toZ + 1);
      if (next !== undefined && next.day.slice(0, r.period.length) === r.period) mismatch(what, c.seq, `it leaves out Z ${r.toZ + 1} of the same ${kind}`);
      const diff = totalsDifference(r.totals, sum);
      if (diff !== null) mismatch(what, c.seq, `its ${diff}`);
      if (r.grandTotalMinor !== (zByNumber.get(r.toZ)?.grandTotalMinor ?? -1)) mismatch(what, c.seq, 'its grand total is not that of its last Z report');
      if (r.prevHash !== (last === null ? CLOSURE_GENESIS_HASH : closureHash(last))) mismatch(what, c.seq, `it does not chain to the previous ${kind} closure`);
      await checkSignature(what, c.seq, r);
      last = r;
    }
  }

  return {
    z: zs.length,
    months: closures.filter((c) => c.report.kind === 'month').length,
    years: closures.filter((c) => c.report.kind === 'year').length,
    lastZ: prev?.report.zNumber ?? null,
    grandTotalMinor: prev?.report.grandTotalMinor ?? 0,
  };
}
