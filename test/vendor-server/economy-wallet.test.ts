import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { makeCardNumber, type CustomerDataView, type PricedCart, type SaleAck, type WalletMoveAck, type WalletView } from '../../core/index.ts';
import { MallRequests, vendorJwt } from '../../vendor-server/sync/mall-requests.ts';
import { loadKeys } from '../../vendor-server/config.ts';
import { tlsRequest } from '../../platform/tls.ts';
import { until } from '../helpers/process.ts';
import { call, expectOk, tempDir } from '../helpers/vendor.ts';
import { ledgerPicture, startLinkedStore, type LinkedStore } from '../helpers/xchg-store.ts';
import { bytesUnder } from '../helpers/file-bytes.ts';

const PEN = '4006381333931'; // 450, or 90 ACME, or 45 MALL
const BREAD = '5901234123457'; // 289, or 58 ACME, or 29 MALL
/** The wallet PIN of the tests' wallets: the mall checks it on every hold. */
const WPIN = '802615337190';
/** A wrong PIN, and the one a wallet's PIN is changed to: long enough that no byte of the store's files holds them by chance. */
const WRONG_PIN = '731904826155';
const NEW_PIN = '590317264488';

describe('vendor-server: the mall wallet and customer data', function () {
  this.timeout(120_000);
  let store: LinkedStore;
  let cleanup: () => Promise<void>;
  const key = () => `${store.till.terminalId}:${randomUUID()}`;
  const units = (card: string, token: string) => {
    const id = store.server.ledger.customerIdByCard(card);
    return store.server.ledger.customerView(id).balances.find((b) => b.token === token)?.units ?? 0;
  };
  /** A starting wallet at the mall, with the customer's PIN set. */
  const fund = (card: string, token: string, n: number) => {
    store.double.credit(card, token, n);
    store.double.pins.set(card, WPIN);
  };
  const refusal = async (event: 'wallet:move' | 'wallet:pin' | 'wallet:balance' | 'sale:commit' | 'customer:data-request', body: unknown, code: string) => {
    const before = ledgerPicture(store.server);
    const ack = await call(store.till.socket, event, body);
    expect(ack.ok, JSON.stringify(ack)).to.equal(false);
    if (!ack.ok) expect(ack.error.code, ack.error.message).to.equal(code);
    expect(ledgerPicture(store.server), 'nothing journalled, no balance moved').to.equal(before);
  };

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-wallet-'));
    store = await startLinkedStore(root);
  });
  after(async () => {
    await store?.close();
    await cleanup();
  });
  afterEach(() => {
    store.double.failing = null;
    store.double.setDown(false);
    store.double.authoriseGate = null;
  });

  it('shows the wallet as the mall has it: the balance less open holds', async () => {
    const card = store.cards[0] as string;
    fund(card, 'MALL', 300);
    const view = expectOk(await call<WalletView>(store.till.socket, 'wallet:balance', { card }));
    expect(view.card).to.equal(card);
    expect(view.balances).to.deep.equal([{ token: 'MALL', name: 'Mall token', kind: 'mall', units: 300, spendable: true }]);
  });

  it('moves tokens to the wallet: journalled first, credited when the batch arrives', async () => {
    const card = store.cards[1] as string;
    const before = units(card, 'ACME');
    // A first deposit into a wallet without a PIN: the customer must choose one; nothing moves until then.
    await refusal('wallet:move', { key: key(), card, direction: 'to-wallet', token: 'ACME', units: 50 }, 'MALL_ERR_WALLET_PIN_NOT_SET');
    const ack = expectOk(await call<WalletMoveAck>(store.till.socket, 'wallet:move', { key: key(), card, direction: 'to-wallet', token: 'ACME', units: 50, newWalletPin: WPIN }));
    expect(ack.moveId).to.match(/^W\d{10}$/);
    expect(store.double.pins.get(card), 'the PIN was set at the mall').to.equal(WPIN);
    expect(ack.wallet.pinSet).to.equal(true);
    expect(units(card, 'ACME')).to.equal(before - 50);
    const event = await store.server.ledger.readEvent(ack.seq);
    expect(event.type).to.equal('wallet.moved');
    expect(event.postings).to.deep.equal([
      { account: `customer:${store.server.ledger.customerIdByCard(card)}`, token: 'ACME', units: -50 },
      { account: 'mall-wallet', token: 'ACME', units: 50 },
    ]);
    // Pushed at once: the wallet holds them when the answer comes.
    expect(store.double.balance(card, 'ACME')).to.equal(50);
    expect(ack.wallet.balances.find((b) => b.token === 'ACME')?.units).to.equal(50);
  });

  it('attack: moving to the wallet more than the card holds', async () => {
    await refusal('wallet:move', { key: key(), card: store.cards[1], direction: 'to-wallet', token: 'ACME', units: 1_000_000 }, 'CORE_ERR_INSUFFICIENT_TOKENS');
  });

  it('moves tokens from the wallet under an authorisation, captured once', async () => {
    const card = store.cards[2] as string;
    fund(card, 'MALL', 200);
    const before = units(card, 'MALL');
    const body = { key: key(), card, direction: 'from-wallet', token: 'MALL', units: 120, walletPin: WPIN };
    const ack = expectOk(await call<WalletMoveAck>(store.till.socket, 'wallet:move', body));
    expect(units(card, 'MALL')).to.equal(before + 120);
    const event = await store.server.ledger.readEvent(ack.seq);
    if (event.type !== 'wallet.moved') throw new Error('not a move');
    expect(event.data.authorisation).to.be.a('string');
    expect(store.double.holds.get(event.data.authorisation ?? '')?.state).to.equal('captured');
    expect(store.double.balance(card, 'MALL')).to.equal(80);
    // The retry: the same move, no second hold.
    const created = store.double.holdsCreated;
    expect(expectOk(await call<WalletMoveAck>(store.till.socket, 'wallet:move', body)).seq).to.equal(ack.seq);
    expect(store.double.holdsCreated).to.equal(created);
    await until('the batch', () => (store.double.events.some((e) => e.seq === ack.seq) ? true : undefined), 30_000);
    expect(store.double.balance(card, 'MALL')).to.equal(80);
  });

  it('attack: moving from the wallet more than it holds', async () => {
    const card = store.cards[3] as string;
    fund(card, 'MALL', 10);
    await refusal('wallet:move', { key: key(), card, direction: 'from-wallet', token: 'MALL', units: 11, walletPin: WPIN }, 'MALL_ERR_WALLET_INSUFFICIENT');
    expect(store.double.held(card, 'MALL')).to.equal(0);
    expect(store.double.balance(card, 'MALL')).to.equal(10);
  });

  it('pays a sale from the wallet: postings from mall-wallet, the authorisation in the sale, captured once', async () => {
    const card = store.cards[4] as string;
    fund(card, 'MALL', 100);
    const cardMall = units(card, 'MALL');
    const body = { key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN };
    const priced = expectOk(await call<PricedCart>(store.till.socket, 'cart:price', { lines: body.lines, card, tenders: body.tenders }));
    expect(priced.debits).to.deep.equal({ MALL: 45 });
    expect(priced.cashDueMinor).to.equal(0);
    const ack = expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', body));
    expect(ack.cash.dueMinor).to.equal(0);
    expect(units(card, 'MALL'), 'the card is not debited').to.equal(cardMall);
    const event = await store.server.ledger.readEvent(ack.seq);
    if (event.type !== 'sale') throw new Error('not a sale');
    expect(event.postings).to.deep.equal([
      { account: 'mall-wallet', token: 'MALL', units: -45 },
      { account: 'redeemed', token: 'MALL', units: 45 },
    ]);
    const auth = event.data.wallet?.[0]?.authorisation ?? '';
    expect(event.data.wallet).to.deep.equal([{ authorisation: auth, token: 'MALL', units: 45 }]);
    expect(store.double.holds.get(auth)?.state).to.equal('captured');
    expect(store.double.balance(card, 'MALL')).to.equal(55);
    // A retry is the same sale; another body under the key is a conflict.
    expect(expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', body)).seq).to.equal(ack.seq);
    await refusal('sale:commit', { ...body, tenders: [{ token: 'MALL', units: 44, source: 'wallet' }], cashTenderedMinor: 100 }, 'VND_ERR_IDEMPOTENCY_CONFLICT');
    await until('the batch', () => (store.double.events.some((e) => e.seq === ack.seq) ? true : undefined), 30_000);
    expect(store.double.balance(card, 'MALL')).to.equal(55);
    expect(store.double.flagged).to.deep.equal([]);
  });

  it('pays a sale part from the card and part from the wallet', async () => {
    const card = store.cards[5] as string;
    fund(card, 'MALL', 100);
    const acme = units(card, 'ACME');
    const ack = expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }, { code: BREAD, qty: 1 }], card, tenders: [{ token: 'ACME', units: 90 }, { token: 'MALL', units: 29, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN }));
    expect(ack.debits).to.deep.equal({ ACME: 90, MALL: 29 });
    expect(units(card, 'ACME')).to.equal(acme - 90);
    expect(store.double.balance(card, 'MALL')).to.equal(71);
  });

  it('attack: a refused authorisation refuses the sale with the mall\'s code, nothing journalled or held', async () => {
    const card = store.cards[6] as string;
    fund(card, 'MALL', 10);
    await refusal('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN }, 'MALL_ERR_WALLET_INSUFFICIENT');
    expect(store.double.held(card, 'MALL')).to.equal(0);
  });

  it('attack: a wallet tender without units, and one without a customer', async () => {
    await refusal('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card: store.cards[6], tenders: [{ token: 'MALL', source: 'wallet' }], cashTenderedMinor: 0 }, 'CORE_ERR_VALIDATION');
    await refusal('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card: null, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0 }, 'CORE_ERR_TENDER_WITHOUT_CUSTOMER');
  });

  it('attack: another till\'s key, units that are not whole and positive, a field the request does not name, a prototype name as card; the mall is asked nothing', async () => {
    const card = store.cards[5] as string;
    const tolls = store.double.tolls.length;
    const held = store.double.held(card, 'MALL');
    const move = { card, direction: 'from-wallet', token: 'MALL', units: 5 };
    await refusal('wallet:move', { ...move, key: `other-till:${randomUUID()}` }, 'VND_ERR_IDEMPOTENCY_KEY');
    await refusal('customer:data-request', { card, key: `other-till:${randomUUID()}` }, 'VND_ERR_IDEMPOTENCY_KEY');
    for (const [units, code] of [[-5, 'CORE_ERR_AMOUNT'], [1.5, 'CORE_ERR_AMOUNT'], [0, 'CORE_ERR_VALIDATION'], [2 ** 60, 'CORE_ERR_OVERFLOW']] as const) {
      await refusal('wallet:move', { ...move, key: key(), units }, code);
    }
    await refusal('wallet:move', JSON.parse(`{"__proto__":{"units":500},${JSON.stringify({ ...move, key: key() }).slice(1)}`), 'CORE_ERR_VALIDATION');
    for (const bad of ['constructor', '__proto__']) {
      await refusal('wallet:move', { ...move, key: key(), card: bad }, 'CORE_ERR_CODE_MALFORMED');
      await refusal('wallet:balance', { card: bad }, 'CORE_ERR_CODE_MALFORMED');
      await refusal('customer:data-request', { key: key(), card: bad }, 'CORE_ERR_CODE_MALFORMED');
    }
    expect(store.double.tolls.length).to.equal(tolls);
    expect(store.double.held(card, 'MALL')).to.equal(held);
  });

  it('a sale that fails after the hold releases it', async () => {
    const card = store.cards[7] as string;
    fund(card, 'MALL', 100);
    const acme = units(card, 'ACME');
    // While the mall decides the hold, another sale spends the card's ACME that this one counts on.
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let asked = false;
    store.double.authoriseGate = () => {
      asked = true;
      return gate;
    };
    const walletSale = call<SaleAck>(store.till.socket, 'sale:commit', { key: key(), lines: [{ code: BREAD, qty: 1 }, { code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME', units: 58 }, { token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0, walletPin: WPIN });
    await until('the hold requested', () => (asked ? true : undefined), 10_000);
    const drain = Math.floor(acme / 58);
    expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', { key: key(), lines: [{ code: BREAD, qty: drain }], card, tenders: [{ token: 'ACME', units: drain * 58 }], cashTenderedMinor: 0 }));
    expect(units(card, 'ACME')).to.be.below(58);
    const seq = store.server.ledger.state.seq;
    store.double.authoriseGate = null;
    open();
    const ack = await walletSale;
    expect(ack.ok).to.equal(false);
    if (!ack.ok) expect(ack.error.code).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
    expect(store.server.ledger.state.seq).to.equal(seq);
    await until('the hold released', () => (store.double.held(card, 'MALL') === 0 ? true : undefined), 10_000);
    expect([...store.double.holds.values()].filter((h) => h.card === card).map((h) => h.state)).to.deep.equal(['released']);
    expect(store.double.balance(card, 'MALL')).to.equal(100);
  });

  it('offline: every wallet action says so at once, nothing journalled', async () => {
    store.double.setDown(true);
    const card = store.cards[0] as string;
    await refusal('wallet:balance', { card }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('wallet:move', { key: key(), card, direction: 'to-wallet', token: 'ACME', units: 1 }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('wallet:move', { key: key(), card, direction: 'from-wallet', token: 'MALL', units: 1 }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0 }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('customer:data-request', { key: key(), card: makeCardNumber(9_001) }, 'VND_ERR_MALL_UNREACHABLE');
  });

  it('a mall that answers but cannot serve (5xx) is as good as unreachable: the till offers other tenders', async () => {
    const card = store.cards[0] as string;
    store.double.failing = { status: 503, code: 'MALL_ERR_UNAVAILABLE' };
    await refusal('wallet:balance', { card }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0 }, 'VND_ERR_WALLET_OFFLINE');
    await refusal('customer:data-request', { key: key(), card: makeCardNumber(9_001) }, 'VND_ERR_MALL_UNREACHABLE');
  });

  it('buys another store\'s customer data once per request, passing the mall\'s refusals through', async () => {
    const other = makeCardNumber(9_001);
    const shy = makeCardNumber(9_002);
    store.double.addCustomer(other, { home: 'bolt', customerId: 'cust-000001', name: 'Olga Other', contact: { email: 'olga@example.org' }, consent: true, summary: { sales: 3, spentMinor: 4500, currency: 'EUR', firstAt: '2026-01-02T10:00:00.000Z', lastAt: '2026-03-04T10:00:00.000Z' } });
    store.double.addCustomer(shy, { home: 'bolt', customerId: 'cust-000002', name: 'Sam Shy', contact: {}, consent: false });
    const body = { key: key(), card: other };
    const view = expectOk(await call<CustomerDataView>(store.till.socket, 'customer:data-request', body));
    expect(view).to.deep.include({ card: other, name: 'Olga Other', home: { vendorId: 'bolt', name: 'Bolt Hardware' }, contact: { email: 'olga@example.org' }, tollMinor: 10 });
    expect(view.summary.sales).to.equal(3);
    expect(expectOk(await call<CustomerDataView>(store.till.socket, 'customer:data-request', body)).requestId).to.equal(view.requestId);
    expect(store.double.tolls.length, 'a retry is not charged again').to.equal(1);
    await refusal('customer:data-request', { key: key(), card: shy }, 'MALL_ERR_NO_CONSENT');
    await refusal('customer:data-request', { key: key(), card: makeCardNumber(9_003) }, 'MALL_ERR_CUSTOMER_UNKNOWN');
    // The store's own customers reach the mall's directory with the first batch.
    const own = store.cards[9] as string;
    await until('the store\'s customers at the mall', () => (store.double.directory.get(own)?.home === 'acme' ? true : undefined), 30_000);
    await refusal('customer:data-request', { key: key(), card: own }, 'MALL_ERR_VALIDATION');
    expect(store.double.tolls.length).to.equal(1);
  });

  it('the mall client: a token for one body does not carry another (bh), and a refusal keeps the mall\'s code', async () => {
    const keys = await loadKeys(store.vendorDir);
    const mall = new MallRequests({ mallUrl: store.double.url, mallCaPem: store.double.caPem, vendorId: 'acme', keys, requestTimeoutMs: 2_000, probeTimeoutMs: 1_000 });
    const card = store.cards[8] as string;
    fund(card, 'MALL', 5);
    const pin = WPIN;
    // A token made for one body (as one seen in transit), sent with another.
    const captured = await vendorJwt(keys, 'acme', '2m', JSON.stringify({ key: 'k-00000001', card, token: 'MALL', units: 1, purpose: 'sale' }));
    const res = await tlsRequest(`${store.double.url}/v1/vendors/acme/wallet/authorisations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${captured}`, 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'k-00000001', card, token: 'MALL', units: 5, purpose: 'sale' }),
      ca: store.double.caPem,
    });
    expect(res.status).to.equal(401);
    expect(res.json<{ error: { code: string } }>().error.code).to.equal('MALL_ERR_UNAUTHENTICATED');
    expect(store.double.held(card, 'MALL')).to.equal(0);
    try {
      await mall.authorise({ key: 'k-00000002', card, token: 'MALL', units: 6, purpose: 'sale', pin });
      expect.fail('authorised more than the wallet holds');
    } catch (err) {
      expect((err as { code: string }).code).to.equal('MALL_ERR_WALLET_INSUFFICIENT');
    }
  });

  it('attack: a hold without the wallet PIN, or with a wrong one, is refused with the mall\'s code; nothing journalled or held', async () => {
    const card = store.cards[3] as string;
    fund(card, 'MALL', 100);
    const funded = store.double.balance(card, 'MALL');
    const sale = { lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'MALL', units: 45, source: 'wallet' }], cashTenderedMinor: 0 };
    await refusal('sale:commit', { key: key(), ...sale }, 'MALL_ERR_WALLET_PIN_REQUIRED');
    await refusal('sale:commit', { key: key(), ...sale, walletPin: WRONG_PIN }, 'MALL_ERR_WALLET_PIN');
    await refusal('wallet:move', { key: key(), card, direction: 'from-wallet', token: 'MALL', units: 5, walletPin: WRONG_PIN }, 'MALL_ERR_WALLET_PIN');
    // Badly formed PINs never reach the mall.
    const wrong = store.double.wrongPins;
    for (const walletPin of ['12a4', '1'.repeat(13), '__proto__', 1234]) {
      await refusal('sale:commit', { key: key(), ...sale, walletPin }, 'CORE_ERR_VALIDATION');
      await refusal('wallet:move', { key: key(), card, direction: 'from-wallet', token: 'MALL', units: 5, walletPin }, 'CORE_ERR_VALIDATION');
      await refusal('wallet:move', { key: key(), card, direction: 'to-wallet', token: 'ACME', units: 5, newWalletPin: walletPin }, 'CORE_ERR_VALIDATION');
      await refusal('wallet:pin', { key: key(), card, pin: walletPin }, 'CORE_ERR_VALIDATION');
    }
    expect(store.double.wrongPins).to.equal(wrong);
    expect(store.double.held(card, 'MALL')).to.equal(0);
    expect(store.double.balance(card, 'MALL')).to.equal(funded);
    // The right PIN pays; a retry with another PIN under the same key is the same sale (the PIN is no part of the request).
    const body = { key: key(), ...sale, walletPin: WPIN };
    const ack = expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', body));
    expect(expectOk(await call<SaleAck>(store.till.socket, 'sale:commit', { ...body, walletPin: '9999' })).seq).to.equal(ack.seq);
    expect(store.double.balance(card, 'MALL')).to.equal(funded - 45);
  });

  it('changes the wallet PIN at the mall with the old one; a PIN set is not replaced without it', async () => {
    const card = store.cards[9] as string;
    fund(card, 'MALL', 10);
    await refusal('wallet:pin', { key: key(), card, pin: NEW_PIN }, 'MALL_ERR_WALLET_PIN_REQUIRED');
    await refusal('wallet:pin', { key: key(), card, pin: NEW_PIN, oldPin: WRONG_PIN }, 'MALL_ERR_WALLET_PIN');
    expect(store.double.pins.get(card)).to.equal(WPIN);
    expect(expectOk(await call(store.till.socket, 'wallet:pin', { key: key(), card, pin: NEW_PIN, oldPin: WPIN }))).to.deep.equal({ card, pinSet: true });
    expect(store.double.pins.get(card)).to.equal(NEW_PIN);
    const view = expectOk(await call<WalletView>(store.till.socket, 'wallet:balance', { card }));
    expect(view.pinSet).to.equal(true);
  });

  it('keeps every wallet PIN out of the journal, the store\'s files and its log', async () => {
    const files = await bytesUnder(store.vendorDir);
    for (const pin of [WPIN, NEW_PIN, WRONG_PIN]) expect(files.includes(pin), `the store's files hold ${pin}`).to.equal(false);
    expect(store.logged().includes(WPIN)).to.equal(false);
    expect(store.logged()).to.contain('wallet PIN set at the mall');
  });

  it('still works after a restart', async () => {
    const picture = ledgerPicture(store.server);
    await store.restart();
    expect(ledgerPicture(store.server)).to.equal(picture);
  });
});
