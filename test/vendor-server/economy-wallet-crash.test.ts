import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { SaleAck } from '../../core/index.ts';
import { loadKeys } from '../../vendor-server/config.ts';
import { demoTokenTypes, initVendor, type InitResult } from '../../vendor-server/init.ts';
import { STOP_AT_ENV, type StopPoint } from '../../vendor-server/economy/wallet.ts';
import { killHard, spawnVendorServer, until, type ChildServer } from '../helpers/process.ts';
import { call, expectOk, tempDir, type TerminalClient } from '../helpers/vendor.ts';
import { connectTill, pairTill } from '../helpers/xchg-store.ts';
import { startWalletMallDouble, type WalletMallDouble } from '../helpers/wallet-mall-double.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931'; // 45 MALL
const TTL_MS = 900_000;
const WPIN = '802615';

/**
 * A sale paid from the mall wallet, with the store server a child process that kills
 * itself with SIGKILL at the two dangerous moments: after the mall held the tokens but
 * before the sale was journalled, and after the sale was journalled but before the hold
 * was captured. Whatever happens next, the wallet is debited exactly once for a sale that
 * exists, never twice, and never for a sale that does not.
 */
describe('vendor-server: wallet payments survive a store crash', function () {
  this.timeout(240_000);
  let root: string;
  let cleanup: () => Promise<void>;
  let double: WalletMallDouble;
  let vendorDir: string;
  let init: InitResult;
  let card: string;
  let child: (ChildServer & { caPem: string }) | null = null;
  let socket: TerminalClient | null = null;

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir('mallpos-wallet-crash-'));
    double = await startWalletMallDouble(join(root, 'mall'), { ttlMs: TTL_MS });
    vendorDir = join(root, 'vendor');
    init = await initVendor({ dataDir: vendorDir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
    const keys = await loadKeys(vendorDir);
    await double.addVendor('acme', 'ACME Market', keys.publicJwk as unknown as Record<string, unknown>);
    double.tokenTypes = demoTokenTypes('acme');
    await double.linkVendor(vendorDir, { batchAgeMs: 100 });
    card = init.demo?.customers[0]?.card ?? '';
    double.credit(card, 'MALL', 100);
    double.pins.set(card, WPIN);
  });
  afterEach(async () => {
    socket?.disconnect();
    if (child !== null) await killHard(child.child);
    child = null;
    await double.close();
    await cleanup();
  });

  const start = async (stopAt: StopPoint | null) => {
    const served = double.snapshotsServed;
    const spawned = await spawnVendorServer(vendorDir, undefined, 0, stopAt === null ? {} : { [STOP_AT_ENV]: stopAt });
    child = spawned;
    await until('the store pulled the snapshot', () => (double.snapshotsServed > served ? true : undefined), 30_000);
    return spawned;
  };
  const signIn = async (s: TerminalClient) => expectOk(await call(s, 'cashier:login', { staffId: 'ana', pin: '1234' }));

  /** Starts the store set to die at `stopAt`, sends the sale, and waits for the death. */
  const saleThatKills = async (stopAt: StopPoint) => {
    const c = await start(stopAt);
    const till = await pairTill(c.url, init.operatorToken, c.caPem);
    socket = till.socket;
    await signIn(till.socket);
    const body = { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN };
    const exited = new Promise<string | null>((resolve) => c.child.once('exit', (_code, signal) => resolve(signal)));
    const answer = call<SaleAck>(till.socket, 'sale:commit', body).then(
      (ack) => ack,
      () => null,
    );
    expect(await exited).to.equal('SIGKILL');
    expect(await answer, 'the till never got an answer').to.equal(null);
    socket.disconnect();
    child = null;
    return { body, credential: till.credential };
  };
  const salesWithKey = (k: string) => double.events.filter((e) => e.type === 'sale' && e.key === k);

  it('a crash after the hold: the till\'s retry gets the same hold, never a second one', async () => {
    const { body, credential } = await saleThatKills('wallet-authorised');
    expect(double.holdsCreated).to.equal(1);
    expect(double.held(card, 'MALL')).to.equal(45);

    const c = await start(null);
    socket = await connectTill(c.url, c.caPem, credential);
    await signIn(socket);
    const ack = expectOk(await call<SaleAck>(socket, 'sale:commit', body));
    expect(double.holdsCreated, 'the retry found the same hold').to.equal(1);
    const [hold] = [...double.holds.values()];
    expect(hold?.state).to.equal('captured');
    expect(double.balance(card, 'MALL'), 'debited once').to.equal(55);
    await until('the sale at the mall', () => (salesWithKey(body.key).length > 0 ? true : undefined), 30_000);
    expect(salesWithKey(body.key).map((e) => e.seq)).to.deep.equal([ack.seq]);
    expect(double.flagged).to.deep.equal([]);
  });

  it('a crash after the journal: the batch captures the hold, the retry is the same sale', async () => {
    const { body, credential } = await saleThatKills('wallet-journalled');
    const [hold] = [...double.holds.values()];
    expect(hold?.state, 'the store never captured it').to.equal('open');

    const c = await start(null);
    await until('the batch captured the hold', () => (hold?.state === 'captured' ? true : undefined), 30_000);
    expect(hold?.capturedBy).to.equal('batch');
    expect(double.balance(card, 'MALL'), 'the debit is not lost').to.equal(55);
    socket = await connectTill(c.url, c.caPem, credential);
    await signIn(socket);
    const ack = expectOk(await call<SaleAck>(socket, 'sale:commit', body));
    expect(double.holdsCreated, 'no second hold').to.equal(1);
    expect(double.balance(card, 'MALL'), 'debited once').to.equal(55);
    expect(salesWithKey(body.key).map((e) => e.seq)).to.deep.equal([ack.seq]);
    expect(double.flagged).to.deep.equal([]);
  });

  it('a crash after the hold with no retry: the mall\'s expiry releases it, nothing is debited', async () => {
    const { body } = await saleThatKills('wallet-authorised');
    expect(double.held(card, 'MALL')).to.equal(45);
    const c = await start(null);
    double.advance(TTL_MS + 1_000);
    expect(double.held(card, 'MALL')).to.equal(0);
    expect(double.balance(card, 'MALL'), 'nothing debited').to.equal(100);
    // The restarted store journalled nothing for the sale, so no batch ever uses the hold.
    expect(salesWithKey(body.key)).to.deep.equal([]);
    // The whole wallet can be used again: two pens, 90 of the 100.
    const till = await pairTill(c.url, init.operatorToken, c.caPem, 'Till 2');
    socket = till.socket;
    await signIn(socket);
    expectOk(await call<SaleAck>(socket, 'sale:commit', { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 2 }], card, tenders: [{ token: 'MALL', units: 90, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN }));
    expect(double.balance(card, 'MALL')).to.equal(10);
    expect([...double.holds.values()].map((h) => h.state)).to.deep.equal(['expired', 'captured']);
  });
});
