import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { flattenedVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import {
  ACK_TYP,
  BATCH_EVENTS_MAX,
  BATCH_TYP,
  batchPayloadSchema,
  entityId,
  isMallposError,
  parseCanonicalJson,
  sha256Hex,
  STATEMENT_TYP,
  verifyBatchEvents,
  type AckPayload,
  type BatchPayload,
  type FlattenedJws,
} from '../core/index.ts';
import { archivePaths, REGISTRY_TYP, type RegistryEntry } from './archive.ts';
import { allotmentPurchase, clearedByAccount } from './clearing.ts';
import type { AllotmentIssuedData, MallEvent } from './events.ts';
import { batchIngestedData, judgeBatch, type SaleOutcome } from './judge.ts';
import { buildStatement, type StatementPayload } from './statements.ts';
import { own } from './store/dict.ts';
import { applyMallEvent, emptyMallState, positionsSum, type MallState } from './store/state.ts';

/**
 * `mall-sync audit --archive DIR`: recomputes, from the archive alone (the vendors'
 * signed batches, the mall's signed acks and its signed registry history; no database),
 * every vendor's position and every statement the mall issued, with the same pure rules
 * the mall runs (judge.ts, clearing.ts, state.ts), and lists every difference to the
 * minor unit. The archive format is described in docs/PROTOCOL.md, so another party can
 * write its own checker; this one is the mall's.
 *
 * What is checked:
 *  - every file's signature: registry entries and acks by the mall key (mall-key.json,
 *    or a key given), each batch by the vendor key its kid names in the registry as it
 *    stood when the batch was judged (registered to that vendor, not revoked, not retired
 *    before that seq); registry seqs without gaps; each ack names its batch's hash;
 *  - every batch follows the vendor's previous one (seq, batch chain, event chain,
 *    totals, canonical payload) and is judged again against the registry of its ack's
 *    `registrySeq` and arrival `ingestedAt`: the flagged events and the change of every
 *    clearing account (`cleared`) must equal the ack's;
 *  - every archived statement is rebuilt as of its `asOf` (registry entries and each
 *    vendor's batches then ingested): days, totals and position must be equal;
 *  - the positions of all accounts sum to zero.
 */
export interface AuditResult {
  ok: boolean;
  differences: string[];
  registryEntries: number;
  batches: number;
  statements: number;
  /** Every clearing account's position, recomputed from the whole archive. */
  positions: Record<string, number>;
}

interface ArchivedBatch {
  vendor: string;
  seq: number;
  jws: FlattenedJws;
  payloadBytes: Buffer;
  ack: AckPayload;
  ackJws: FlattenedJws;
}

interface StatementFile {
  file: string;
  statement: StatementPayload;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

async function readJws(file: string): Promise<FlattenedJws> {
  const parsed = JSON.parse(await readFile(file, 'utf8')) as FlattenedJws;
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.payload !== 'string') throw new Error(`${file} is not a flattened JWS`);
  return parsed;
}

async function verifyMall<T>(jws: FlattenedJws, key: CryptoKey, typ: string): Promise<T> {
  const { payload, protectedHeader } = await flattenedVerify(jws, key, { algorithms: ['EdDSA'] });
  if (protectedHeader?.typ !== typ) throw new Error(`expected typ ${typ}, found ${String(protectedHeader?.typ)}`);
  return JSON.parse(decoder.decode(payload)) as T;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The mall's state replayed from the archive, as of a point (all of it when `asOf` is null). */
async function replay(
  registry: readonly RegistryEntry[],
  batches: readonly ArchivedBatch[],
  asOf: { registrySeq: number; batches: Record<string, number> } | null,
  differences: string[] | null,
): Promise<MallState> {
  const state = emptyMallState();
  const outcomes = new Map<string, Map<number, SaleOutcome>>();
  const lastRegistry = asOf?.registrySeq ?? registry.length;
  const included = batches
    .filter((b) => asOf === null || b.seq <= (asOf.batches[b.vendor] ?? 0))
    .sort((x, y) => x.ack.registrySeq - y.ack.registrySeq || x.vendor.localeCompare(y.vendor) || x.seq - y.seq);
  let next = 0;
  const note = (message: string) => differences?.push(message);
  const apply = (event: Omit<MallEvent, 'seq' | 'prev' | 'v'>) => {
    applyMallEvent(state, { ...event, seq: state.seq + 1, prev: state.hash, v: 1 } as MallEvent, sha256Hex(`${state.seq + 1}`));
  };
  for (let r = 0; r <= lastRegistry; r++) {
    for (; next < included.length && (included[next] as ArchivedBatch).ack.registrySeq === r; next++) {
      await replayBatch(state, included[next] as ArchivedBatch, outcomes, note, apply);
    }
    if (r < lastRegistry) {
      const entry = registry[r];
      if (entry === undefined) break;
      if (entry.type === 'allotment.issued') {
        // What the vendor owes for an allotment is recomputed, not taken from the entry.
        const a = entry.data as AllotmentIssuedData;
        const tt = own(state.tokenTypes, a.token);
        const expected = tt === undefined ? null : allotmentPurchase(a.vendor, tt, a.units);
        if (expected === null || expected.purchaseMinor !== a.purchaseMinor || !same(expected.transfers, a.transfers)) {
          note(`registry entry ${entry.seq}: allotment ${a.id} charges ${a.purchaseMinor}, the rules charge ${expected?.purchaseMinor ?? 'nothing (unknown token type)'}`);
        }
      }
      apply({ type: entry.type, at: entry.at, data: entry.data } as Omit<MallEvent, 'seq' | 'prev' | 'v'>);
    }
  }
  for (; next < included.length; next++) {
    const b = included[next] as ArchivedBatch;
    note(`batch ${b.seq} of ${b.vendor} was judged against registry entry ${b.ack.registrySeq}, which the archive does not hold`);
  }
  return state;
}

async function replayBatch(
  state: MallState,
  b: ArchivedBatch,
  outcomes: Map<string, Map<number, SaleOutcome>>,
  note: (message: string) => void,
  apply: (event: Omit<MallEvent, 'seq' | 'prev' | 'v'>) => void,
): Promise<void> {
  const where = `batch ${b.seq} of ${b.vendor}`;
  const v = own(state.vendors, b.vendor);
  if (v === undefined) {
    note(`${where}: the vendor is not registered in the registry history it was judged against`);
    return;
  }
  // The signature, by the vendor key the registry held then.
  let kid = '';
  try {
    kid = String((JSON.parse(Buffer.from(b.jws.protected, 'base64url').toString('utf8')) as { kid?: unknown }).kid);
  } catch {
    kid = '';
  }
  const key = own(state.keys, kid);
  if (key === undefined || key.vendor !== b.vendor) return void note(`${where}: signed with key ${kid.slice(0, 64)}, which was not ${b.vendor}'s`);
  if (key.status === 'revoked') return void note(`${where}: signed with key ${kid}, revoked before the batch was judged`);
  if (key.status === 'retired' && key.retiredAtSeq !== null && b.seq > key.retiredAtSeq) return void note(`${where}: signed with key ${kid}, retired at batch ${key.retiredAtSeq}`);
  try {
    const { protectedHeader } = await flattenedVerify(b.jws, await importJWK(key.jwk as JWK, 'EdDSA'), { algorithms: ['EdDSA'] });
    if (protectedHeader?.typ !== BATCH_TYP) return void note(`${where}: the protected header does not say typ ${BATCH_TYP}`);
  } catch {
    return void note(`${where}: the vendor's signature does not verify`);
  }
  const text = (() => {
    try {
      return decoder.decode(b.payloadBytes);
    } catch {
      return null;
    }
  })();
  const claimed = text === null ? null : parseCanonicalJson(text);
  const parsed = batchPayloadSchema.safeParse(claimed);
  if (!parsed.success || (claimed as { events: unknown[] }).events.length > BATCH_EVENTS_MAX) return void note(`${where}: the payload is not a valid canonical batch`);
  const payload = parsed.data as BatchPayload;
  if (payload.vendor !== b.vendor || payload.seq !== b.seq) return void note(`${where}: the payload says batch ${payload.seq} of ${payload.vendor}`);
  if (payload.seq !== v.lastSeq + 1 || payload.prevBatchHash !== v.lastBatchHash || payload.fromSeq !== v.lastEventSeq + 1) {
    return void note(`${where}: does not follow batch ${v.lastSeq} of the vendor`);
  }
  let verified;
  try {
    verified = verifyBatchEvents(payload, v.lastEventHash);
  } catch (err) {
    if (!isMallposError(err)) throw err;
    return void note(`${where}: ${err.message}`);
  }
  const hash = sha256Hex(b.payloadBytes);
  const mine = outcomes.get(b.vendor) ?? new Map<number, SaleOutcome>();
  outcomes.set(b.vendor, mine);
  const judgement = judgeBatch({ vendor: b.vendor, batchSeq: b.seq, ingestedAt: b.ack.ingestedAt, events: verified.events, state, earlierSales: mine });
  const flagged = judgement.flagged.map((f) => ({ eventSeq: f.eventSeq, reason: f.reason }));
  if (!same(flagged, b.ack.flagged)) note(`${where}: the mall flagged ${JSON.stringify(b.ack.flagged).slice(0, 300)}, the rules flag ${JSON.stringify(flagged).slice(0, 300)}`);
  const cleared = clearedByAccount(judgement.clearing);
  if (!same(cleared, b.ack.cleared)) note(`${where}: the mall cleared ${JSON.stringify(b.ack.cleared)}, the rules clear ${JSON.stringify(cleared)}`);
  if (b.ack.lastEventSeq !== payload.toSeq || b.ack.lastEventHash !== verified.lastHash || b.ack.events !== verified.events.length) note(`${where}: the ack does not name the batch's last event`);
  for (const c of judgement.clearing) if (c.type === 'sale') mine.set(c.eventSeq, { kind: 'cleared', record: c });
  for (const f of judgement.flagged) if (f.type === 'sale') mine.set(f.eventSeq, { kind: 'flagged', reason: f.reason });
  const data = batchIngestedData(
    { vendor: b.vendor, seq: b.seq, hash, kid, fromSeq: payload.fromSeq, toSeq: payload.toSeq, createdAt: payload.createdAt, lastEventHash: verified.lastHash, ack: b.ackJws, registrySeq: b.ack.registrySeq },
    judgement,
  );
  apply({ type: 'batch.ingested', at: b.ack.ingestedAt, data });
}

/** Audits an archive directory; see the comment at the top of this file. */
export async function auditArchive(dir: string, opts: { mallJwk?: JWK } = {}): Promise<AuditResult> {
  const paths = archivePaths(dir);
  const differences: string[] = [];
  const jwk = opts.mallJwk ?? ((JSON.parse(await readFile(paths.mallKey, 'utf8')) as { jwk: JWK }).jwk);
  const mallKey = (await importJWK(jwk, 'EdDSA')) as CryptoKey;

  // The registry history: mall-signed, seqs 1..n without gaps.
  const registry: RegistryEntry[] = [];
  for (const name of await listDir(paths.registryDir)) {
    const m = /^registry-(\d{10})\.jws\.json$/.exec(name);
    if (m === null) continue;
    try {
      const entry = await verifyMall<RegistryEntry>(await readJws(join(paths.registryDir, name)), mallKey, REGISTRY_TYP);
      if (entry.seq !== registry.length + 1 || Number(m[1]) !== entry.seq) {
        differences.push(`registry: ${name} holds entry ${entry.seq}, expected entry ${registry.length + 1}`);
        break;
      }
      registry.push(entry);
    } catch (err) {
      differences.push(`registry: ${name} does not carry a valid mall signature (${(err as Error).message})`);
      break;
    }
  }

  // Each vendor's batches and the mall's acks, in seq order.
  const batches: ArchivedBatch[] = [];
  for (const vendor of await listDir(paths.vendorsDir)) {
    if (!entityId.safeParse(vendor).success) continue;
    const names = await listDir(paths.vendorDir(vendor));
    const seqs = names.map((n) => /^batch-(\d{10})\.jws\.json$/.exec(n)?.[1]).filter((x): x is string => x !== undefined).map(Number);
    for (const [i, seq] of seqs.entries()) {
      const where = `batch ${seq} of ${vendor}`;
      if (seq !== i + 1) {
        differences.push(`${where}: batch ${i + 1} is missing from the archive`);
        break;
      }
      try {
        const raw = await readFile(paths.batchFile(vendor, seq), 'utf8');
        const jws = JSON.parse(raw) as FlattenedJws;
        const ackJws = await readJws(paths.ackFile(vendor, seq));
        const ack = await verifyMall<AckPayload>(ackJws, mallKey, ACK_TYP);
        const payloadBytes = Buffer.from(jws.payload, 'base64url');
        if (ack.vendor !== vendor || ack.seq !== seq) differences.push(`${where}: the ack names batch ${ack.seq} of ${ack.vendor}`);
        if (ack.batchHash !== sha256Hex(payloadBytes)) differences.push(`${where}: the archived batch is not the one the mall acknowledged (sha256 differs)`);
        else batches.push({ vendor, seq, jws, payloadBytes, ack, ackJws });
      } catch (err) {
        differences.push(`${where}: cannot be read or its ack does not verify (${(err as Error).message})`);
        break;
      }
    }
  }

  const state = await replay(registry, batches, null, differences);
  const sum = positionsSum(state);
  if (sum !== 0) differences.push(`positions sum to ${sum}, not 0`);

  // Every statement the mall issued, rebuilt as of the point it covers.
  const statements: StatementFile[] = [];
  for (const name of await listDir(paths.statementsDir)) {
    if (!name.endsWith('.jws.json')) continue;
    try {
      statements.push({ file: name, statement: await verifyMall<StatementPayload>(await readJws(join(paths.statementsDir, name)), mallKey, STATEMENT_TYP) });
    } catch (err) {
      differences.push(`statement ${name} does not carry a valid mall signature (${(err as Error).message})`);
    }
  }
  const byPoint = new Map<string, StatementFile[]>();
  for (const s of statements) {
    const key = JSON.stringify(s.statement.asOf ?? null);
    byPoint.set(key, [...(byPoint.get(key) ?? []), s]);
  }
  for (const [key, group] of byPoint) {
    const asOf = JSON.parse(key) as StatementPayload['asOf'] | null;
    if (asOf === null) {
      for (const s of group) differences.push(`statement ${s.file} does not say what it covers (asOf)`);
      continue;
    }
    const at = await replay(registry, batches, asOf, null);
    for (const { file, statement } of group) {
      let rebuilt: StatementPayload;
      try {
        rebuilt = buildStatement({ state: at, observation: null, currency: statement.currency, staleAfterHours: 24, now: new Date(statement.issuedAt) }, statement.vendor, statement.from, statement.to);
      } catch (err) {
        differences.push(`statement ${file}: cannot be rebuilt (${(err as Error).message})`);
        continue;
      }
      for (const field of ['totals', 'days', 'positionMinor'] as const) {
        if (!same(rebuilt[field], statement[field])) differences.push(`statement ${file}: ${field} says ${JSON.stringify(statement[field]).slice(0, 300)}, the archive gives ${JSON.stringify(rebuilt[field]).slice(0, 300)}`);
      }
    }
  }

  const positions = Object.fromEntries(Object.entries(state.positions).sort(([a], [b]) => a.localeCompare(b)));
  return { ok: differences.length === 0, differences, registryEntries: registry.length, batches: batches.length, statements: statements.length, positions };
}
