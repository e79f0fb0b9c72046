import { expect } from 'chai';
import { MallposError, type ProductView, type ReceiptData, type SaleResult } from '../../core/index.ts';
import { checkReceipt } from '../../hardware/printer/index.ts';
import * as carts from '../../terminal/cart.ts';
import { toReceipt } from '../../terminal/receipts.ts';

const pen: ProductView = { gtin: '4006381333931', name: 'Stabilo pen, 4 colours', priceMinor: 450, currency: 'EUR', tokenPrices: { ACME: 90, MALL: 45 } };
const muesli: ProductView = { gtin: '9001001000014', name: 'Müsli Classic 750 g', priceMinor: 399, currency: 'EUR', tokenPrices: { ACME: 80 } };

function sale(): SaleResult {
  return {
    saleId: 'S0000000061',
    seq: 61,
    at: '2026-11-28T21:10:06.012Z',
    terminal: 't001',
    cashier: 'ana',
    customer: { id: 'cust-000001', name: 'Anna Berger', card: 'C0000000018' },
    currency: 'EUR',
    lines: [
      { lineNo: 1, gtin: pen.gtin, name: pen.name, qty: 2, unitPriceMinor: 450, totalMinor: 900, unitTokenPrices: pen.tokenPrices },
      { lineNo: 2, gtin: muesli.gtin, name: muesli.name, qty: 1, unitPriceMinor: 399, totalMinor: 399, unitTokenPrices: muesli.tokenPrices },
    ],
    allocations: [{ lineNo: 1, token: 'ACME', units: 100, coversMinor: 500 }],
    debits: { ACME: 100 },
    totalMinor: 1299,
    cash: { dueMinor: 799, tenderedMinor: 1000, changeMinor: 201 },
    balancesAfter: { ACME: 100, MALL: 100 },
    refunded: false,
  };
}

describe('terminal: receipts from committed sales', () => {
  const opts = { kind: 'sale' as const, terminalName: 'Till 1', cashierName: 'Ana', tokenNames: { ACME: 'ACME token', MALL: 'Mall token' } };
  const data = (): ReceiptData => ({ store: { vendorId: 'acme', name: 'ACME Market', address: ['Mall Street 1'] }, sale: sale(), refund: null });

  it('shows what was paid with which tokens, the cash, the change and the balances left', () => {
    const r = toReceipt(data(), opts);
    checkReceipt(r);
    expect(r.lines[0]).to.deep.include({ name: pen.name, qty: 2, price: '90 ACME', total: '100 ACME + €4.00' });
    expect(r.lines[1]).to.deep.include({ name: muesli.name, price: '€3.99', total: '€3.99' });
    expect(r.tenders).to.deep.equal([
      { label: 'ACME tokens', amount: '100 ACME' },
      { label: 'Cash', amount: '€7.99' },
    ]);
    expect(r.cash).to.deep.equal({ due: '€7.99', tendered: '€10.00', change: '€2.01' });
    expect(r.balances).to.deep.equal([
      { label: 'ACME tokens', amount: '100 ACME' },
      { label: 'Mall tokens', amount: '100 MALL' },
    ]);
    expect(r.barcode).to.equal('S0000000061');
    expect(r.qr).to.include('S0000000061');
  });

  it('names the refunded sale on a refund receipt and shows the balances after it', () => {
    const refund = { refundId: 'S0000000070', seq: 70, at: '2026-11-29T09:00:00.000Z', saleId: 'S0000000061', credited: { ACME: 100 }, cashRefundMinor: 799, balancesAfter: { ACME: 200, MALL: 100 } };
    const r = toReceipt({ ...data(), refund }, { ...opts, kind: 'refund' });
    expect(r.saleId).to.equal('S0000000070');
    expect(r.footer).to.include('Refund of sale S0000000061 (2026-11-28)');
    expect(r.footer).to.include('Credited back: 100 ACME');
    expect(r.footer).to.include('Cash refunded: €7.99');
    expect(r.balances[0]).to.deep.equal({ label: 'ACME tokens', amount: '200 ACME' });
  });
});

describe('terminal: the cart', () => {
  it('adds one more of the last product, a new line otherwise, and never holds a price request', () => {
    let cart = carts.addProduct(carts.emptyCart(), pen, pen.gtin);
    cart = carts.addProduct(cart, pen, pen.gtin);
    cart = carts.addProduct(cart, muesli, muesli.gtin);
    cart = carts.addProduct(cart, pen, pen.gtin);
    expect(cart.lines.map((l) => [l.gtin, l.qty])).to.deep.equal([
      [pen.gtin, 2],
      [muesli.gtin, 1],
      [pen.gtin, 1],
    ]);
    expect(carts.requestLines(cart)).to.deep.equal([
      { code: pen.gtin, qty: 2 },
      { code: muesli.gtin, qty: 1 },
      { code: pen.gtin, qty: 1 },
    ]);
    expect(carts.localTotalMinor(cart)).to.equal(2 * 450 + 399 + 450);
  });

  it('changes quantities, voids lines and refuses bad input with a typed error', () => {
    let cart = carts.addProduct(carts.emptyCart(), pen, pen.gtin);
    cart = carts.setQty(cart, 1, 5);
    expect(cart.lines[0]?.qty).to.equal(5);
    for (const bad of [0, -1, 1.5, 10_000]) expect(() => carts.setQty(cart, 1, bad)).to.throw(MallposError);
    expect(() => carts.voidLine(cart, 9)).to.throw(MallposError).with.property('code', 'POS_ERR_LINE_UNKNOWN');
    expect(carts.voidLine(cart, 1).lines).to.deep.equal([]);
    expect(() => carts.setCash(cart, -5)).to.throw(MallposError).with.property('code', 'CORE_ERR_AMOUNT');
    expect(() => carts.setTenders(cart, [{ token: 'ACME' }])).to.throw(MallposError).with.property('code', 'POS_ERR_NO_CUSTOMER');
  });

  it('drops tenders when the customer changes', () => {
    const anna = { id: 'cust-000001', card: 'C0000000018', name: 'Anna', balances: [] };
    const bob = { id: 'cust-000002', card: 'C0000000026', name: 'Bob', balances: [] };
    let cart = carts.setCustomer(carts.addProduct(carts.emptyCart(), pen, pen.gtin), anna);
    cart = carts.setTenders(cart, [{ token: 'ACME', units: 10 }]);
    expect(carts.setCustomer(cart, anna).tenders).to.have.length(1);
    expect(carts.setCustomer(cart, bob).tenders).to.deep.equal([]);
  });
});
