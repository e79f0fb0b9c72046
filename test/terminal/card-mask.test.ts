import { expect } from 'chai';
import fc from 'fast-check';
import { maskCard, maskCardsInText, type ReceiptData, type SaleResult } from '../../core/index.ts';
import { layoutReceipt, type Receipt } from '../../hardware/printer/receipt.ts';
import { toReceipt } from '../../terminal/receipts.ts';

const ANNA_CARD = 'C0000000018';

function sale(): SaleResult {
  return {
    saleId: 'S0000000061',
    seq: 61,
    at: '2026-11-28T21:10:06.012Z',
    terminal: 't001',
    cashier: 'ana',
    customer: { id: 'cust-000001', name: 'Anna Berger', card: ANNA_CARD },
    currency: 'EUR',
    lines: [{ lineNo: 1, gtin: '4006381333931', name: 'Stabilo pen, 4 colours', qty: 1, unitPriceMinor: 450, totalMinor: 450, unitTokenPrices: { ACME: 90 } }],
    allocations: [{ lineNo: 1, token: 'ACME', units: 90, coversMinor: 450 }],
    debits: { ACME: 90 },
    totalMinor: 450,
    cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
    balancesAfter: { ACME: 110 },
    refunded: false,
  };
}

/** Card numbers are bearer credentials: people see only the prefix and the last digits. */
describe('card numbers masked for people', () => {
  it('keeps the prefix, the last 3 digits and the length', () => {
    expect(maskCard(ANNA_CARD)).to.equal('C•••••••018');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 8, maxLength: 24 }), (digits) => {
        const card = `C${digits.join('')}`;
        const masked = maskCard(card);
        expect(masked).to.have.length(card.length);
        expect(masked).to.equal(`C${'•'.repeat(card.length - 4)}${card.slice(-3)}`);
        expect(maskCardsInText(`card ${card} has a wrong check digit`)).to.equal(`card ${masked} has a wrong check digit`);
      }),
    );
  });

  it('masks a card inside text, and leaves sale ids, product codes and masked cards alone', () => {
    expect(maskCardsInText('sale S0000000061, pen 4006381333931, Anna (C0000000018).')).to.equal('sale S0000000061, pen 4006381333931, Anna (C•••••••018).');
    expect(maskCardsInText('C•••••••018')).to.equal('C•••••••018');
    expect(maskCard('C12')).to.equal('C••');
  });

  it('prints a receipt whose customer line shows the masked card', () => {
    const data: ReceiptData = { store: { vendorId: 'acme', name: 'ACME Market', address: [] }, sale: sale(), refund: null };
    const r = toReceipt(data, { kind: 'sale', terminalName: 'Till 1', cashierName: 'Ana', tokenNames: {} });
    expect(r.footer).to.include('Customer: Anna Berger (C•••••••018)');
    expect(JSON.stringify(r)).to.not.include(ANNA_CARD);
  });

  it('never lays out a whole card number, whatever field a caller puts it in', () => {
    const r: Receipt = {
      store: { name: `Store ${ANNA_CARD}`, address: [ANNA_CARD] },
      terminal: ANNA_CARD,
      cashier: 'Ana',
      at: '2026-11-28T21:10:06+01:00',
      saleId: 'S0000000061',
      kind: 'sale',
      lines: [{ name: `Gift card ${ANNA_CARD}`, qty: 1, price: '€1.00', total: '€1.00' }],
      tenders: [{ label: ANNA_CARD, amount: '1 ACME' }],
      balances: [],
      footer: [`Customer: Anna Berger (${ANNA_CARD})`],
      qr: 'mallpos:acme:S0000000061',
      barcode: 'S0000000061',
    };
    for (const columns of [32, 42, 48] as const) {
      const text = layoutReceipt(r, columns).map((l) => l.text).join('\n');
      expect(text).to.not.include(ANNA_CARD);
      expect(text).to.include('C•••••••018');
    }
  });
});
