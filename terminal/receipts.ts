import { formatMinor, formatUnits, maskCard, type OfflineSaleRecord, type ReceiptData, type SaleResult } from '../core/index.ts';
import type { Receipt, ReceiptSection } from '../hardware/printer/index.ts';

/**
 * Turns a committed sale (and its refund, if any) into the display-ready receipt the
 * printer lays out: every amount becomes text here, so the printer never does money.
 */
export function toReceipt(data: ReceiptData, opts: { kind: Receipt['kind']; terminalName: string; cashierName: string; tokenNames: Record<string, string> }): Receipt {
  const sale: SaleResult = data.sale;
  const money = (m: number) => formatMinor(m, sale.currency);
  const tokenLabel = (t: string) => `${opts.tokenNames[t] ?? t}s`;
  const byLine = new Map(sale.allocations.map((a) => [a.lineNo, a]));
  const lines = sale.lines.map((l) => {
    const a = byLine.get(l.lineNo);
    const unitTokens = a === undefined ? undefined : l.unitTokenPrices[a.token];
    return {
      name: l.name,
      qty: l.qty,
      price: a !== undefined && unitTokens !== undefined ? formatUnits(unitTokens, a.token) : money(l.unitPriceMinor),
      total: a !== undefined ? (a.coversMinor === l.totalMinor ? formatUnits(a.units, a.token) : `${formatUnits(a.units, a.token)} + ${money(l.totalMinor - a.coversMinor)}`) : money(l.totalMinor),
    };
  });
  const paidBy = sale.instruments ?? [];
  // Tokens a gift certificate or coupon paid are named for it, not for the customer's card.
  const tenderLabel = (token: string) => {
    const by = paidBy.find((p) => p.token === token);
    return by === undefined ? tokenLabel(token) : by.kind === 'gift' ? 'Gift certificate' : 'Coupon';
  };
  const tenders = Object.entries(sale.debits).map(([token, units]) => ({ label: tenderLabel(token), amount: formatUnits(units, token) }));
  if (sale.cash.dueMinor > 0) tenders.push({ label: 'Cash', amount: money(sale.cash.dueMinor) });
  const balancesSource = data.refund?.balancesAfter ?? sale.balancesAfter ?? {};
  const footer: string[] = [];
  if (data.refund !== null) footer.push(`Refund of sale ${sale.saleId} (${sale.at.slice(0, 10)})`);
  // The card number is a bearer credential: the receipt shows only its last digits.
  if (sale.customer !== null) footer.push(`Customer: ${sale.customer.name} (${maskCard(sale.customer.card)})`);
  if (data.refund !== null) {
    footer.push(`REFUNDED as ${data.refund.refundId}`);
    for (const [token, units] of Object.entries(data.refund.credited)) footer.push(`Credited back: ${formatUnits(units, token)}`);
    if (data.refund.cashRefundMinor > 0) footer.push(`Cash refunded: ${money(data.refund.cashRefundMinor)}`);
  }
  footer.push(`Total value ${money(sale.totalMinor)}`, 'Thank you for shopping with tokens!');
  // Tokens taken from the mall wallet, and loyalty tokens this sale earned (given back with a refund).
  const sections: ReceiptSection[] = [];
  const fromWallet = sale.wallet ?? [];
  if (fromWallet.length > 0) sections.push({ title: 'From the mall wallet', rows: fromWallet.map((w) => ({ label: tokenLabel(w.token), amount: formatUnits(w.units, w.token) })) });
  // Each gift certificate or coupon: what it paid and what remains on it (a coupon is used once).
  for (const p of paidBy) {
    sections.push({
      title: `${p.kind === 'gift' ? 'Gift certificate' : 'Coupon'} ${p.code}`,
      rows: [
        { label: 'Paid', amount: formatUnits(p.units, p.token) },
        p.kind === 'gift' ? { label: 'Remaining', amount: formatUnits(p.remainingAfter, p.token) } : { label: 'Remaining', amount: 'used' },
        ...(p.offline ? [{ label: 'Taken offline', amount: 'yes' }] : []),
      ],
    });
  }
  const earned = Object.entries(sale.earned ?? {}).filter(([, units]) => units > 0);
  if (earned.length > 0) {
    sections.push({
      title: data.refund === null ? 'Tokens earned' : 'Tokens earned, taken back',
      rows: earned.map(([token, units]) => ({ label: tokenLabel(token), amount: formatUnits(units, token) })),
    });
  }
  return {
    store: { name: data.store.name, address: data.store.address },
    terminal: opts.terminalName,
    cashier: opts.cashierName,
    at: sale.at,
    saleId: data.refund === null ? sale.saleId : data.refund.refundId,
    kind: opts.kind,
    lines,
    tenders,
    ...(sale.cash.dueMinor > 0 || sale.cash.tenderedMinor > 0
      ? { cash: { due: money(sale.cash.dueMinor), tendered: money(sale.cash.tenderedMinor), change: money(sale.cash.changeMinor) } }
      : {}),
    ...(sections.length > 0 ? { sections } : {}),
    balances: Object.entries(balancesSource).map(([token, units]) => ({ label: tokenLabel(token), amount: formatUnits(units, token) })),
    footer,
    // The store's signed proof when it sent one (docs/PROTOCOL.md, "Verifiable receipts"); else the sale's name.
    qr: data.proof ?? `mallpos:${data.store.vendorId}:${sale.saleId}`,
    barcode: sale.saleId,
  };
}

/**
 * The receipt of a cash sale recorded while the store server was unreachable: marked
 * "RECORDED OFFLINE" with the till's own number for it, since the store has not
 * journalled it yet. It carries no sale barcode and no QR code: the store's sale id is only
 * known once the sale is forwarded, so a return needs the store to look it up by the
 * offline number, and only a reprint after that carries the store's signed proof.
 */
export function toOfflineReceipt(
  record: OfflineSaleRecord,
  opts: { store: { name: string; address: string[] }; terminalName: string; cashierName: string },
): Receipt {
  const money = (m: number) => formatMinor(m, record.currency);
  return {
    store: opts.store,
    terminal: opts.terminalName,
    cashier: opts.cashierName,
    at: record.at,
    saleId: record.offlineId,
    kind: 'sale',
    title: '*** RECORDED OFFLINE ***',
    lines: record.lines.map((l) => ({ name: l.name, qty: l.qty, price: money(l.unitPriceMinor), total: money(l.totalMinor) })),
    tenders: [{ label: 'Cash', amount: money(record.totalMinor) }],
    cash: { due: money(record.totalMinor), tendered: money(record.cashTenderedMinor), change: money(record.changeMinor) },
    balances: [],
    // No QR: only the store server signs a receipt's proof, and it has not seen this sale.
    // Once the sale is forwarded, a reprint carries the signed proof.
    footer: [
      `RECORDED OFFLINE as ${record.offlineId}`,
      'The store server was unreachable:',
      'this sale is sent to it when it is back.',
      'Verifiable after sync: ask for a reprint.',
      `Total value ${money(record.totalMinor)}`,
    ],
  };
}
