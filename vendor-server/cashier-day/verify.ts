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
  /** The store-wide chain's last Z and grand total (null and 0 where Z reports are per till). */
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
  // One chain per scope: the store's, and each till's where Z reports are made per till.
  const chains = new Map<string, { zs: { seq: number; at: string; report: ZReport }[]; sums: PeriodTotals[]; i: number }>();
  const chainOf = (terminalId: string | null) => {
    const k = terminalId === null ? '' : `till:${terminalId}`;
    let c = chains.get(k);
    if (c === undefined) {
      c = { zs: [], sums: [], i: 0 };
      chains.set(k, c);
    }
    return c;
  };
  for (const z of zs) {
    const c = chainOf(z.report.terminalId);
    c.zs.push(z);
    c.sums.push(emptyTotals());
  }

  // Second pass: each Z's range summed again from its events (a till's Z: that till's events).
  const lastZSeq = zs.length === 0 ? 0 : (zs[zs.length - 1] as { seq: number }).seq;
  if (lastZSeq > 0) {
    for await (const rec of journal.iterate(1, Math.min(toSeq, lastZSeq))) {
      const e = JSON.parse(rec.text) as JournalEvent;
      for (const k of e.terminal === null ? [''] : ['', `till:${e.terminal}`]) {
        const c = chains.get(k);
        if (c === undefined) continue;
        while (c.i < c.zs.length && rec.seq >= (c.zs[c.i] as { seq: number }).seq) c.i += 1;
        const z = c.zs[c.i];
        if (z === undefined || rec.seq < z.report.fromSeq) continue;
        addToTotals(c.sums[c.i] as PeriodTotals, e, z.report.fromSeq);
      }
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
  const whose = (terminalId: string | null) => (terminalId === null ? '' : ` of till ${terminalId}`);

  let last: ZReport | null = null;
  for (const c of chains.values()) {
    let prev: { report: ZReport; seq: number } | null = null;
    for (const [i, z] of c.zs.entries()) {
      const r = z.report;
      const what = `Z ${r.zNumber}${whose(r.terminalId)} of ${r.day}`;
      const expectedNumber = (prev?.report.zNumber ?? 0) + 1;
      if (r.zNumber !== expectedNumber) mismatch(what, z.seq, `it is numbered ${r.zNumber}, the one before it was ${expectedNumber - 1}`);
      if (prev !== null && r.fromSeq !== prev.seq + 1) mismatch(what, z.seq, `it starts at seq ${r.fromSeq}, the previous Z ended at seq ${prev.seq}`);
      if (r.toSeq !== z.seq - 1) mismatch(what, z.seq, `it says it covers up to seq ${r.toSeq}, but it was journalled at seq ${z.seq}`);
      if (r.closedAt !== z.at) mismatch(what, z.seq, `it says it closed at ${r.closedAt}, its event is dated ${z.at}`);
      const diff = totalsDifference(r.totals, c.sums[i] as PeriodTotals);
      if (diff !== null) mismatch(what, z.seq, `its ${diff}`);
      const grand = (prev?.report.grandTotalMinor ?? 0) + r.totals.netMinor;
      if (r.grandTotalMinor !== grand) mismatch(what, z.seq, `its grand total is ${r.grandTotalMinor}, the Z reports add up to ${grand}`);
      const prevHash = prev === null ? CLOSURE_GENESIS_HASH : closureHash(prev.report);
      if (r.prevHash !== prevHash) mismatch(what, z.seq, 'it does not chain to the previous Z report');
      await checkSignature(what, z.seq, r);
      prev = { report: r, seq: z.seq };
    }
    if (c === chains.get('')) last = prev?.report ?? null;
  }

  // Month and year closures: the Z reports of their period and chain, in order, none left out.
  const zByNumber = new Map(zs.map((z) => [`${z.report.terminalId ?? ''}#${z.report.zNumber}`, z.report]));
  for (const kind of ['month', 'year'] as const) {
    const lastOf = new Map<string, PeriodClosureReport>();
    for (const c of closures) {
      const r = c.report;
      if (r.kind !== kind) continue;
      const chain = r.terminalId ?? '';
      const before = lastOf.get(chain) ?? null;
      const zOf = (n: number) => zByNumber.get(`${chain}#${n}`);
      const what = `the ${kind} closure ${r.number}${whose(r.terminalId)} of ${r.period}`;
      if (r.number !== (before?.number ?? 0) + 1) mismatch(what, c.seq, `it is numbered ${r.number} after ${before?.number ?? 0}`);
      if (before !== null && r.fromZ !== before.toZ + 1) mismatch(what, c.seq, `it starts at Z ${r.fromZ}, the previous one ended at Z ${before.toZ}`);
      const sum = emptyTotals();
      for (let n = r.fromZ; n <= r.toZ; n += 1) {
        const z = zOf(n);
        if (z === undefined || z.day.slice(0, r.period.length) !== r.period) mismatch(what, c.seq, `Z ${n} is not a Z report of ${r.period}`);
        mergeTotals(sum, z.totals);
      }
      const next = zOf(r.toZ + 1);
      if (next !== undefined && next.day.slice(0, r.period.length) === r.period) mismatch(what, c.seq, `it leaves out Z ${r.toZ + 1} of the same ${kind}`);
      const diff = totalsDifference(r.totals, sum);
      if (diff !== null) mismatch(what, c.seq, `its ${diff}`);
      if (r.grandTotalMinor !== (zOf(r.toZ)?.grandTotalMinor ?? -1)) mismatch(what, c.seq, 'its grand total is not that of its last Z report');
      if (r.prevHash !== (before === null ? CLOSURE_GENESIS_HASH : closureHash(before))) mismatch(what, c.seq, `it does not chain to the previous ${kind} closure`);
      await checkSignature(what, c.seq, r);
      lastOf.set(chain, r);
    }
  }

  return {
    z: zs.length,
    months: closures.filter((c) => c.report.kind === 'month').length,
    years: closures.filter((c) => c.report.kind === 'year').length,
    lastZ: last?.zNumber ?? null,
    grandTotalMinor: last?.grandTotalMinor ?? 0,
  };
}
