import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Ack, ExchangeAck, ExchangeView, JournalEvent } from '../../core/index.ts';
import { until } from '../helpers/process.ts';
import { call, expectOk, tempDir } from '../helpers/vendor.ts';
import { ledgerPicture, startLinkedStore, type LinkedStore } from '../helpers/xchg-store.ts';

/**
 * Exchange between issuers at the store: MALL tokens (issuer: the mall, face 10) for ACME
 * tokens (issuer: the store, face 5) from its float, with the mall's 1% service charge.
 * 10 MALL = 100 minor, charge 1, 99 left: 19 ACME (95), remainder 4.
 */
describe('vendor-server: exchange between issuers', function () {
  this.timeout(120_000);
  let store: LinkedStore;
  let cleanup: () => Promise<void>;
  const key = () => `${store.till.terminalId}:${randomUUID()}`;
  const balances = (card: string) => {
    const id = store.server.ledger.customerIdByCard(card);
    return store.server.ledger.customerView(id).balances.reduce<Record<string, number>>((m, b) => ({ ...m, [b.token]: b.units }), {});
  };
  const refusal = async (event: 'exchange:commit' | 'exchange:quote', body: unknown, code: string) => {
    const before = ledgerPicture(store.server);
    const ack = await call<ExchangeAck>(store.till.socket, event, body);
    expect(ack.ok, JSON.stringify(ack)).to.equal(false);
    if (!ack.ok) expect(ack.error.code, ack.error.message).to.equal(code);
    expect(ledgerPicture(store.server), 'nothing journalled, no balance moved').to.equal(before);
    return ack;
  };

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-xchg-'));
    store = await startLinkedStore(root, { exchange: { offlineCustomerDayMinor: 300, mallRequestTimeoutMs: 2_000, walletPushWaitMs: 3_000 } });
  });
  after(async () => {
    await store?.close();
    await cleanup();
  });
  afterEach(() => store.double.setDown(false));

  it('quotes with the snapshot\'s face values and service charge, and commits what it quoted', async () => {
    const card = store.cards[0] as string;
    const view = expectOk(await call<ExchangeView>(store.till.socket, 'exchange:quote', { card, from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME' }));
    expect(view.offline).to.equal(false);
    expect(view.quote).to.include({ grossMinor: 100, serviceBps: 100, serviceChargeMinor: 1, valueOutMinor: 95, remainderMinor: 4 });
    expect(view.quote.to.units).to.equal(19);

    const before = balances(card);
    const floatBefore = store.server.ledger.float();
    const k = key();
    const body = { key: k, card, from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 };
    const ack = expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', body));
    expect(ack.exchangeId).to.match(/^X\d{10}$/);
    expect(ack.wallet).to.equal(null);
    const after = balances(card);
    expect(after['MALL']).to.equal((before['MALL'] ?? 0) - 10);
    expect(after['ACME']).to.equal((before['ACME'] ?? 0) + 19);
    expect(store.server.ledger.float()['ACME']).to.equal((floatBefore['ACME'] ?? 0) - 19);

    const event = (await store.server.ledger.readEvent(ack.seq)) as JournalEvent;
    expect(event.type).to.equal('exchange');
    if (event.type !== 'exchange') return;
    const id = store.server.ledger.customerIdByCard(card);
    expect(event.postings).to.deep.equal([
      { account: `customer:${id}`, token: 'MALL', units: -10 },
      { account: 'redeemed', token: 'MALL', units: 10 },
      { account: 'float', token: 'ACME', units: -19 },
      { account: `customer:${id}`, token: 'ACME', units: 19 },
    ]);
    expect(event.data).to.include({ source: 'card', authorisation: null, offline: false });
    expect(event.cashier).to.equal('ana');

    // The same key and body: the same exchange, nothing more.
    const seq = store.server.ledger.state.seq;
    const again = expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', body));
    expect(again.seq).to.equal(ack.seq);
    expect(store.server.ledger.state.seq).to.equal(seq);
    // The batch reaches the mall with the exchange in it.
    await until('the exchange at the mall', () => (store.double.events.some((e) => e.seq === ack.seq) ? true : undefined), 30_000);
  });

  it('attack: tokens of the same issuer are not exchanged', async () => {
    await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'ACME', units: 10, source: 'card' }, to: 'ACME', expectUnits: 10 }, 'CORE_ERR_EXCHANGE_SAME_ISSUER');
  });

  it('attack: more tokens than the customer holds', async () => {
    await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 100_000, source: 'card' }, to: 'ACME', expectUnits: 197_999 }, 'CORE_ERR_INSUFFICIENT_TOKENS');
  });

  it('attack: a token the store does not hold in its float', async () => {
    // 10 MALL = 100, less 1, buy 14 BOLT of 7.
    await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 10, source: 'card' }, to: 'BOLT', expectUnits: 14 }, 'CORE_ERR_INSUFFICIENT_TOKENS');
  });

  it('attack: expectUnits other than the rule gives', async () => {
    await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 20 }, 'VND_ERR_EXCHANGE_QUOTE_CHANGED');
  });

  it('attack: a changed service charge since the quote is refused until quoted again', async () => {
    store.double.fees = { ...store.double.fees, exchangeServiceBps: 600 };
    await store.server.sync?.pullSnapshot();
    try {
      // 100 less 6 = 94: 18 ACME now, not the 19 quoted before.
      await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }, 'VND_ERR_EXCHANGE_QUOTE_CHANGED');
    } finally {
      store.double.fees = { ...store.double.fees, exchangeServiceBps: 100 };
      await store.server.sync?.pullSnapshot();
    }
  });

  it('attack: the key of an exchange replayed with another body', async () => {
    const k = key();
    expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', { key: k, card: store.cards[2], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }));
    await refusal('exchange:commit', { key: k, card: store.cards[2], from: { token: 'MALL', units: 20, source: 'card' }, to: 'ACME', expectUnits: 39 }, 'VND_ERR_IDEMPOTENCY_CONFLICT');
  });

  it('attack: another till\'s key, units that are not whole and positive, a field the request does not name, a prototype name as card', async () => {
    const card = store.cards[0] as string;
    const body = { card, from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 };
    await refusal('exchange:commit', { ...body, key: `other-till:${randomUUID()}` }, 'VND_ERR_IDEMPOTENCY_KEY');
    for (const [units, code] of [[-10, 'CORE_ERR_AMOUNT'], [1.5, 'CORE_ERR_AMOUNT'], [2 ** 60, 'CORE_ERR_OVERFLOW']] as const) {
      await refusal('exchange:commit', { ...body, key: key(), from: { ...body.from, units } }, code);
      await refusal('exchange:quote', { card, from: { ...body.from, units }, to: 'ACME' }, code);
    }
    await refusal('exchange:commit', { ...body, key: key(), from: { ...body.from, units: 0 } }, 'CORE_ERR_VALIDATION');
    await refusal('exchange:commit', { ...body, key: key(), expectUnits: -19 }, 'CORE_ERR_AMOUNT');
    await refusal('exchange:commit', JSON.parse(`{"__proto__":{"expectUnits":1},${JSON.stringify({ ...body, key: key() }).slice(1)}`), 'CORE_ERR_VALIDATION');
    await refusal('exchange:commit', { ...body, key: key(), card: 'constructor' }, 'CORE_ERR_CODE_MALFORMED');
  });

  it('attack: an exchange without a signed-in cashier', async () => {
    expectOk(await call(store.till.socket, 'cashier:logout', {}));
    try {
      await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }, 'VND_ERR_CASHIER_REQUIRED');
    } finally {
      expectOk(await call(store.till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    }
  });

  it('offline: card source within the per-customer daily limit, then refused over it', async () => {
    const card = store.cards[1] as string;
    store.double.setDown(true);
    const view = expectOk(await call<ExchangeView>(store.till.socket, 'exchange:quote', { card, from: { token: 'MALL', units: 20, source: 'card' }, to: 'ACME' }));
    expect(view.offline).to.equal(true);
    // 20 MALL = 200 of the 300 a day.
    const first = expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', { key: key(), card, from: { token: 'MALL', units: 20, source: 'card' }, to: 'ACME', expectUnits: 39 }));
    expect(first.offline).to.equal(true);
    const event = await store.server.ledger.readEvent(first.seq);
    expect(event.type === 'exchange' && event.data.offline).to.equal(true);
    // Another 20 MALL would make 400: over the limit.
    await refusal('exchange:commit', { key: key(), card, from: { token: 'MALL', units: 20, source: 'card' }, to: 'ACME', expectUnits: 39 }, 'VND_ERR_OFFLINE_LIMIT');
    // 10 MALL makes exactly 300: allowed.
    expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', { key: key(), card, from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }));
    await refusal('exchange:commit', { key: key(), card, from: { token: 'MALL', units: 1, source: 'card' }, to: 'ACME', expectUnits: 1 }, 'VND_ERR_OFFLINE_LIMIT');
    // Another customer has their own limit.
    expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', { key: key(), card: store.cards[3], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }));
  });

  it('offline: the wallet source is refused at once', async () => {
    store.double.setDown(true);
    await refusal('exchange:quote', { card: store.cards[0], from: { token: 'MALL', units: 10, source: 'wallet' }, to: 'ACME' }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('exchange:commit', { key: key(), card: store.cards[0], from: { token: 'MALL', units: 10, source: 'wallet' }, to: 'ACME', expectUnits: 19 }, 'VND_ERR_WALLET_OFFLINE');
  });

  it('attack: offline with a snapshot older than its maximum age', async () => {
    store.double.snapshotIssuedAt = new Date(Date.now() - 80 * 3_600_000).toISOString();
    await store.server.sync?.pullSnapshot();
    try {
      expect(store.server.sync?.snapshotStale()).to.equal(true);
      store.double.setDown(true);
      await refusal('exchange:commit', { key: key(), card: store.cards[4], from: { token: 'MALL', units: 10, source: 'card' }, to: 'ACME', expectUnits: 19 }, 'VND_ERR_SNAPSHOT_STALE');
    } finally {
      store.double.setDown(false);
      store.double.snapshotIssuedAt = null;
      await store.server.sync?.pullSnapshot();
    }
  });

  it('from the wallet: held at the mall, journalled, captured once', async () => {
    const card = store.cards[5] as string;
    store.double.credit(card, 'MALL', 50);
    store.double.pins.set(card, '802615');
    const before = balances(card);
    // Without the wallet PIN, or with a wrong one, the mall holds nothing and nothing is journalled.
    const commit = { key: key(), card, from: { token: 'MALL', units: 10, source: 'wallet' }, to: 'ACME', expectUnits: 19 };
    await refusal('exchange:commit', commit, 'MALL_ERR_WALLET_PIN_REQUIRED');
    await refusal('exchange:commit', { ...commit, key: key(), walletPin: '1111' }, 'MALL_ERR_WALLET_PIN');
    await refusal('exchange:commit', { ...commit, key: key(), walletPin: '12a4' }, 'CORE_ERR_VALIDATION');
    expect(store.double.held(card, 'MALL')).to.equal(0);
    const ack = expectOk(await call<ExchangeAck>(store.till.socket, 'exchange:commit', { ...commit, walletPin: '802615' }));
    expect(ack.source).to.equal('wallet');
    expect(balances(card)['MALL']).to.equal(before['MALL']);
    expect(balances(card)['ACME']).to.equal((before['ACME'] ?? 0) + 19);
    const event = await store.server.ledger.readEvent(ack.seq);
    if (event.type !== 'exchange') throw new Error('not an exchange');
    expect(event.postings[0]).to.deep.equal({ account: 'mall-wallet', token: 'MALL', units: -10 });
    const hold = store.double.holds.get(event.data.authorisation ?? '');
    expect(hold?.state).to.equal('captured');
    expect(store.double.balance(card, 'MALL')).to.equal(40);
    expect(ack.wallet?.balances.find((b) => b.token === 'MALL')?.units).to.equal(40);
    await until('the batch with the exchange', () => (store.double.events.some((e) => e.seq === ack.seq) ? true : undefined), 30_000);
    expect(store.double.balance(card, 'MALL'), 'the batch does not capture twice').to.equal(40);
    expect(store.double.flagged).to.deep.equal([]);
  });

  it('attack: from the wallet with more than it holds: the mall refuses, nothing is journalled or held', async () => {
    const card = store.cards[6] as string;
    store.double.credit(card, 'MALL', 5);
    store.double.pins.set(card, '802615');
    const ack: Ack<ExchangeAck> = await refusal('exchange:commit', { key: key(), card, from: { token: 'MALL', units: 10, source: 'wallet' }, to: 'ACME', expectUnits: 19, walletPin: '802615' }, 'MALL_ERR_WALLET_INSUFFICIENT');
    expect(ack.ok).to.equal(false);
    expect(store.double.held(card, 'MALL')).to.equal(0);
  });

  it('still works after a restart: balances and the exchanges replay from the journal', async () => {
    const picture = ledgerPicture(store.server);
    await store.restart();
    expect(ledgerPicture(store.server)).to.equal(picture);
  });
});
