import { expect } from 'chai';
import type { CustomerView } from '../../core/index.ts';
import type { MallLotView } from '../../core/auctions.ts';
import { TillAuctions } from '../../terminal/auctions.ts';
import { RemoteError, type StoreLink } from '../../terminal/store-link.ts';

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
  const sent: { event: string; body: Record<string, unknown>; secret: Record<string, unknown> | undefined }[] = [];
  const said: string[] = [];
  const customer = { card: 'C0000000018', name: 'Ann' } as CustomerView;
  const link = {
    connected: true,
    onLotUpdate: () => () => undefined,
    request: (event: string) => {
      if (event === 'lots:list') return Promise.resolve([]);
      if (event === 'mall-lots:list') {
        if (mallLots === 'offline') return Promise.reject(new RemoteError({ code: 'VND_ERR_MALL_LOT_OFFLINE', message: 'the mall cannot be reached' }));
        return Promise.resolve(mallLots);
      }
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
    });

  beforeEach(() => {
    sent.length = 0;
    said.length = 0;
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
    await t.command({ type: 'refreshLots' });
    expect(said.at(-1)).to.match(/sold to card .* mall sale mls-000001/);
  });

  it('keeps the store\'s lots when the mall cannot be reached', async () => {
    mallLots = 'offline';
    const t = till();
    await t.command({ type: 'refreshLots' });
    expect(t.view().lots).to.deep.equal([]);
    expect(said).to.deep.equal([]);
  });
});
