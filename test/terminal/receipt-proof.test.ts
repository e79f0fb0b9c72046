import { expect } from 'chai';
import type { OfflineSaleRecord, ReceiptData } from '../../core/index.ts';
import { checkReceipt } from '../../hardware/printer/index.ts';
import { toOfflineReceipt, toReceipt } from '../../terminal/receipts.ts';

const opts = { kind: 'sale' as const, terminalName: 'Till 1', cashierName: 'Ana', tokenNames: { ACME: 'ACME token' } };

function data(proof?: string): ReceiptData {
  return {
    store: { vendorId: 'acme', name: 'ACME Market', address: [] },
    sale: {
      saleId: 'S0000000061',
      seq: 61,
      at: '2026-11-28T21:10:06.012Z',
      terminal: 't001',
      cashier: 'ana',
      customer: null,
      currency: 'EUR',
      lines: [{ lineNo: 1, gtin: '4006381333931', name: 'Pen', qty: 1, unitPriceMinor: 450, totalMinor: 450, unitTokenPrices: { ACME: 90 } }],
      allocations: [{ lineNo: 1, token: 'ACME', units: 90, coversMinor: 450 }],
      debits: { ACME: 90 },
      totalMinor: 450,
      cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
      balancesAfter: null,
      refunded: false,
    },
    refund: null,
    ...(proof === undefined ? {} : { proof }),
  };
}

describe('terminal: the receipt\'s QR code is the store\'s signed proof', () => {
  it('prints the proof the store sent as the QR code, and the sale id when there is none', () => {
    const proof = `eyJhbGciOiJFZERTQSJ9.${'e'.repeat(300)}.${'s'.repeat(86)}`;
    const signed = toReceipt(data(proof), opts);
    expect(signed.qr).to.equal(proof);
    expect(checkReceipt(signed).ok).to.equal(true);
    expect(signed.barcode).to.equal('S0000000061');
    expect(toReceipt(data(), opts).qr).to.equal('mallpos:acme:S0000000061');
  });

  it('prints no QR code on a receipt recorded offline, and says how to get a verifiable one', () => {
    const record: OfflineSaleRecord = {
      key: 't001:8c1f2a8e-0000-4000-8000-000000000001',
      offlineId: 't001-7',
      counter: 7,
      at: '2026-11-28T21:10:06.012Z',
      catalogVersion: 3,
      cashier: 'ana',
      currency: 'EUR',
      lines: [{ code: '4006381333931', name: 'Pen', qty: 1, unitPriceMinor: 450, totalMinor: 450 }],
      totalMinor: 450,
      cashTenderedMinor: 500,
      changeMinor: 50,
    };
    const r = toOfflineReceipt(record, { store: { name: 'ACME Market', address: [] }, terminalName: 'Till 1', cashierName: 'Ana' });
    expect(r.qr).to.equal(undefined);
    expect(r.footer).to.include('Verifiable after sync: ask for a reprint.');
    expect(checkReceipt(r).ok).to.equal(true);
  });
});
