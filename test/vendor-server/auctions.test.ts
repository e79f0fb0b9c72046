import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Socket } from 'socket.io-client';
import { makeCardNumber, type JournalEvent, type ReceiptData, type SaleAck } from '../../core/index.ts';
import type { BidAck, LotView } from '../../core/auctions.ts';
import { BOARD_PIN_FAILURES_MAX } from '../../vendor-server/auctions/board.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { until } from '../helpers/process.ts';
import { fetchTls } from '../helpers/http.ts';
import { boardCall, boardSocket, replayBalances } from './auction-helpers.ts';
import { code, exportJournal, journalBytes, ledgerPicture } from './economy-helpers.ts';

const PEN = '4006381333931';
const ANNA = { id: 'cust-000001', card: makeCardNumber(1) }; // 200 ACME
const BULENT = { id: 'cust-000002', card: makeCardNumber(2) }; // 350 ACME
const CHLOE = { id: 'cust-000003', card: makeCardNumber(3) }; // 500 ACME

type Till = { terminalId: string; credential: string; socket: TerminalClient };

describe('vendor server: auctions at a store', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till: Till;
  let till2: Till;
  const key = (t: Till = till) => `${t.terminalId}:${randomUUID()}`;
  const acme = (customerId: string) => store.server.ledger.customerView(customerId).balances.find((b) => b.token === 'ACME')?.units ?? 0;
  const escrow = (lotId: string) => store.server.ledger.state.balances[`escrow:${lotId}`]?.['ACME'] ?? 0;
  // The auction service's clock: a test moves it past a lot's close instead of waiting for it.
  let aheadMs = 0;
  const auctionClock = () => new Date(Date.now() + aheadMs);
  const soon = (ms: number) => new Date(auctionClock().getTime() + ms).toISOString();
  const passClose = async (lot: LotView) => {
    aheadMs += Math.max(0, Date.parse(lot.closesAt) - auctionClock().getTime()) + 1_000;
    await store.server.auctions.closeDue();
  };
  const createLot = async (body: Record<string, unknown>): Promise<LotView> => {
    const res = await store.operator('POST', '/api/lots', { title: 'Espresso machine', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: soon(3_600_000), ...body }, { 'idempotency-key': randomUUID() });
    expect(res.status, res.text).to.equal(200);
    return res.body as LotView;
  };
  const bid = (lotId: string, card: string, units: number, t: Till = till, k = key(t)) => call<BidAck>(t.socket, 'lot:bid', { key: k, lotId, card, units });
  const view = (lotId: string) => store.server.auctions.view(lotId);

  before(async () => {
    store = await startDemoStore({ auctionClock });
    till = await store.openTill('Till 1');
    till2 = await store.openTill('Till 2');
  });
  after(async () => store.close());

  it('lists a lot by the operator; tills and the API see it, with a described item coded for in-store use', async () => {
    const lot = await createLot({ title: 'Signed football', buyNowUnits: 400 });
    expect(lot.lotId).to.match(/^lot-\d{6}$/);
    expect(lot.status).to.equal('open');
    expect(lot.gtin).to.match(/^29\d{11}$/);
    expect(lot.minBidUnits).to.equal(10);
    const listed = expectOk(await call<LotView[]>(till.socket, 'lots:list', {}));
    expect(listed.map((l) => l.lotId)).to.include(lot.lotId);
    const api = await store.operator('GET', `/api/lots/${lot.lotId}`);
    expect(api.body.title).to.equal('Signed football');
    const product = await createLot({ title: 'Pen lot', code: PEN });
    expect(product.gtin).to.equal(PEN);
  });

  it('refuses a lot that cannot be listed with a typed error, changing nothing', async () => {
    const before = await ledgerPicture(store);
    const bytes = await journalBytes(store.dir);
    const post = (body: Record<string, unknown>) => store.operator('POST', '/api/lots', { title: 'Lamp', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: soon(3_600_000), ...body }, { 'idempotency-key': randomUUID() });
    const cases: [Record<string, unknown>, string][] = [
      [{ closesAt: soon(-1_000) }, 'VND_ERR_LOT_INVALID'],
      [{ opensAt: soon(7_200_000) }, 'VND_ERR_LOT_INVALID'],
      [{ closesAt: soon(100 * 24 * 3_600_000) }, 'VND_ERR_LOT_INVALID'],
      [{ reserveUnits: 500, buyNowUnits: 100 }, 'VND_ERR_LOT_INVALID'],
      [{ token: 'NOPE' }, 'CORE_ERR_TOKEN_UNKNOWN'],
      [{ code: '4006381333932' }, 'CORE_ERR_CHECK_DIGIT'],
      [{ incrementUnits: 0 }, 'CORE_ERR_VALIDATION'],
      [{ reserveUnits: -1 }, 'CORE_ERR_VALIDATION'],
      [{ reserveUnits: 1.5 }, 'CORE_ERR_VALIDATION'],
      [{ title: '' }, 'CORE_ERR_VALIDATION'],
      [{ snipeWindowSeconds: 100_000 }, 'CORE_ERR_VALIDATION'],
      [{ extra: true }, 'CORE_ERR_VALIDATION'],
    ];
    for (const [body, want] of cases) {
      const res = await post(body);
      expect(res.body.error?.code, JSON.stringify(body)).to.equal(want);
    }
    const noKey = await store.operator('POST', '/api/lots', { title: 'Lamp', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: soon(3_600_000) });
    expect(noKey.body.error?.code).to.equal('VND_ERR_IDEMPOTENCY_KEY');
    expect((await store.operator('GET', '/api/lots/__proto__')).body.error?.code).to.equal('CORE_ERR_VALIDATION');
    expect((await store.operator('GET', '/api/lots/lot-999999')).body.error?.code).to.equal('VND_ERR_LOT_UNKNOWN');
    // The same key and body lists one lot; another body under it is a conflict.
    const key = randomUUID();
    const body = { title: 'Kite', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: soon(3_600_000) };
    const first = await store.operator('POST', '/api/lots', body, { 'idempotency-key': key });
    const again = await store.operator('POST', '/api/lots', body, { 'idempotency-key': key });
    expect(again.body.lotId).to.equal(first.body.lotId);
    expect((await store.operator('POST', '/api/lots', { ...body, title: 'Other' }, { 'idempotency-key': key })).body.error?.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(store.server.ledger.state.seq).to.equal(before.seq + 1);
    expect((await journalBytes(store.dir)).startsWith(bytes)).to.equal(true);
  });

  it('moves a bid into escrow and releases the outbid hold at once, pushing the change to every till', async () => {
    const lot = await createLot({});
    const a0 = acme(ANNA.id);
    const b0 = acme(BULENT.id);
    const pushed: LotView[] = [];
    till2.socket.on('lots:update', (vs: LotView[]) => pushed.push(...vs));
    const first = expectOk(await bid(lot.lotId, ANNA.card, 100));
    expect(first.units).to.equal(100);
    expect(acme(ANNA.id)).to.equal(a0 - 100);
    expect(escrow(lot.lotId)).to.equal(100);
    expectOk(await bid(lot.lotId, BULENT.card, 110, till2));
    expect(acme(ANNA.id)).to.equal(a0);
    expect(acme(BULENT.id)).to.equal(b0 - 110);
    expect(escrow(lot.lotId)).to.equal(110);
    await until('the push of the second bid', () => (pushed.some((v) => v.lotId === lot.lotId && v.high?.units === 110) ? true : undefined), 10_000);
    const v = pushed.find((x) => x.high?.units === 110) as LotView;
    expect(v.high?.card).to.not.include(BULENT.card.slice(1, 8));
    // Raising one's own high bid takes only the difference.
    expectOk(await bid(lot.lotId, BULENT.card, 130, till2));
    expect(acme(BULENT.id)).to.equal(b0 - 130);
    expect(escrow(lot.lotId)).to.equal(130);
    const events = (await exportJournal(store)).filter((e) => e.type === 'lot.bid' && e.data.lotId === lot.lotId);
    expect(events.map((e) => e.type === 'lot.bid' && e.data.previous)).to.deep.equal([null, { customer: ANNA.id, units: 100 }, { customer: BULENT.id, units: 110 }]);
    till2.socket.off('lots:update');
  });

  it('refuses a bid below the high bid plus the increment, changing nothing', async () => {
    const lot = await createLot({});
    expectOk(await bid(lot.lotId, ANNA.card, 50));
    const before = await ledgerPicture(store);
    const bytes = await journalBytes(store.dir);
    const low = await bid(lot.lotId, BULENT.card, 59);
    expect(code(low)).to.equal('VND_ERR_BID_TOO_LOW');
    expect(!low.ok && low.error.details?.['minBidUnits']).to.equal(60);
    expect(code(await bid(lot.lotId, BULENT.card, 5))).to.equal('VND_ERR_BID_TOO_LOW');
    expect(await ledgerPicture(store)).to.deep.equal(before);
    expect(await journalBytes(store.dir)).to.equal(bytes);
  });

  it('refuses a bid of more than the customer holds, changing nothing', async () => {
    const lot = await createLot({});
    const before = await ledgerPicture(store);
    const bytes = await journalBytes(store.dir);
    const ack = await bid(lot.lotId, ANNA.card, acme(ANNA.id) + 10);
    expect(code(ack)).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
    expect(await ledgerPicture(store)).to.deep.equal(before);
    expect(await journalBytes(store.dir)).to.equal(bytes);
  });

  it('keeps held units from being spent elsewhere', async () => {
    const lot = await createLot({});
    const held = acme(CHLOE.id) - 50;
    expectOk(await bid(lot.lotId, CHLOE.card, held));
    expect(acme(CHLOE.id)).to.equal(50);
    const before = await ledgerPicture(store);
    // The pen costs 90 ACME: the 50 left do not pay for it, the held units are not there.
    const sale = await call<SaleAck>(till.socket, 'sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card: CHLOE.card, tenders: [{ token: 'ACME', units: 90 }], cashTenderedMinor: 0 });
    expect(code(sale)).to.be.oneOf(['CORE_ERR_INSUFFICIENT_TOKENS', 'CORE_ERR_TENDER_EXCESS']);
    expect(await ledgerPicture(store)).to.deep.equal(before);
    expect(escrow(lot.lotId)).to.equal(held);
  });

  it('answers a replayed bid key with the original bid, and refuses it with another body', async () => {
    const lot = await createLot({});
    const k = key();
    const first = expectOk(await bid(lot.lotId, ANNA.card, 20, till, k));
    const picture = await ledgerPicture(store);
    const again = expectOk(await bid(lot.lotId, ANNA.card, 20, till, k));
    expect(again).to.deep.equal(first);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    expect(code(await bid(lot.lotId, ANNA.card, 40, till, k))).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(code(await bid(lot.lotId, BULENT.card, 20, till, k))).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    // A till may not use another till's key.
    expect(code(await call(till2.socket, 'lot:bid', { key: k, lotId: lot.lotId, card: ANNA.card, units: 20 }))).to.equal('VND_ERR_IDEMPOTENCY_KEY');
  });

  it('moves the close on for a bid in the last seconds (anti-sniping)', async () => {
    const lot = await createLot({ closesAt: soon(20_000), snipeWindowSeconds: 60, extendSeconds: 120 });
    const ack = expectOk(await bid(lot.lotId, ANNA.card, 10));
    expect(Date.parse(ack.closesAt)).to.be.greaterThan(Date.parse(lot.closesAt) + 60_000);
    expect(view(lot.lotId).closesAt).to.equal(ack.closesAt);
  });

  it('cancels a lot only before its first bid, and a cancelled or closed lot takes no bids', async () => {
    const lot = await createLot({});
    const cancelled = await store.operator('POST', `/api/lots/${lot.lotId}/cancel`, { reason: 'withdrawn by the owner' }, { 'idempotency-key': randomUUID() });
    expect(cancelled.status, cancelled.text).to.equal(200);
    expect(cancelled.body.status).to.equal('cancelled');
    const before = await ledgerPicture(store);
    expect(code(await bid(lot.lotId, ANNA.card, 10))).to.equal('VND_ERR_LOT_CLOSED');
    expect(await ledgerPicture(store)).to.deep.equal(before);
    const withBid = await createLot({});
    expectOk(await bid(withBid.lotId, ANNA.card, 10));
    const refused = await store.operator('POST', `/api/lots/${withBid.lotId}/cancel`, { reason: 'too late' }, { 'idempotency-key': randomUUID() });
    expect(refused.status).to.equal(409);
    expect(refused.body.error.code).to.equal('VND_ERR_LOT_HAS_BIDS');
    expect(code(await bid('lot-999999', ANNA.card, 10))).to.equal('VND_ERR_LOT_UNKNOWN');
  });

  it('closes a sold lot exactly once as a sale from escrow, releases nothing twice, and the winner\'s till prints its receipt', async () => {
    const lot = await createLot({ snipeWindowSeconds: 0, reserveUnits: 30 });
    const a0 = acme(ANNA.id);
    const b0 = acme(BULENT.id);
    expectOk(await bid(lot.lotId, ANNA.card, 20));
    expectOk(await bid(lot.lotId, BULENT.card, 40, till2));
    const closed = new Promise<LotView>((resolve) => {
      const on = (vs: LotView[]) => {
        const v = vs.find((x) => x.lotId === lot.lotId && x.status === 'closed');
        if (v === undefined) return;
        till2.socket.off('lots:update', on);
        resolve(v);
      };
      till2.socket.on('lots:update', on);
    });
    await passClose(lot);
    const v = await closed;
    expect(v.result?.sold).to.equal(true);
    expect(v.result?.units).to.equal(40);
    expect(acme(ANNA.id)).to.equal(a0);
    expect(acme(BULENT.id)).to.equal(b0 - 40);
    expect(escrow(lot.lotId)).to.equal(0);
    const sales = (await exportJournal(store)).filter((e) => e.type === 'sale' && e.data.lot?.lotId === lot.lotId);
    expect(sales).to.have.length(1);
    const sale = sales[0] as Extract<JournalEvent, { type: 'sale' }>;
    expect(sale.terminal).to.equal(till2.terminalId);
    expect(sale.postings).to.deep.equal([{ account: `escrow:${lot.lotId}`, token: 'ACME', units: -40 }, { account: 'redeemed', token: 'ACME', units: 40 }]);
    expect(sale.data.customer).to.equal(BULENT.id);
    // Closing again is no second sale.
    const seq = store.server.ledger.state.seq;
    await store.server.auctions.close(lot.lotId);
    await store.server.auctions.closeDue();
    expect(store.server.ledger.state.seq).to.equal(seq);
    const receipt = expectOk(await call<ReceiptData>(till2.socket, 'receipt:get', { saleId: v.result?.saleId }));
    expect(receipt.sale.lines[0]?.name).to.equal('Espresso machine');
    expect(receipt.sale.debits).to.deep.equal({ ACME: 40 });
    // A lot sold at auction is not refunded at the till.
    const refund = await call(till2.socket, 'sale:refund', { key: key(till2), saleId: v.result?.saleId, reason: 'changed mind', supervisor: { staffId: 'sam', pin: '9999' } });
    expect(code(refund)).to.equal('VND_ERR_LOT_SALE_FINAL');
    expect(code(await bid(lot.lotId, CHLOE.card, 100))).to.equal('VND_ERR_LOT_CLOSED');
  });

  it('closes a lot below its reserve unsold, giving the high bid back', async () => {
    const lot = await createLot({ snipeWindowSeconds: 0, reserveUnits: 1_000 });
    const a0 = acme(ANNA.id);
    expectOk(await bid(lot.lotId, ANNA.card, 30));
    expect(acme(ANNA.id)).to.equal(a0 - 30);
    await passClose(lot);
    await until('the unsold close', () => (view(lot.lotId).status === 'closed' ? true : undefined), 20_000);
    expect(view(lot.lotId).result).to.deep.equal({ sold: false, saleId: null, units: null, card: null });
    expect(acme(ANNA.id)).to.equal(a0);
    expect(escrow(lot.lotId)).to.equal(0);
  });

  it('buys at once at the buy-now price', async () => {
    const lot = await createLot({ buyNowUnits: 60 });
    const ack = expectOk(await bid(lot.lotId, ANNA.card, 500));
    expect(ack.units).to.equal(60);
    expect(ack.buyNow).to.equal(true);
    await until('the buy-now close', () => (view(lot.lotId).status === 'closed' ? true : undefined), 20_000);
    expect(view(lot.lotId).result?.sold).to.equal(true);
  });

  it('closes at once on start a lot whose close passed while the server was down, and the journal replays to the same balances', async () => {
    const lot = await createLot({ snipeWindowSeconds: 0 });
    expectOk(await bid(lot.lotId, CHLOE.card, 10));
    // Stopped before the close, started after it.
    await store.server.close();
    aheadMs += Date.parse(lot.closesAt) - auctionClock().getTime() + 1_000;
    const { startTestVendor } = await import('../helpers/vendor.ts');
    // The test waits for the audit's verdict: at normal priority, so that a saturated machine does not starve it.
    store.server = await startTestVendor(store.dir, { auctionClock, auditNice: 0 });
    await until('the close on start', () => (store.server.auctions.view(lot.lotId).status === 'closed' ? true : undefined), 10_000);
    expect(store.server.auctions.view(lot.lotId).result?.sold).to.equal(true);
    till = await store.openTill('Till 1b');
    till2 = await store.openTill('Till 2b');
    const events = await exportJournal(store);
    const replayed = replayBalances(events, store.server.ledger.store.vendorId);
    expect(JSON.stringify(replayed)).to.equal(JSON.stringify(store.server.ledger.state.balances));
    // Every escrow is empty or holds exactly its open lot's high bid.
    for (const [account, row] of Object.entries(store.server.ledger.state.balances)) {
      if (!account.startsWith('escrow:') || row['ACME'] === undefined) continue;
      const l = store.server.ledger.state.lots[account.slice(7)];
      expect(l?.status, account).to.equal('open');
      expect(row['ACME']).to.equal(l?.high?.units);
    }
    await until('the integrity audit', () => (store.server.audit.status.state === 'checking' ? undefined : store.server.audit.status.state), 60_000);
    expect(store.server.audit.status.state).to.equal('ok');
  });

  describe('the bid board', () => {
    let board: Socket;
    before(async () => {
      board = boardSocket(store.server);
      await new Promise<void>((resolve, reject) => {
        board.once('connect', () => resolve());
        board.once('connect_error', reject);
      });
      expect((await store.operator('PUT', `/api/customers/${ANNA.id}/pin`, { pin: '2468' })).status).to.equal(200);
      expect((await store.operator('PUT', `/api/customers/${BULENT.id}/pin`, { pin: '1357' })).status).to.equal(200);
    });
    after(() => board.disconnect());

    it('serves the page and lets anyone watch without a card', async () => {
      const res = await fetchTls(`${store.server.url}/board`);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-security-policy')).to.include("script-src 'self'");
      expect(await res.text()).to.include('/board/board.js');
      const lots = expectOk(await boardCall<LotView[]>(board, 'lots:list', {}));
      expect(lots.length).to.be.greaterThan(0);
      for (const l of lots) if (l.high !== null) expect(l.high.card).to.not.match(/^C\d{10}$/);
    });

    it('refuses a bid without card and PIN, or with a key that is not the board\'s, changing nothing', async () => {
      const lot = await createLot({});
      const before = await ledgerPicture(store);
      expect(code(await boardCall(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, units: 10 }))).to.equal('CORE_ERR_VALIDATION');
      expect(code(await boardCall(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, card: ANNA.card, units: 10 }))).to.equal('CORE_ERR_VALIDATION');
      expect(code(await boardCall(board, 'board:bid', { key: `${till.terminalId}:${randomUUID()}`, lotId: lot.lotId, card: ANNA.card, pin: '2468', units: 10 }))).to.equal('VND_ERR_IDEMPOTENCY_KEY');
      // A customer without a PIN cannot bid from the board.
      expect(code(await boardCall(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, card: CHLOE.card, pin: '0000', units: 10 }))).to.equal('VND_ERR_CUSTOMER_PIN');
      expect(code(await boardCall(board, 'sale:commit', {}))).to.equal('VND_ERR_UNKNOWN_EVENT');
      expect(await ledgerPicture(store)).to.deep.equal(before);
    });

    it('takes a bid with card and PIN, pushed to the board', async () => {
      const lot = await createLot({});
      const seen = new Promise<LotView>((resolve) => {
        const on = (vs: LotView[]) => {
          const v = vs.find((x) => x.lotId === lot.lotId && x.high !== null);
          if (v === undefined) return;
          board.off('lots:update', on);
          resolve(v);
        };
        board.on('lots:update', on);
      });
      const ack = expectOk(await boardCall<BidAck>(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, card: ANNA.card, pin: '2468', units: 10 }));
      expect(ack.units).to.equal(10);
      expect((await seen).high?.units).to.equal(10);
    });

    it('stops PIN guessing: wrong PINs back off and lock, and the right PIN is then refused too', async () => {
      const lot = await createLot({});
      const before = await ledgerPicture(store);
      const codes: string[] = [];
      for (let i = 0; i < BOARD_PIN_FAILURES_MAX + 2; i++) {
        const guess = String(1000 + i);
        codes.push(code(await boardCall(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, card: BULENT.card, pin: guess, units: 10 })) ?? 'ok');
      }
      expect(codes[0]).to.equal('VND_ERR_CUSTOMER_PIN');
      expect(codes.slice(1).every((c) => c === 'VND_ERR_CUSTOMER_PIN' || c === 'VND_ERR_RATE_LIMITED' || c === 'VND_ERR_CUSTOMER_LOCKED')).to.equal(true);
      expect(codes.filter((c) => c === 'VND_ERR_CUSTOMER_PIN').length).to.be.at.most(BOARD_PIN_FAILURES_MAX);
      const right = await boardCall(board, 'board:bid', { key: `board:${randomUUID()}`, lotId: lot.lotId, card: BULENT.card, pin: '1357', units: 10 });
      expect(code(right)).to.be.oneOf(['VND_ERR_RATE_LIMITED', 'VND_ERR_CUSTOMER_LOCKED']);
      expect(await ledgerPicture(store)).to.deep.equal(before);
    });
  });
});
