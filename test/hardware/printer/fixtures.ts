import type { Receipt } from '../../../hardware/printer/receipt.ts';

/** A sale paid part in tokens, part in cash, with European names that need a code page. */
export function sampleReceipt(overrides: Partial<Receipt> = {}): Receipt {
  return {
    store: { name: 'Bäckerei Müller', address: ['Hauptstraße 5', '10115 Berlin'] },
    terminal: 'T-07',
    cashier: 'Zoë',
    at: '2025-03-01T14:05:09+01:00',
    saleId: 'S-2025-000123',
    kind: 'sale',
    lines: [
      { name: 'Müsli', qty: 2, price: '120 ACME', total: '240 ACME' },
      { name: 'Crème fraîche', qty: 1, price: '€3.50', total: '€3.50' },
      { name: 'Smørrebrød', qty: 3, price: '40 ACME', total: '120 ACME' },
      {
        name: 'Extra long organic wholegrain sourdough loaf with sunflower seeds and rye, sliced by hand',
        qty: 1,
        price: '95 ACME',
        total: '95 ACME',
      },
    ],
    tenders: [
      { label: 'ACME tokens', amount: '455 ACME' },
      { label: 'Cash', amount: '€3.50' },
    ],
    cash: { due: '€3.50', tendered: '€5.00', change: '€1.50' },
    balances: [
      { label: 'ACME tokens', amount: '880 ACME' },
      { label: 'Mall gift tokens', amount: '12 MALL' },
    ],
    footer: ['Danke für Ihren Einkauf!', 'Returns within 14 days with this receipt'],
    qr: 'mallpos:sale:S-2025-000123',
    barcode: 'R-S2025000123',
    ...overrides,
  };
}
