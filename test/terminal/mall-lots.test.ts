import { expect } from 'chai';
import type { CustomerView } from '../../core/index.ts';
import type { MallLotReceipt, MallLotView } from '../../core/auctions.ts';
import { mallLotReceipt } from '../../terminal/economy-receipts.ts';
import { TillAuctions } from '../../terminal/auctions.ts';
import { RemoteError, type StoreLink } from '../../terminal/store-link.ts';
import { until } from '../helpers/process.ts';

/**
 * The till's lots panel with the mall's lots: fetched through the store beside the
 * store's own, marked as the mall's; a bid on one goes to the store as `mall-lot:bid`
 * with the wallet PIN as a secret (never written to the till's disk); a mall out of reach
 * leaves the panel with the store's lots; the close of a mall lot the till bid on is said.
 */
function mallLot(over: Partial<MallLotView> = {}): MallLotView {
  return {
    lotId: 'mlot-000001',
    mall: true,
    title: 'Brass lamp',
    token: 'MALL',
    incrementUnits: 5,
    opensAt: '2026-12-01T10:00:00.000Z',
    closesAt: '2026-12-01T12:00:00.000Z',
    status: 'open',
    high: null,
    bids: 0,
    minBidUnits: 5,
    reserveMet: false,
    result: null,
    ...over,
  };
}

describe('terminal: mall lots on the lots panel', () => {
  let mallLots: MallLotView[] | 'offline';
  let won: { receipt: MallLotReceipt | null; receiptJws: { protected: string; payload: string; signature: string } | null };
  const printed: { receipt: MallLotReceipt; jws: unknown }[] = [];
  let pushMall: (lots: MallLotView[]) => void = () => undefined;
  const sent: { event: string; body: Record<string, unknown>; secret: Record<string, unknown> | undefined }[] = [];
  const said: string[] = [];
  const customer = { card: 'C0000000018', name: 'Ann' } as CustomerView;
  const link = {
    connected: true,
    onLotUpdate: () => () => undefined,
    onMallLotsUpdate: (cb: (lots: MallLotView[]) => void) => {
      pushMall = cb;
      return () => undefined;
    },
    request: (event: string) => {
      if (event === 'lots:list') return Promise.resolve([]);
      if (event === 'mall-lots:list') {
        if (mallLots === 'offline') return Promise.reject(new RemoteError({ code: 'VND_ERR_MALL_LOT_OFFLINE', message: 'the mall cannot be reached' }));
        return Promise.resolve(mallLots);
      }
      if (event === 'mall-lot:get') return Promise.resolve(won);
      return Promise.reject(new Error(`unexpected ${event}`));
    },
  } as unknown as StoreLink;
  const till = () =>
    new TillAuctions({
      link,
      sendKeyed: <T>(event: string, body: Record<string, unknown>, secret?: Record<string, unknown>) => {
        sent.push({ event, body, secret });
        return Promise.resolve({ lotId: body['lotId'], card: body['card'], units: body['units'], at: '', closesAt: '2026-12-01T12:00:00.000Z', nextMinBidUnits: 0, wallet: { card: body['card'], balances: {}, held: {}, asOf: '' } } as T);
      },
      customer: () => customer,
      setCustomer: () => Promise.resolve(),
      needOnline: () => undefined,
      say: (_kind, text) => said.push(text),
      changed: () => undefined,
      printSale: () => Promise.resolve(),
      printMallLot: (receipt, jws) => {
        printed.push({ receipt, jws });
        return Promise.resolve();
      },
    });

  beforeEach(() => {
    sent.length = 0;
    said.length = 0;
    printed.length = 0;
    won = { receipt: null, receiptJws: null };
  });

  it('shows the mall lots marked as the mall\'s, and sends a bid on one as mall-lot:bid with the wallet PIN as a secret', async () => {
    mallLots = [mallLot()];
    const t = till();
    await t.command({ type: 'refreshLots' });
    expect(t.view().lots.map((l) => [l.lotId, l.mall, l.status, l.minBidUnits])).to.deep.equal([['mlot-000001', true, 'open', 5]]);
    await t.command({ type: 'bid', lotId: 'mlot-000001', units: 10, pin: '2580' });
    expect(sent).to.deep.equal([{ event: 'mall-lot:bid', body: { lotId: 'mlot-000001', card: 'C0000000018', units: 10 }, secret: { walletPin: '2580' } }]);
    expect(said.at(-1)).to.match(/high bidder on the mall's Brass lamp/);
    // The lot closes at the mall, sold to this till's customer: said on the next fetch.
    mallLots = [mallLot({ status: 'closed', bids: 1, minBidUnits: null, result: { sold: true, saleId: 'mls-000001', units: 10, card: 'C••••••0018', vendor: 'acme', closedAt: '2026-12-01T12:00:00.000Z' } })];
    const receipt: MallLotReceipt = { saleId: 'mls-000001', lotId: 'mlot-000001', title: 'Brass lamp', token: 'MALL', units: 10, card: 'C0000000018', vendor: 'acme', closedAt: '2026-12-01T12:00:00.000Z', closedSeq: 42 };
    won = { receipt, receiptJws: { protected: 'eyJhbGciOiJFZERTQSJ9', payload: 'eyJzYWxlSWQiOiJtbHMtMDAwMDAxIn0', signature: 'c2ln' } };
    await t.command({ type: 'refreshLots' });
    expect(said.at(-1)).to.match(/sold to card .* mall sale mls-000001, receipt printed/);
    // The winner's store got the mall's signed receipt: the till whose bid won prints it, once.
    expect(printed).to.deep.equal([{ receipt, jws: won.receiptJws }]);
    await t.command({ type: 'refreshLots' });
    expect(printed).to.have.length(1);
  });

  it('says a mall lot won through another store, printing nothing', async () => {
    mallLots = [mallLot()];
    const t = till();
    await t.command({ type: 'refreshLots' });
    await t.command({ type: 'bid', lotId: 'mlot-000001', units: 10, pin: '2580' });
    mallLots = [mallLot({ status: 'closed', bids: 2, minBidUnits: null, result: { sold: true, saleId: 'mls-000002', units: 15, card: 'C••••••0026', vendor: 'bella', closedAt: '2026-12-01T12:00:00.000Z' } })];
    await t.command({ type: 'refreshLots' });
    expect(said.at(-1)).to.match(/through store bella: mall sale mls-000002, won through another store/);
    expect(printed).to.deep.equal([]);
  });

  it('prints a mall lot receipt with the card masked and the mall\'s signature as the QR code', () => {
    const r: MallLotReceipt = { saleId: 'mls-000001', lotId: 'mlot-000001', title: 'Brass lamp', token: 'MALL', units: 10, card: 'C0000000018', vendor: 'acme', closedAt: '2026-12-01T12:00:00.000Z', closedSeq: 42 };
    const slip = mallLotReceipt(r, { protected: 'aaa', payload: 'bbb', signature: 'ccc' }, { store: { name: 'ACME', address: [] }, terminalName: 'Till 1', cashierName: 'Ana', tokenNames: {} });
    expect(slip.qr).to.equal('aaa.bbb.ccc');
    expect(slip.saleId).to.equal('mls-000001');
    const text = JSON.stringify(slip);
    expect(text).to.include('Brass lamp').and.include('•••018');
    expect(text).to.not.include('C0000000018');
  });

  it('takes the mall lots the store pushes: a new high bid shows, and a lot this till won is printed', async () => {
    mallLots = [mallLot()];
    const t = till();
    await t.command({ type: 'refreshLots' });
    await t.command({ type: 'bid', lotId: 'mlot-000001', units: 10, pin: '2580' });
    pushMall([mallLot({ bids: 2, high: { units: 15, card: 'C••••••0026', vendor: 'bella' }, minBidUnits: 20 })]);
    await until('the pushed high bid', () => (t.view().lots[0]?.high?.units === 15 ? true : undefined), 5_000);
    const receipt: MallLotReceipt = { saleId: 'mls-000003', lotId: 'mlot-000001', title: 'Brass lamp', token: 'MALL', units: 20, card: 'C0000000018', vendor: 'acme', closedAt: '2026-12-01T12:00:00.000Z', closedSeq: 50 };
    won = { receipt, receiptJws: null };
    pushMall([mallLot({ status: 'closed', bids: 3, minBidUnits: null, result: { sold: true, saleId: 'mls-000003', units: 20, card: 'C••••••0018', vendor: 'acme', closedAt: '2026-12-01T12:00:00.000Z' } })]);
    await until('the won lot printed', () => (printed.length === 1 ? true : undefined), 5_000);
    expect(printed[0]?.receipt).to.deep.equal(receipt);
  });

  it('keeps the store\'s lots when the mall cannot be reached', async () => {
    mallLots = 'offline';
    const t = till();
    await t.command({ type: 'refreshLots' });
    expect(t.view().lots).to.deep.equal([]);
    expect(said).to.deep.equal([]);
  });
});
