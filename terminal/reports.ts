import { formatMinor, formatUnits, type PeriodTotals, type ShiftView, type XReport, type ZReport } from '../core/index.ts';
import { receiptLimits, type Receipt, type ReceiptSection } from '../hardware/printer/index.ts';

export interface ReportContext {
  store: { name: string; address: string[] };
  terminalName: string;
  cashierName: string;
  currency: string;
}

type Row = ReceiptSection['rows'][number];

/** Text from the store (names) cut to what one receipt field holds. */
function fit(text: string): string {
  return Array.from(text).slice(0, receiptLimits.textCharsMax).join('');
}

/** The rows a section may hold; what does not fit is summed up in one last row. */
function bounded(rows: Row[], what: string): Row[] {
  const max = receiptLimits.sectionRowsMax;
  if (rows.length <= max) return rows;
  return [...rows.slice(0, max - 1), { label: `${rows.length - max + 1} more ${what}`, amount: 'see the back office' }];
}

/** The figures of a period as printed sections: every amount becomes text here. */
export function totalsSections(t: PeriodTotals, currency: string): ReceiptSection[] {
  const money = (m: number) => formatMinor(m, currency);
  const sorted = <V>(o: Record<string, V>): [string, V][] => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [
    {
      title: 'Sales',
      rows: [
        { label: 'Sales', amount: String(t.salesCount) },
        { label: 'Refunds', amount: String(t.refundsCount) },
        { label: 'Voided lines', amount: String(t.voidsCount) },
        { label: 'No-sales', amount: String(t.noSalesCount) },
        { label: 'Gross', amount: money(t.grossMinor) },
        { label: 'Refunded', amount: money(t.refundsMinor) },
        { label: 'Net', amount: money(t.netMinor) },
      ],
    },
    {
      title: 'By tender',
      rows: bounded(sorted(t.byTender).map(([tender, v]) => ({ label: tender === 'cash' ? 'Cash' : fit(tender), amount: tender === 'cash' ? money(v) : formatUnits(v, tender) })), 'tenders'),
    },
    { title: 'Tokens taken', rows: bounded(sorted(t.byTokenType).map(([token, v]) => ({ label: fit(token), amount: formatUnits(v, token) })), 'token types') },
    {
      title: 'By cashier',
      rows: bounded(sorted(t.byCashier).map(([who, v]) => ({ label: fit(`${who} (${v.salesCount} sales)`), amount: money(v.netMinor) })), 'cashiers'),
    },
    {
      title: 'Cash drawer',
      rows: [
        { label: 'Paid in', amount: money(t.paidInMinor) },
        { label: 'Paid out', amount: money(t.paidOutMinor) },
        { label: 'Over (+) / short (-)', amount: money(t.overShortMinor) },
      ],
    },
  ].filter((s) => s.rows.length > 0);
}

function base(ctx: ReportContext, id: string, at: string, title: string, sections: ReceiptSection[], footer: string[]): Receipt {
  return {
    store: ctx.store,
    terminal: ctx.terminalName,
    cashier: ctx.cashierName,
    at,
    saleId: id,
    kind: 'report',
    title,
    lines: [],
    tenders: [],
    balances: [],
    sections,
    footer: footer.map(fit),
  };
}

/** An X report: the figures so far, printed on demand; it closes nothing. */
export function xReportReceipt(x: XReport, ctx: ReportContext): Receipt {
  const scope = x.scope === 'shift' ? 'this shift' : `day ${x.day}`;
  return base(ctx, `X ${x.day}`, x.at, `X REPORT, ${x.scope === 'shift' ? 'SHIFT' : 'DAY'}`, totalsSections(x.totals, ctx.currency), [
    `Figures for ${scope} since ${x.from.slice(0, 16).replace('T', ' ')}`,
    'Nothing is closed by an X report',
  ]);
}

/** A Z report: the day closed, with its number, grand total and the chain it belongs to. */
export function zReportReceipt(z: ZReport, ctx: ReportContext): Receipt {
  const sections = [
    ...totalsSections(z.totals, ctx.currency),
    {
      title: 'Closing',
      rows: [
        { label: 'Z number', amount: String(z.zNumber) },
        { label: 'Business day', amount: z.day },
        { label: 'Journal from', amount: String(z.fromSeq) },
        { label: 'Journal to', amount: String(z.toSeq) },
        { label: 'Grand total', amount: formatMinor(z.grandTotalMinor, ctx.currency) },
      ],
    },
  ].slice(-receiptLimits.sectionsMax);
  return base(ctx, `Z ${z.zNumber}`, z.closedAt, `Z REPORT ${z.zNumber}`, sections, [
    `Previous Z: ${z.prevHash.slice(0, 16)}`,
    `Signed by the store: ${z.signature.slice(-16)}`,
  ]);
}

/** The slip printed when a shift closes: the blind count against what the store expected. */
export function shiftCloseReceipt(shift: ShiftView, ctx: ReportContext): Receipt {
  const money = (m: number | null) => (m === null ? '-' : formatMinor(m, ctx.currency));
  return base(ctx, shift.shiftId, shift.closedAt ?? shift.openedAt, 'SHIFT CLOSED', [
    {
      title: 'Cash',
      rows: [
        { label: 'Opening float', amount: money(shift.openingFloatMinor) },
        { label: 'Cash sales', amount: money(shift.cashSalesMinor) },
        { label: 'Change given', amount: money(shift.changeGivenMinor) },
        { label: 'Cash refunds', amount: money(shift.cashRefundsMinor) },
        { label: 'Paid in', amount: money(shift.paidInMinor) },
        { label: 'Paid out', amount: money(shift.paidOutMinor) },
      ],
    },
    {
      title: 'Count',
      rows: [
        { label: 'Expected', amount: money(shift.expectedMinor) },
        { label: 'Counted', amount: money(shift.countedMinor) },
        { label: 'Over (+) / short (-)', amount: money(shift.overShortMinor) },
      ],
    },
  ], [`Opened ${shift.openedAt.slice(0, 16).replace('T', ' ')} by ${shift.cashierName}`, ...(shift.forcedBy === null ? [] : [`Closed by supervisor ${shift.forcedBy}`])]);
}
