import { createHash, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import type { Ack, SaleResult } from '../../core/index.ts';
import { GENESIS_HASH } from '../../platform/storage/index.ts';
import { authorityFor } from '../helpers/http.ts';
import { killHard, operatorApi, pairTill, runCli, spawnVendorServer, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const CLIENTS = 20;
const ROUNDS = 20;
const PRODUCTS = ['4006381333931', '5901234123457', '9001001000014'];
/**
 * Bounds on waiting for what must happen (a connection, a sign-in, an ack, a round's
 * sales): they catch a hang and say nothing about speed, so a machine busy with other
 * work passes too. A kill fails pending acks at once (the socket disconnects), so a long
 * timeout costs nothing.
 */
const ACK_TIMEOUT_MS = 30_000;
const ROUND_DEADLINE_MS = 120_000;

interface Attempt {
  key: string;
  body: Record<string, unknown>;
  acked: SaleResult | null;
}

/**
 * The vendor server as a child process, 20 terminals committing sales concurrently,
 * SIGKILL at a random moment, restart; 20 rounds. The moment is a random count of acks
 * into the round (from the first to three per terminal), not a time, so each round
 * kills the server with sales in every stage of flight however fast the machine is. After each restart: every acknowledged
 * sale is in the journal exactly once, balances equal a replay of the journal's
 * postings, nothing is negative, and the hash chain verifies.
 */
describe('e2e: vendor server survives SIGKILL at any moment', function () {
  this.timeout(ROUNDS * ROUND_DEADLINE_MS);
  let dir: string;
  let cleanup: () => Promise<void>;
  let operatorToken: string;
  let server: ChildServer | null = null;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-crash-'));
    const init = await runCli(['init', '--data-dir', dir, '--demo', '--pin-hash-cost', String(TEST_PIN_HASH_COST)]);
    expect(init.code, init.stderr).to.equal(0);
    operatorToken = /^\s+(mpo_\S+)$/m.exec(init.stdout)?.[1] ?? '';
    expect(operatorToken).to.match(/^mpo_/);
  });
  after(async () => {
    if (server !== null) await killHard(server.child);
    await cleanup();
  });

  const op = operatorApi(() => server, () => operatorToken);

  it(`keeps every acknowledged sale exactly once over ${ROUNDS} kills`, async () => {
    server = await spawnVendorServer(dir);
    // One customer per terminal, each with plenty of tokens.
    const allotted = await op('POST', '/api/allotments', { token: 'ACME', units: 100_000_000, reference: 'own tokens for the crash test' }, { 'idempotency-key': randomUUID() });
    expect(allotted.status, allotted.text).to.equal(200);
    const cards: string[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const c = JSON.parse((await op('POST', '/api/customers', { name: `Crash customer ${i}` })).text) as { id: string; card: string };
      const issued = await op('POST', '/api/issuances', { customerId: c.id, token: 'ACME', units: 2_000_000, reason: 'reward' }, { 'idempotency-key': randomUUID() });
      expect(issued.status, issued.text).to.equal(200);
      cards.push(c.card);
    }
    const credentials: { terminalId: string; credential: string }[] = [];
    // One cashier per till: sales need a signed-in cashier on each connection.
    for (let i = 0; i < CLIENTS; i++) {
      const staff = await op('PUT', `/api/staff/crash-${i}`, { name: `Crash cashier ${i}`, role: 'cashier', pin: '2468' });
      expect(staff.status, staff.text).to.equal(200);
    }
    const signIn = async (socket: Socket, i: number) => {
      // Twenty sign-ins queue for one scrypt thread: on a busy machine the last waits long.
      const ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('cashier:login', { staffId: `crash-${i}`, pin: '2468' })) as Ack<unknown>;
      if (!ack.ok) throw new Error(`sign-in refused: ${ack.error.code}`);
    };
    for (let i = 0; i < CLIENTS; i++) {
      credentials.push(await pairTill(op, server.url, `Crash till ${i}`));
    }

    const attempts: Attempt[] = [];
    let totalAcked = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const url = server.url;
      const sockets: Socket[] = credentials.map((c) => io(url, { auth: { token: c.credential }, ca: authorityFor(url), transports: ['websocket'], reconnection: false, forceNew: true, timeout: ACK_TIMEOUT_MS }));
      let stop = false;
      const killAt = 1 + Math.floor(Math.random() * 3 * CLIENTS);
      let roundAcked = 0;
      let reached: () => void = () => undefined;
      const killMoment = new Promise<void>((resolve) => (reached = resolve));
      const loops = sockets.map(async (socket, i) => {
        // A kill while the handshake is in flight ends it with 'disconnect', not 'connect_error'.
        await new Promise<void>((resolve) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', () => resolve());
          socket.once('disconnect', () => resolve());
        });
        if (!socket.connected) return;
        try {
          await signIn(socket, i);
        } catch (err) {
          if ((err as Error).message.startsWith('sign-in refused')) throw err;
          return; // The server died before the sign-in was answered.
        }
        // Unfinished attempts of earlier rounds are retried with their key and body first.
        const mine = attempts.filter((a) => a.acked === null && a.key.startsWith(`${credentials[i]?.terminalId}:`));
        while (!stop && socket.connected) {
          const retry = mine.shift();
          const attempt: Attempt = retry ?? {
            key: `${credentials[i]?.terminalId}:${randomUUID()}`,
            body: {
              lines: PRODUCTS.map((code, j) => ({ code, qty: 1 + ((i + j) % 3) })),
              card: cards[i],
              tenders: [{ token: 'ACME', units: 1 + Math.floor(Math.random() * 50) }],
              cashTenderedMinor: 10_000,
            },
            acked: null,
          };
          if (retry === undefined) attempts.push(attempt);
          try {
            const ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sale:commit', { key: attempt.key, ...attempt.body })) as Ack<SaleResult>;
            if (!ack.ok) throw new Error(`sale refused: ${ack.error.code} ${ack.error.message}`);
            attempt.acked = ack.data;
            totalAcked += 1;
            roundAcked += 1;
            if (roundAcked === killAt) reached();
          } catch (err) {
            if ((err as Error).message.startsWith('sale refused')) throw err;
            return; // The server died: the outcome of this attempt is unknown until a retry.
          }
        }
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`round ${round}: ${roundAcked} of ${killAt} acks within ${ROUND_DEADLINE_MS} ms`)), ROUND_DEADLINE_MS);
      });
      // A loop that throws (a refused sale) fails the test at once rather than at the deadline.
      await Promise.race([killMoment, deadline, Promise.all(loops).then(() => killMoment)]).finally(() => clearTimeout(timer));
      await killHard(server.child);
      stop = true;
      await Promise.all(loops);
      for (const s of sockets) s.disconnect();

      server = await spawnVendorServer(dir);
      await checkLedger(attempts, cards);
    }
    expect(totalAcked).to.be.at.least(ROUNDS);

    // Retry every unfinished attempt once more: each is committed exactly once.
    const socket = io(server.url, { auth: { token: credentials[0]?.credential }, ca: authorityFor(server.url), transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    await signIn(socket, 0);
    for (const a of attempts.filter((x) => x.acked === null && x.key.startsWith(`${credentials[0]?.terminalId}:`))) {
      const ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sale:commit', { key: a.key, ...a.body })) as Ack<SaleResult>;
      expect(ack.ok).to.equal(true);
      if (ack.ok) a.acked = ack.data;
    }
    socket.disconnect();
    await checkLedger(attempts, cards);
    const verify = await runCliAfterStop();
    expect(verify.code, verify.stderr).to.equal(0);
    expect(JSON.parse(verify.stdout).ok).to.equal(true);
  });

  async function runCliAfterStop() {
    if (server !== null) {
      server.child.kill('SIGTERM');
      await new Promise((r) => server?.child.once('exit', r));
      server = null;
    }
    return runCli(['verify', '--data-dir', dir]);
  }

  async function checkLedger(attempts: Attempt[], cards: string[]): Promise<void> {
    const exported = await op('GET', '/api/ledger/export?format=jsonl');
    expect(exported.status).to.equal(200);
    const lines = exported.text.trim().split('\n');
    // The export ends with its trailer: how many events it holds and where it ends.
    const trailer = JSON.parse(lines.pop() ?? '') as { trailer: { count: number; lastSeq: number } };
    expect(trailer.trailer.count).to.equal(lines.length);
    const byKey = new Map<string, number>();
    const balances = new Map<string, number>();
    let prev = GENESIS_HASH;
    for (const [i, line] of lines.entries()) {
      const { hash, event } = JSON.parse(line) as { hash: string; event: { seq: number; prev: string; key: string | null; postings: { account: string; token: string; units: number }[] } };
      expect(event.seq).to.equal(i + 1);
      expect(event.prev).to.equal(prev);
      const text = line.slice(line.indexOf('"event":') + 8, -1);
      expect(createHash('sha256').update(text).digest('hex')).to.equal(hash);
      prev = hash;
      if (event.key !== null) byKey.set(event.key, (byKey.get(event.key) ?? 0) + 1);
      for (const p of event.postings) balances.set(`${p.account}/${p.token}`, (balances.get(`${p.account}/${p.token}`) ?? 0) + p.units);
    }
    for (const a of attempts) {
      const n = byKey.get(a.key) ?? 0;
      if (a.acked !== null) expect(n, `acknowledged ${a.acked.saleId}`).to.equal(1);
      else expect(n).to.be.at.most(1);
    }
    for (const [k, units] of balances) {
      if (k.startsWith('customer:') || k.startsWith('float/')) expect(units, k).to.be.at.least(0);
    }
    for (const card of cards) {
      const res = JSON.parse((await op('GET', `/api/customers?card=${card}`)).text) as { id: string; balances: { token: string; units: number }[] }[];
      const c = res[0];
      if (c === undefined) throw new Error(`customer ${card}`);
      for (const b of c.balances) expect(b.units, `${c.id} ${b.token}`).to.equal(balances.get(`customer:${c.id}/${b.token}`));
      expect(c.balances.find((b) => b.token === 'ACME')?.units ?? 0).to.equal(balances.get(`customer:${c.id}/ACME`) ?? 0);
    }
    const float = JSON.parse((await op('GET', '/api/float')).text) as Record<string, number>;
    for (const [token, units] of Object.entries(float)) expect(units).to.equal(balances.get(`float/${token}`));
  }
});
