import { add, assert } from '../core/index.ts';
import { dict, own, type Dict } from './store/dict.ts';

/**
 * Mall-wide lots in the mall's state. A lot's escrow is a hold on the high bidder's mall
 * wallet (`walletHeld`, which every wallet request counts against the balance), so held
 * units cannot be spent anywhere else; a higher bid moves the hold to its bidder in the
 * same event. At close the winner's held units leave the wallet and are counted as sold
 * by the mall (`soldUnits`), which the wallet check adds back when it compares the
 * wallets with the stores' `mall-wallet` postings.
 */
export interface MallLotSpec {
  lotId: string;
  title: string;
  token: string;
  reserveUnits: number;
  incrementUnits: number;
  opensAt: string;
  closesAt: string;
  snipeWindowSeconds: number;
  extendSeconds: number;
}

export interface MallLotBidder {
  card: string;
  vendor: string;
  units: number;
}

export interface MallLotRecord {
  spec: MallLotSpec;
  status: 'open' | 'closed' | 'cancelled';
  /** The close as moved on by late bids. */
  closesAt: string;
  high: (MallLotBidder & { seq: number }) | null;
  bids: number;
  /** The mall event that closed or cancelled the lot. */
  closedSeq: number | null;
  closedAt: string | null;
  /** A sold lot's sale (made by the mall, picked up at the winner's store). */
  saleId: string | null;
  cancelReason: string | null;
}

export interface MallLotsState {
  lots: Dict<MallLotRecord>;
  serial: number;
  saleSerial: number;
  /** Open lots: id -> close time (what the close timer looks at). */
  open: Dict<string>;
  /** Units taken from wallets by sold lots, per token. */
  soldUnits: Dict<number>;
  /** The operator's listing keys -> lot id (a retried listing is the same lot). */
  keys: Dict<{ bodyHash: string; lotId: string }>;
}

export interface MallLotOpenedData extends MallLotSpec {
  key: string;
  bodyHash: string;
}

export interface MallLotBidData {
  lotId: string;
  vendor: string;
  card: string;
  units: number;
  /** The bid this one beat, whose hold is released in the same event (null for the first bid). */
  previous: MallLotBidder | null;
  closesAt: string;
  key: string;
  bodyHash: string;
  answer: unknown;
}

export interface MallLotCancelledData {
  lotId: string;
  reason: string;
  /** The high bid, if any, whose hold is released. */
  released: MallLotBidder | null;
}

export interface MallLotClosedData {
  lotId: string;
  outcome: 'sold' | 'unsold';
  /** Sold: the winner, whose held units leave the wallet. */
  winner: MallLotBidder | null;
  /** Unsold with a bid below the reserve: the hold released. */
  released: MallLotBidder | null;
  saleId: string | null;
}

export type MallLotEvent =
  | { type: 'mall-lot.opened'; seq: number; at: string; data: MallLotOpenedData }
  | { type: 'mall-lot.bid'; seq: number; at: string; data: MallLotBidData }
  | { type: 'mall-lot.cancelled'; seq: number; at: string; data: MallLotCancelledData }
  | { type: 'mall-lot.closed'; seq: number; at: string; data: MallLotClosedData };

export function emptyMallLotsState(): MallLotsState {
  return { lots: dict(), serial: 0, saleSerial: 0, open: dict(), soldUnits: dict(), keys: dict() };
}

export function reviveMallLotsState(raw: MallLotsState | undefined): MallLotsState {
  if (raw === undefined) return emptyMallLotsState();
  return { ...raw, lots: dict(raw.lots), open: dict(raw.open), soldUnits: dict(raw.soldUnits), keys: dict(raw.keys) };
}

/** The mall's wallet maps the lots change (MallState.wallets and walletHeld). */
export interface WalletMaps {
  wallets: Dict<Dict<number>>;
  walletHeld: Dict<Dict<number>>;
  requestKeys: Dict<{ bodyHash: string; answer: unknown }>;
}

function cell(map: Dict<Dict<number>>, outer: string, inner: string, n: number): void {
  const m = own(map, outer) ?? (map[outer] = dict());
  const v = add(own(m, inner) ?? 0, n);
  assert(v >= 0, `wallet cell ${outer} ${inner} stays at or above zero`);
  if (v === 0) delete m[inner];
  else m[inner] = v;
  if (Object.keys(m).length === 0) delete map[outer];
}

function lotOf(s: MallLotsState, id: string, status: MallLotRecord['status'] = 'open'): MallLotRecord {
  const lot = own(s.lots, id);
  assert(lot !== undefined && lot.status === status, `mall lot ${id} is ${status}`);
  return lot;
}

/** Applies one mall-lot event (validated before it was journalled: a failure is an assertion). */
export function applyMallLotEvent(s: MallLotsState, w: WalletMaps, e: MallLotEvent): void {
  switch (e.type) {
    case 'mall-lot.opened': {
      const { key, bodyHash, ...spec } = e.data;
      assert(own(s.lots, spec.lotId) === undefined, `mall lot ${spec.lotId} listed once`);
      s.serial += 1;
      s.lots[spec.lotId] = { spec, status: 'open', closesAt: spec.closesAt, high: null, bids: 0, closedSeq: null, closedAt: null, saleId: null, cancelReason: null };
      s.open[spec.lotId] = spec.closesAt;
      s.keys[key] = { bodyHash, lotId: spec.lotId };
      break;
    }
    case 'mall-lot.bid': {
      const d = e.data;
      const lot = lotOf(s, d.lotId);
      const token = lot.spec.token;
      const prev = lot.high;
      assert((prev === null && d.previous === null) || (prev !== null && d.previous !== null && prev.card === d.previous.card && prev.units === d.previous.units), `mall lot ${d.lotId} bid names the high bid it beats`);
      if (prev !== null) cell(w.walletHeld, prev.card, token, -prev.units);
      const wallet = own(w.wallets, d.card);
      const held = own(w.walletHeld, d.card);
      assert((wallet === undefined ? 0 : (own(wallet, token) ?? 0)) - (held === undefined ? 0 : (own(held, token) ?? 0)) >= d.units, `mall lot ${d.lotId} bid is covered by the wallet of ${d.card}`);
      cell(w.walletHeld, d.card, token, d.units);
      lot.high = { card: d.card, vendor: d.vendor, units: d.units, seq: e.seq };
      lot.bids += 1;
      lot.closesAt = d.closesAt;
      s.open[d.lotId] = d.closesAt;
      w.requestKeys[`${d.vendor} ${d.key}`] = { bodyHash: d.bodyHash, answer: d.answer };
      break;
    }
    case 'mall-lot.cancelled': {
      const lot = lotOf(s, e.data.lotId);
      if (lot.high !== null) cell(w.walletHeld, lot.high.card, lot.spec.token, -lot.high.units);
      lot.status = 'cancelled';
      lot.cancelReason = e.data.reason;
      lot.closedSeq = e.seq;
      lot.closedAt = e.at;
      delete s.open[e.data.lotId];
      break;
    }
    case 'mall-lot.closed': {
      const d = e.data;
      const lot = lotOf(s, d.lotId);
      const token = lot.spec.token;
      if (lot.high !== null) cell(w.walletHeld, lot.high.card, token, -lot.high.units);
      if (d.outcome === 'sold') {
        assert(lot.high !== null && d.winner !== null && d.winner.card === lot.high.card && d.winner.units === lot.high.units && d.saleId !== null, `mall lot ${d.lotId} is sold to its high bid`);
        cell(w.wallets, d.winner.card, token, -d.winner.units);
        s.soldUnits[token] = add(own(s.soldUnits, token) ?? 0, d.winner.units);
        s.saleSerial += 1;
        lot.saleId = d.saleId;
      }
      lot.status = 'closed';
      lot.closedSeq = e.seq;
      lot.closedAt = e.at;
      delete s.open[d.lotId];
      break;
    }
  }
}
