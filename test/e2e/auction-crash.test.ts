import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import type { Ack, JournalEvent } from '../../core/index.ts';
import type { BidAck, LotView } from '../../core/auctions.ts';
import { authorityFor } from '../helpers/http.ts';
import { killHard, operatorApi, pairTill, runCli, spawnVendorServer, until, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/vendor.ts';
import { OPERATOR_TOKEN_ENV } from '../../vendor-server/cashier-day/cli.ts';
import { replayBalances } from '../vendor-server/auction-helpers.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const TILLS = 20;
/** Bids each till makes on the shared lot: the load is sized by count, not by time. */
const BIDS_PER_TILL = 4;
const KILL_ROUNDS = 3;
const CLOSE_KILL_ROUNDS = 3;
const INCREMENT = 5;
/** Bounds on waiting for what must happen; they catch a hang and say nothing about speed. */
const ACK_TIMEOUT_MS = 30_000;
const ROUND_DEADLINE_MS = 120_000;

interface Attempt {
  key: string;
  till: number;
  lotId: string;
  units: number;
  acked: BidAck | null;
}

/**
 * The vendor server as a child process; 20 tills bid concurrently on one lot. Every
 * accepted bid beats the one before by exactly the increment (each till bids the least
 * the lot takes), every outbid hold goes back, and balances equal a replay of the
 * journal. Then SIGKILL at random moments while they bid, and around lots' closes:
 * after each restart every acknowledged bid is in the journal once, no tokens are lost
 * or doubled, and each lot closes exactly once.
 */
describe('e2e: auctions under concurrent bids and SIGKILL', function () {
  this.timeout((KILL_ROUNDS + CLOSE_KILL_ROUNDS + 2) * ROUND_DEADLINE_MS);
  let dir: string;
  let cleanup: () => Promise<void>;
  let operatorToken: string;
  let server: ChildServer | null = null;
  const op = operatorApi(() => server, () => operatorToken);
  const cards: string[] = [];
  const credentials: { terminalId: string; credential: string }[] = [];
  const attempts: Attempt[] = [];
  let initialTotal = 0;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-auction-crash-'));
    const init = await runCli(['init', '--data-dir', dir, '--demo', '--pin-hash-cost', String(TEST_PIN_HASH_COST)]);
    expect(init.code, init.stderr).to.equal(0);
    operatorToken = /^\s+(mpo_\S+)$/m.exec(init.stdout)?.[1] ?? '';
    // The CLI reads the operator credential from its environment, never its command line.
    process.env[OPERATOR_TOKEN_ENV] = operatorToken;
    server = await spawnVendorServer(dir);
    const allotted = await op('POST', '/api/allotments', { token: 'ACME', units: 10_000_000, reference: 'own tokens for the auction test' }, { 'idempotency-key': randomUUID() });
    expect(allotted.status, allotted.text).to.equal(200);
    for (let i = 0; i < TILLS; i++) {
      const c = JSON.parse((await op('POST', '/api/customers', { name: `Bidder ${i}` })).text) as { id: string; card: string };
      const issued = await op('POST', '/api/issuances', { customerId: c.id, token: 'ACME', units: 100_000, reason: 'reward' }, { 'idempotency-key': randomUUID() });
      expect(issued.status, issued.text).to.equal(200);
      cards.push(c.card);
      expect((await op('PUT', `/api/staff/bidder-${i}`, { name: `Cashier ${i}`, role: 'cashier', pin: '2468' })).status).to.equal(200);
      credentials.push(await pairTill(op, server.url, `Auction till ${i}`));
    }
    initialTotal = totalAcme(await journal());
  });
  after(async () => {
    delete process.env[OPERATOR_TOKEN_ENV];
    if (server !== null) await killHard(server.child);
    await cleanup();
  });

  async function journal(): Promise<JournalEvent[]> {
    const res = await op('GET', '/api/ledger/export?format=jsonl');
    expect(res.status).to.equal(200);
    const lines = res.text.trim().split('\n');
    lines.pop();
    return lines.map((l) => (JSON.parse(l) as { event: JournalEvent }).event);
  }

  /** All ACME units on every account but the issuer's: allotments in, nothing else in or out. */
  function totalAcme(events: JournalEvent[]): number {
    const b = replayBalances(events, 'acme');
    let n = 0;
    for (const [account, row] of Object.entries(b)) if (!account.startsWith('issuer:')) n += row['ACME'] ?? 0;
    return n;
  }

  async function createLot(closesAt: string): Promise<LotView> {
    const res = await createLotCli(closesAt);
    expect(res.code, res.stderr).to.equal(0);
    return JSON.parse(res.stdout) as LotView;
  }

  function createLotCli(closesAt: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runCli(['lot', 'create', '--data-dir', dir, '--url', server?.url ?? '', '--title', 'Vintage radio', '--token', 'ACME', '--increment', String(INCREMENT), '--reserve', '20', '--closes-at', closesAt, '--snipe-window', '0'], 60_000);
  }

  /**
   * A lot that closes `ms` after the store takes it. On a busy machine the CLI can start
   * too late for a close time picked before it: the store refuses a close in the past,
   * and the lot is asked for again, further ahead.
   */
  async function createLotClosingIn(ms: number): Promise<{ lot: LotView; closesAt: Date }> {
    for (let ahead = ms; ; ahead *= 2) {
      const closesAt = new Date(Date.now() + ahead);
      const res = await createLotCli(closesAt.toISOString());
      if (res.code === 0) return { lot: JSON.parse(res.stdout) as LotView, closesAt };
      expect(res.stderr, res.stderr).to.match(/VND_ERR_LOT_INVALID/).and.match(/close in the future/);
      expect(ahead, 'a lot closing within a minute').to.be.below(60_000);
    }
  }

  async function openTills(): Promise<Socket[]> {
    const url = server?.url ?? '';
    const sockets = credentials.map((c) => io(url, { auth: { token: c.credential }, ca: authorityFor(url), transports: ['websocket'], reconnection: false, forceNew: true, timeout: ACK_TIMEOUT_MS }));
    await Promise.all(
      sockets.map(async (s, i) => {
        await new Promise<void>((resolve) => {
          s.once('connect', () => resolve());
          s.once('connect_error', () => resolve());
          s.once('disconnect', () => resolve());
        });
        if (!s.connected) return;
        const ack = (await s.timeout(ACK_TIMEOUT_MS).emitWithAck('cashier:login', { staffId: `bidder-${i}`, pin: '2468' }).catch(() => null)) as Ack<unknown> | null;
        if (ack !== null && !ack.ok) throw new Error(`sign-in refused: ${ack.error.code}`);
      }),
    );
    return sockets;
  }

  /**
   * One till's bids: each the least the lot takes, learnt from a refusal when another till
   * got there first. Unanswered attempts (the server died) are kept to retry with their key.
   */
  async function bidLoop(socket: Socket, i: number, lotId: string, count: number, onAck: () => void, stop: () => boolean): Promise<void> {
    let min = INCREMENT;
    let made = 0;
    const pending = attempts.filter((a) => a.till === i && a.acked === null && a.lotId === lotId);
    while (made < count && !stop() && socket.connected) {
      const retry = pending.shift();
      const attempt: Attempt = retry ?? { key: `${credentials[i]?.terminalId}:${randomUUID()}`, till: i, lotId, units: min, acked: null };
      if (retry === undefined) attempts.push(attempt);
      let ack: Ack<BidAck>;
      try {
        ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('lot:bid', { key: attempt.key, lotId: attempt.lotId, card: cards[i], units: attempt.units })) as Ack<BidAck>;
      } catch {
        return;
      }
      if (ack.ok) {
        attempt.acked = ack.data;
        made += 1;
        min = ack.data.units + INCREMENT;
        onAck();
        continue;
      }
      // A refused bid moved nothing: it is no longer pending.
      attempts.splice(attempts.indexOf(attempt), 1);
      if (ack.error.code === 'VND_ERR_BID_TOO_LOW') min = ack.error.details?.['minBidUnits'] as number;
      else if (ack.error.code === 'VND_ERR_LOT_CLOSED') return;
      else throw new Error(`bid refused: ${ack.error.code} ${ack.error.message}`);
    }
  }

  /** What must hold after any crash: acknowledged bids once, balances a replay, tokens conserved, escrows exactly the high bids, each closed lot closed once. */
  async function checkLedger(): Promise<JournalEvent[]> {
    const events = await journal();
    const byKey = new Map<string, number>();
    for (const e of events) if (e.key !== null) byKey.set(e.key, (byKey.get(e.key) ?? 0) + 1);
    for (const a of attempts) {
      const n = byKey.get(a.key) ?? 0;
      if (a.acked !== null) expect(n, `acknowledged bid ${a.key}`).to.equal(1);
      else expect(n).to.be.at.most(1);
    }
    const balances = replayBalances(events, 'acme');
    for (const [account, row] of Object.entries(balances)) for (const [token, units] of Object.entries(row)) if (!account.startsWith('issuer:')) expect(units, `${account} ${token}`).to.be.at.least(0);
    expect(totalAcme(events)).to.equal(initialTotal);
    // Each lot: bids in rising order by the increment, its escrow the high bid while open, closed at most once.
    const lots = new Map<string, { high: number; closes: number; open: boolean }>();
    for (const e of events) {
      if (e.type === 'lot.opened') lots.set(e.data.lotId, { high: 0, closes: 0, open: true });
      if (e.type === 'lot.bid') {
        const l = lots.get(e.data.lotId);
        expect(l?.open).to.equal(true);
        if (l !== undefined) {
          // A retry after a crash repeats its bid as first sent, which may beat the high bid by more.
          if (l.high > 0) expect(e.data.units, `bid on ${e.data.lotId}`).to.be.at.least(l.high + INCREMENT);
          l.high = e.data.units;
        }
      }
      const closed = e.type === 'lot.closed' ? e.data.lotId : e.type === 'sale' && e.data.lot !== undefined ? e.data.lot.lotId : null;
      if (closed !== null) {
        const l = lots.get(closed);
        if (l !== undefined) {
          l.closes += 1;
          l.open = false;
        }
      }
    }
    for (const [lotId, l] of lots) {
      expect(l.closes, `closes of ${lotId}`).to.be.at.most(1);
      expect(balances[`escrow:${lotId}`]?.['ACME'] ?? 0, `escrow of ${lotId}`).to.equal(l.open ? l.high : 0);
    }
    return events;
  }

  it(`takes ${TILLS} tills bidding at once on one lot: each accepted bid beats the last by the increment, one winner, every loser paid back`, async () => {
    const lot = await createLot(new Date(Date.now() + 3_600_000).toISOString());
    const sockets = await openTills();
    await Promise.all(sockets.map((s, i) => bidLoop(s, i, lot.lotId, BIDS_PER_TILL, () => undefined, () => false)));
    for (const s of sockets) s.disconnect();
    const events = await checkLedger();
    const bids = events.filter((e) => e.type === 'lot.bid' && e.data.lotId === lot.lotId);
    expect(bids.length).to.equal(TILLS * BIDS_PER_TILL);
    // Without crashes every till bids the least the lot takes: each bid is the one before plus the increment.
    bids.forEach((b, n) => expect(b.type === 'lot.bid' && b.data.units).to.equal(INCREMENT * (n + 1)));
    // Every bidder but the high one holds all their tokens again.
    const balances = replayBalances(events, 'acme');
    const holders = Object.entries(balances).filter(([a, row]) => a.startsWith('customer:') && row['ACME'] === 100_000);
    expect(holders.length).to.be.at.least(TILLS - 1);
  });

  it(`keeps every acknowledged bid exactly once over ${KILL_ROUNDS} kills while tills bid`, async () => {
    const lot = await createLot(new Date(Date.now() + 3_600_000).toISOString());
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const sockets = await openTills();
      let acked = 0;
      let stop = false;
      const killAt = 1 + Math.floor(Math.random() * 2 * TILLS);
      let reached: () => void = () => undefined;
      const killMoment = new Promise<void>((resolve) => (reached = resolve));
      const loops = sockets.map((s, i) =>
        bidLoop(s, i, lot.lotId, 1_000, () => {
          acked += 1;
          if (acked === killAt) reached();
        }, () => stop),
      );
      await Promise.race([killMoment, Promise.all(loops)]);
      await killHard((server as ChildServer).child);
      stop = true;
      await Promise.all(loops);
      for (const s of sockets) s.disconnect();
      server = await spawnVendorServer(dir);
      await checkLedger();
    }
  });

  it(`closes each lot exactly once over ${CLOSE_KILL_ROUNDS} kills around its close`, async () => {
    for (let round = 0; round < CLOSE_KILL_ROUNDS; round++) {
      const { lot, closesAt } = await createLotClosingIn(3_000);
      const sockets = await openTills();
      // A few bids, then the close; the kill falls somewhere from just before to just after it.
      await Promise.all(sockets.slice(0, 3).map((s, i) => bidLoop(s, i, lot.lotId, 2, () => undefined, () => Date.now() >= closesAt.getTime())));
      for (const s of sockets) s.disconnect();
      const killAtMs = closesAt.getTime() - 100 + Math.floor(Math.random() * 400);
      await until('the kill moment', () => (Date.now() >= killAtMs ? true : undefined), ROUND_DEADLINE_MS);
      await killHard((server as ChildServer).child);
      server = await spawnVendorServer(dir);
      // The lot's close time has passed: it is closed at once on start, if the kill came first.
      await until(`lot ${lot.lotId} closed`, async () => {
        const v = JSON.parse((await op('GET', `/api/lots/${lot.lotId}`)).text) as LotView;
        return v.status === 'closed' ? v : undefined;
      }, ROUND_DEADLINE_MS);
      const events = await checkLedger();
      const sales = events.filter((e) => e.type === 'sale' && e.data.lot?.lotId === lot.lotId);
      const unsold = events.filter((e) => e.type === 'lot.closed' && e.data.lotId === lot.lotId);
      expect(sales.length + unsold.length).to.equal(1);
    }
    // The journal and the checkpoint still verify after all of it.
    (server as ChildServer).child.kill('SIGTERM');
    await new Promise((r) => server?.child.once('exit', r));
    server = null;
    const verify = await runCli(['verify', '--data-dir', dir]);
    expect(verify.code, verify.stderr).to.equal(0);
    expect(JSON.parse(verify.stdout).ok).to.equal(true);
  });
});
