import { expect } from 'chai';
import type { InstrumentSaleAck, ReceiptData, SaleResult } from '../../core/index.ts';
import { checkReceipt, type Receipt } from '../../hardware/printer/index.ts';
import { ScanFramer } from '../../hardware/scanner/framing.ts';
import * as carts from '../../terminal/cart.ts';
import { certificateSlip, instrumentScan, remainingText, SCANNER_LINE_BYTES_MAX } from '../../terminal/instruments.ts';
import { toReceipt } from '../../terminal/receipts.ts';
import { commandSchema } from '../../terminal/screen-server.ts';

/** The worked example of docs/PROTOCOL.md: a real compact instrument of 310 characters. */
const COMPACT =
  'eyJhbGciOiJFZERTQSIsImtpZCI6Ii0tNklNNWwwT29zTGo5eVdza0lTWWhVQTNuXzNDVVJRa21yWU1TaGFfY2siLCJ0eXAiOiJtcGdjIn0.eyJpIjoibWFsbCIsInMiOiJHN0syTTlRNFhCIiwidCI6Ik1BTEwiLCJ1IjoyNTAwLCJhIjoxNzk2MDgzMjAwLCJ4IjoxODI3NjE5MjAwfQ.G6ix-gRkygjzdw3h4Vk9lWNYFu2vDTDiGn4omy3kNRQN8gbjFjGq4BbCw7KAVmzVpLCbyifz8PajXT12der9BQ';

function saleWith(instruments: SaleResult['instruments']): SaleResult {
  return {
    saleId: 'S0000000080',
    seq: 80,
    at: '2026-12-01T10:00:00.000Z',
    terminal: 't001',
    cashier: 'ana',
    customer: null,
    currency: 'EUR',
    lines: [{ lineNo: 1, gtin: '4006381333931', name: 'Stabilo pen, 4 colours', qty: 1, unitPriceMinor: 450, totalMinor: 450, unitTokenPrices: { MALL: 45 } }],
    allocations: [{ lineNo: 1, token: 'MALL', units: 45, coversMinor: 450 }],
    debits: { MALL: 45 },
    totalMinor: 450,
    cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
    balancesAfter: null,
    refunded: false,
    ...(instruments === undefined ? {} : { instruments }),
  };
}

describe('terminal: gift certificates and coupons', () => {
  it('tells an instrument scan from products, cards and receipts, and its short code from noise', () => {
    expect(instrumentScan(COMPACT)).to.deep.equal({ kind: 'compact', compact: COMPACT });
    expect(instrumentScan(`  ${COMPACT}\r`)).to.deep.equal({ kind: 'compact', compact: COMPACT });
    expect(instrumentScan('MALL-G7K2M9Q4XB-24')).to.deep.equal({ kind: 'code', code: 'MALL-G7K2M9Q4XB-24' });
    expect(instrumentScan('sunny-foods-A1B2C3D4-07')).to.deep.equal({ kind: 'code', code: 'sunny-foods-A1B2C3D4-07' });
    for (const other of ['4006381333931', 'C0000000018', 'S0000000061', 'not.a', 'a.b.c', `${COMPACT}.x`, 'MALL-G7K-24', '', 'eyJ'.padEnd(1_100, 'A') + '.x.y']) {
      expect(instrumentScan(other), other.slice(0, 40)).to.equal(null);
    }
  });

  it('the serial framer keeps a whole certificate that arrives in many chunks, under the till\'s line bound', () => {
    const framer = new ScanFramer({ lineBytesMax: SCANNER_LINE_BYTES_MAX });
    const bytes = new TextEncoder().encode(`]Q1${COMPACT}\r\n`);
    const codes: string[] = [];
    for (let i = 0; i < bytes.length; i += 7) for (const f of framer.push(bytes.subarray(i, i + 7))) if (f.kind === 'code') codes.push(f.code);
    expect(codes).to.deep.equal([COMPACT]);
    // The default bound of 128 bytes would have cut it.
    const short = new ScanFramer();
    const kept: string[] = [];
    for (const f of short.push(bytes)) if (f.kind === 'code') kept.push(f.code);
    expect(kept).to.deep.equal([]);
  });

  it('the screen may send a scan as long as a certificate, and the instrument commands, and nothing longer', () => {
    expect(commandSchema.safeParse({ type: 'scan', code: COMPACT }).success).to.equal(true);
    expect(commandSchema.safeParse({ type: 'scan', code: 'x'.repeat(1_025) }).success).to.equal(false);
    expect(commandSchema.safeParse({ type: 'instrumentPay', code: 'MALL-G7K2M9Q4XB-24' }).success).to.equal(true);
    expect(commandSchema.safeParse({ type: 'instrumentRemove', code: 'MALL-G7K2M9Q4XB-24' }).success).to.equal(true);
    expect(commandSchema.safeParse({ type: 'instrumentClose' }).success).to.equal(true);
    expect(commandSchema.safeParse({ type: 'instrumentPay', code: 'MALL-G7K2M9Q4XB-24', instrument: COMPACT }).success).to.equal(false);
    expect(commandSchema.safeParse({ type: 'sellCertificate', token: 'ACME', units: 400, payment: { method: 'cash', tenderedMinor: 2_500 } }).success).to.equal(true);
    expect(commandSchema.safeParse({ type: 'sellCertificate', token: 'ACME', units: 0, payment: { method: 'cash', tenderedMinor: 2_500 } }).success).to.equal(false);
  });

  it('the cart holds each instrument once, at most eight, and a cancelled sale none', () => {
    let cart = carts.emptyCart();
    const entry = { code: 'MALL-G7K2M9Q4XB-24', kind: 'gift' as const, token: 'MALL', remainingUnits: 2_500 };
    cart = carts.addInstrument(cart, entry);
    cart = carts.addInstrument(cart, entry);
    expect(cart.instruments).to.deep.equal([entry]);
    for (let i = 0; i < 7; i++) cart = carts.addInstrument(cart, { ...entry, code: `MALL-G7K2M9Q4X${i}-24` });
    expect(() => carts.addInstrument(cart, { ...entry, code: 'MALL-G7K2M9Q4ZZ-24' })).to.throw(/at most 8/);
    expect(carts.removeInstrument(cart, entry.code).instruments).to.have.length(7);
    expect(carts.emptyCart().instruments).to.deep.equal([]);
  });

  it('a receipt names the certificate that paid, what it paid and what remains, and a used coupon; never its signed form', () => {
    const data: ReceiptData = {
      store: { vendorId: 'acme', name: 'ACME Market', address: [] },
      sale: saleWith([
        { code: 'MALL-G7K2M9Q4XB-24', kind: 'gift', token: 'MALL', units: 45, remainingAfter: 2_455, offline: false },
        { code: 'SUNNY-FOODS-A1B2C3D4-07', kind: 'coupon', token: 'SUNNY', units: 25, remainingAfter: 0, offline: true },
      ]),
      refund: null,
    };
    const r = toReceipt(data, { kind: 'sale', terminalName: 'Till 1', cashierName: 'Ana', tokenNames: { MALL: 'Mall token' } });
    expect(checkReceipt(r)).to.deep.include({ ok: true });
    expect(r.tenders[0]).to.deep.equal({ label: 'Gift certificate', amount: '45 MALL' });
    expect(r.sections).to.deep.include({ title: 'Gift certificate MALL-G7K2M9Q4XB-24', rows: [{ label: 'Paid', amount: '45 MALL' }, { label: 'Remaining', amount: '2455 MALL' }] });
    expect(r.sections).to.deep.include({ title: 'Coupon SUNNY-FOODS-A1B2C3D4-07', rows: [{ label: 'Paid', amount: '25 SUNNY' }, { label: 'Remaining', amount: 'used' }, { label: 'Taken offline', amount: 'yes' }] });
    expect(JSON.stringify(r)).to.not.include('eyJ');
    expect(remainingText(data.sale.instruments ?? [])).to.equal('2455 MALL remain on MALL-G7K2M9Q4XB-24; coupon SUNNY-FOODS-A1B2C3D4-07 used');
  });

  it('a sold certificate\'s slip carries its signed form in the QR code and its short code in words', async () => {
    const ack: InstrumentSaleAck = {
      seq: 90,
      at: '2026-12-01T10:00:00.000Z',
      code: 'MALL-G7K2M9Q4XB-24',
      instrument: COMPACT,
      token: 'MALL',
      units: 2_500,
      priceMinor: 25_000,
      currency: 'EUR',
      expiresAt: '2027-12-01T00:00:00.000Z',
      payment: { method: 'cash', tenderedMinor: 30_000, changeMinor: 5_000 },
    };
    let queued: Receipt | null = null;
    const printed = await certificateSlip(ack, { store: { name: 'ACME Market', address: [] }, terminal: 'Till 1', cashier: 'Ana' }, {
      enqueue: (r: Receipt) => {
        queued = r;
        return Promise.resolve({ ok: true });
      },
    } as never);
    expect(printed.ok).to.equal(true);
    const slip = queued as unknown as Receipt;
    expect(checkReceipt(slip)).to.deep.include({ ok: true });
    expect(slip.qr).to.equal(COMPACT);
    expect(slip.footer).to.include('Code MALL-G7K2M9Q4XB-24');
    expect(slip.cash).to.deep.equal({ due: '€250.00', tendered: '€300.00', change: '€50.00' });
  });
});
