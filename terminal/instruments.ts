import { fail, formatMinor, formatUnits, type InstrumentPaid, type InstrumentSaleAck, type InstrumentView } from '../core/index.ts';
import type { PrintQueue, Receipt } from '../hardware/printer/index.ts';
import type { CartInstrument } from './cart.ts';
import type { StoreLink } from './store-link.ts';

/**
 * Gift certificates and coupons at the till. A scanned instrument (its QR, read by the
 * serial scanner in as many chunks as it comes, or typed into the screen by a keyboard
 * wedge) is sent to the store server, which verifies it against the mall's key directory
 * and says what remains; a typed short code is resolved by the store the same way. During
 * a sale the instrument pays part of it; without a sale the inquiry is only shown. The
 * signed form is a bearer credential: it is kept here, for the sale's request, and never
 * put on the screen or a receipt.
 */

/** The longest scan the till reads: an instrument's compact form (core/instruments.ts INSTRUMENT_COMPACT_CHARS_MAX). */
export const INSTRUMENT_SCAN_CHARS_MAX = 1024;
/** The serial scanner's line bound: the longest scan with its AIM identifier and some margin. */
export const SCANNER_LINE_BYTES_MAX = INSTRUMENT_SCAN_CHARS_MAX + 64;

const COMPACT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const SHORT_CODE = /^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*-[A-Za-z0-9]{6,20}-[0-9]{2}$/;

export type InstrumentScan = { kind: 'compact'; compact: string } | { kind: 'code'; code: string };

/**
 * Whether a scan is an instrument: a compact JWS (three base64url parts, the header
 * starting as every JSON object does) or a short code ISSUER-SERIAL-NN. Product codes,
 * cards and receipts have neither dots nor dashes, so nothing else is taken for one.
 */
export function instrumentScan(raw: string): InstrumentScan | null {
  const code = raw.trim();
  if (code.length > INSTRUMENT_SCAN_CHARS_MAX) return null;
  if (COMPACT.test(code)) return { kind: 'compact', compact: code };
  if (code.length <= 64 && SHORT_CODE.test(code)) return { kind: 'code', code };
  return null;
}

/** An instrument as the screen shows it: every amount in words, no signed form. */
export interface InstrumentShown {
  code: string;
  kind: 'gift' | 'coupon';
  title: string;
  token: string;
  faceUnits: number;
  remainingUnits: number;
  remaining: string;
  face: string;
  expires: string;
  /** Where the remaining value comes from, in words. */
  source: string;
  state: InstrumentView['state'];
  offlineLimit: string | null;
  inCart: boolean;
}

export interface InstrumentsView {
  shown: InstrumentShown | null;
}

/** The short text of what remains on each instrument after a sale, for the cashier's message. */
export function remainingText(paid: readonly InstrumentPaid[]): string {
  return paid.map((p) => (p.kind === 'coupon' ? `coupon ${p.code} used` : `${formatUnits(p.remainingAfter, p.token)} remain on ${p.code}`)).join('; ');
}

export class TillInstruments {
  /** Short code -> signed form, for the instruments of the cart and the one shown. */
  private readonly forms = new Map<string, string>();
  private shown: { view: InstrumentView } | null = null;

  constructor(private readonly host: { link: StoreLink; currency: () => string; inCart: (code: string) => boolean }) {}

  view(): InstrumentsView {
    const s = this.shown;
    if (s === null) return { shown: null };
    const v = s.view;
    const money = (m: number) => formatMinor(m, v.currency);
    return {
      shown: {
        code: v.code,
        kind: v.kind,
        title: v.kind === 'gift' ? 'Gift certificate' : 'Coupon',
        token: v.token,
        faceUnits: v.faceUnits,
        remainingUnits: v.remainingUnits,
        remaining: `${formatUnits(v.remainingUnits, v.token)} (${money(v.remainingMinor)})`,
        face: formatUnits(v.faceUnits, v.token),
        expires: v.expiresAt.slice(0, 10),
        source: v.source === 'mall' ? 'as the mall has it now' : v.source === 'store' ? 'as this store saw it last (the mall cannot be reached)' : 'its face value (the mall cannot be reached)',
        state: v.state,
        offlineLimit: v.offlineMaxUnits === null ? null : `the mall cannot be reached: at most ${formatUnits(v.offlineMaxUnits, v.token)} from it in one sale`,
        inCart: this.host.inCart(v.code),
      },
    };
  }

  /** Asks the store to check a scanned instrument; it is then shown, and returned for the cart. */
  async inquire(scan: InstrumentScan): Promise<InstrumentView> {
    const view = await this.host.link.request<InstrumentView>('instrument:inquire', scan.kind === 'compact' ? { instrument: scan.compact } : { code: scan.code });
    this.forms.set(view.code, view.instrument);
    this.shown = { view };
    return view;
  }

  /** The cart entry of the instrument shown, refused when nothing remains on it. */
  cartEntry(code: string): CartInstrument {
    const v = this.shown?.view;
    if (v === undefined || v.code !== code) fail('POS_ERR_COMMAND', `scan ${code} again: it is not the one shown`);
    if (v.remainingUnits <= 0 || v.state === 'voided' || v.state === 'spent') {
      fail('VND_ERR_INSTRUMENT_SPENT', v.kind === 'coupon' ? `coupon ${v.code} was already used` : `nothing remains on gift certificate ${v.code}`, { code: v.code });
    }
    return { code: v.code, kind: v.kind, token: v.token, remainingUnits: v.remainingUnits };
  }

  close(): void {
    this.shown = null;
  }

  /** The sale's instrument tenders, in the cart's order, with their signed forms. */
  tenders(cart: readonly CartInstrument[]): { instrument: string }[] {
    return cart.map((i) => ({ instrument: this.forms.get(i.code) ?? fail('POS_ERR_COMMAND', `scan ${i.code} again`) }));
  }

  /** Forgets the signed forms no cart or screen needs any more. */
  forget(keep: readonly CartInstrument[]): void {
    for (const code of [...this.forms.keys()]) if (!keep.some((i) => i.code === code) && this.shown?.view.code !== code) this.forms.delete(code);
  }

  /** The signed form of an instrument scanned and shown or in the cart. */
  formOf(code: string): string {
    return this.forms.get(code) ?? fail('POS_ERR_COMMAND', `scan ${code} again`);
  }

  /**
   * Sells a gift certificate: one the store signs for its own tokens (token, units), or
   * one from the mall's stock (its signed form); the till prints it with its QR code.
   */
  async sell(sendKeyed: <T>(event: 'instrument:sell', body: Record<string, unknown>) => Promise<T>, req: Record<string, unknown>): Promise<InstrumentSaleAck> {
    return sendKeyed<InstrumentSaleAck>('instrument:sell', req);
  }
}

/** The printed gift certificate: its QR code carries the signed form, the short code is printed under it. */
export function certificateSlip(ack: InstrumentSaleAck, ctx: { store: { name: string; address: string[] }; terminal: string; cashier: string }, printQueue: PrintQueue): Promise<{ ok: boolean; message?: string }> {
  const money = (m: number) => formatMinor(m, ack.currency);
  const p = ack.payment;
  const receipt: Receipt = {
    store: ctx.store,
    terminal: ctx.terminal,
    cashier: ctx.cashier,
    at: ack.at,
    saleId: ack.code,
    idLabel: 'Gift certificate',
    kind: 'sale',
    title: 'GIFT CERTIFICATE',
    lines: [{ name: `Gift certificate ${ack.code}`, qty: 1, price: money(ack.priceMinor), total: money(ack.priceMinor) }],
    tenders: [{ label: p.method === 'cash' ? 'Cash' : 'Card', amount: money(ack.priceMinor) }],
    ...(p.method === 'cash' ? { cash: { due: money(ack.priceMinor), tendered: money(p.tenderedMinor), change: money(p.changeMinor) } } : {}),
    balances: [],
    footer: [`Worth ${formatUnits(ack.units, ack.token)} (${money(ack.priceMinor)})`, `Code ${ack.code}`, `Valid until ${ack.expiresAt.slice(0, 10)}`, 'Redeemable in part at every accepting store.'],
    qr: ack.instrument,
  };
  return printQueue.enqueue(receipt);
}
