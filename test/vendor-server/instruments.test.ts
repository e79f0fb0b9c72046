import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import { generateKeyPair } from 'jose';
import type { InstrumentSaleAck, InstrumentView, InstrumentVoidAck, PricedCart, SaleAck } from '../../core/index.ts';
import { signInstrument, verifyInstrument } from '../../platform/instruments.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { pairTill } from '../helpers/xchg-store.ts';
import { call, expectOk, startTestVendor, tempDir, type TerminalClient } from '../helpers/vendor.ts';
import { linkInstrumentStore, startInstrumentMall, type InstrumentMall } from './instruments-rig.ts';

const PEN = '4006381333931'; // 450, 45 MALL
const CAKE = '9001001000090'; // 1290, 129 MALL
const MUESLI = '9001001000014'; // 399, 40 MALL, 40 SUNNY
const JUICE = '9001001000021'; // 249, 25 MALL, 25 SUNNY

/**
 * Gift certificates and coupons at the store, against a mall double that serves the key
 * directory and the reservation endpoints: inquiry, payment in part (online, reserved;
 * offline, within the policy), the durable spent set, store certificates sold at the till,
 * and every forged, altered, expired or unknown-key instrument refused with nothing changed.
 */
describe('vendor-server: gift certificates and coupons', function () {
  this.timeout(120_000);
  let mall: InstrumentMall;
  let server: RunningVendorServer;
  let till: { terminalId: string; socket: TerminalClient };
  let till2: { terminalId: string; socket: TerminalClient };
  let cleanup: () => Promise<void>;
  const key = (t = till) => `${t.terminalId}:${randomUUID()}`;
  const picture = () => JSON.stringify({ seq: server.ledger.state.seq, balances: server.ledger.state.balances, instruments: server.ledger.state.instruments });
  const sale = (body: Record<string, unknown>, t = till) => call<SaleAck>(t.socket, 'sale:commit', { key: key(t), card: null, tenders: [], cashTenderedMinor: 0, ...body });
  const refused = async (event: 'sale:commit' | 'instrument:inquire' | 'instrument:sell' | 'instrument:void', body: Record<string, unknown>, code: string) => {
    const before = picture();
    const ack = await call(till.socket, event, event === 'sale:commit' ? { key: key(), card: null, tenders: [], cashTenderedMinor: 0, ...body } : body);
    expect(ack.ok, JSON.stringify(ack)).to.equal(false);
    if (!ack.ok) expect(ack.error.code, ack.error.message).to.equal(code);
    expect(picture(), 'nothing journalled, no balance or instrument changed').to.equal(before);
    return ack;
  };

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-instruments-'));
    mall = await startInstrumentMall(join(root, 'mall'));
    const vendorDir = join(root, 'vendor');
    const init = await linkInstrumentStore(vendorDir, mall);
    server = await startTestVendor(vendorDir, { syncOverrides: { backoffMaxMs: 1_000 } });
    // The mall goes down and comes back between these tests: each asks it afresh.
    server.instruments.mallRetryAfterMs = 0;
    const a = await pairTill(server.url, init.operatorToken, server.caPem, 'Till 1');
    const b = await pairTill(server.url, init.operatorToken, server.caPem, 'Till 2');
    till = a;
    till2 = b;
    for (const t of [a, b]) expectOk(await call(t.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  });
  after(async () => {
    till?.socket.disconnect();
    till2?.socket.disconnect();
    await server?.close();
    await mall?.close();
    await cleanup();
  });
  afterEach(() => {
    mall.down = false;
  });

  it('a balance inquiry verifies the certificate offline and shows what the mall says remains', async () => {
    const { code, compact } = await mall.issue('gift', 500);
    (mall.instruments.get(code) as { remainingUnits: number }).remainingUnits = 320;
    const view = expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: compact }));
    expect(view).to.deep.include({ code, kind: 'gift', token: 'MALL', faceUnits: 500, remainingUnits: 320, remainingMinor: 3_200, source: 'mall', state: 'live', offlineMaxUnits: null });
    // The short code alone is resolved through the mall's signed copy, and that is verified.
    const byCode = expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { code: code.toLowerCase() }));
    expect(byCode.remainingUnits).to.equal(320);
    expect(byCode.instrument).to.equal(compact);
    // The mall out of reach: the store's own record (here: none, so the face value) and the offline limit.
    mall.down = true;
    const offline = expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: compact }));
    expect(offline).to.deep.include({ remainingUnits: 500, source: 'face', offlineMaxUnits: 500 });
  });

  it('attack: forged, altered, unknown-key, expired and malformed instruments are refused, nothing changes', async () => {
    const { compact } = await mall.issue('gift', 1_000);
    const [h, p, s] = compact.split('.') as [string, string, string];
    // Altered: the payload says 9000 units, the signature covers 1000.
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    const altered = `${h}.${Buffer.from(JSON.stringify({ ...payload, u: 9_000 })).toString('base64url')}.${s}`;
    await refused('instrument:inquire', { instrument: altered }, 'CORE_ERR_INSTRUMENT_SIGNATURE');
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: altered }] }, 'CORE_ERR_INSTRUMENT_SIGNATURE');
    // Forged: a signature of another key under the mall's key id.
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await signInstrument('gift', { i: 'mall', s: 'FORGED0001', t: 'MALL', u: 5_000, a: Math.floor(Date.now() / 1000), x: Math.floor(Date.now() / 1000) + 86_400 }, { kid: mall.mallInstrumentKey.kid, privateKey });
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: forged }] }, 'CORE_ERR_INSTRUMENT_SIGNATURE');
    // Unknown key: signed by a key the directory does not list.
    const unknown = await signInstrument('gift', { i: 'mall', s: 'UNKNOWN001', t: 'MALL', u: 5_000, a: Math.floor(Date.now() / 1000), x: Math.floor(Date.now() / 1000) + 86_400 }, { kid: 'x'.repeat(43), privateKey });
    await refused('instrument:inquire', { instrument: unknown }, 'CORE_ERR_INSTRUMENT_KEY_UNKNOWN');
    // Expired.
    const expired = await mall.issue('gift', 100, { issuedAgoS: 7_200, expiresInS: 3_600 });
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: expired.compact }] }, 'CORE_ERR_INSTRUMENT_EXPIRED');
    // Not the key's to sign: Sunny's coupon key signing a mall gift certificate.
    const wrongIssuer = await signInstrument('gift', { i: 'mall', s: 'WRONGKEY01', t: 'MALL', u: 5_000, a: Math.floor(Date.now() / 1000), x: Math.floor(Date.now() / 1000) + 86_400 }, mall.sunnyKey);
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: wrongIssuer }] }, 'CORE_ERR_INSTRUMENT_ISSUER');
    await refused('instrument:inquire', { instrument: 'not.a.certificate' }, 'CORE_ERR_INSTRUMENT_MALFORMED');
    await refused('instrument:inquire', { code: 'MALL-G7K2M9Q4XB-25' }, 'CORE_ERR_INSTRUMENT_CODE');
    expect(mall.reserveCalls, 'nothing refused here reached the mall').to.equal(0);
  });

  it('pays part of a sale with a gift certificate: reserved at the mall first, the rest in cash, the remaining value in the answer', async () => {
    const { code, compact } = await mall.issue('gift', 100);
    const priced = expectOk(await call<PricedCart>(till.socket, 'cart:price', { lines: [{ code: CAKE, qty: 1 }], instruments: [{ instrument: compact }] }));
    expect(priced.debits).to.deep.equal({ MALL: 100 });
    const body = { key: key(), card: null, tenders: [], cashTenderedMinor: 300, lines: [{ code: CAKE, qty: 1 }], instruments: [{ instrument: compact }] };
    const ack = expectOk(await call<SaleAck>(till.socket, 'sale:commit', body));
    expect(ack.debits).to.deep.equal({ MALL: 100 });
    expect(ack.instruments).to.deep.equal([{ code, kind: 'gift', token: 'MALL', units: 100, remainingAfter: 0, offline: false }]);
    // 100 of 129 MALL cover 1000 of 1290: 290 in cash, 10 change.
    expect(ack.cash).to.deep.equal({ dueMinor: 290, tenderedMinor: 300, changeMinor: 10 });
    const event = await server.ledger.readEvent(ack.seq);
    if (event.type !== 'sale') throw new Error('not a sale');
    expect(event.postings).to.deep.equal([
      { account: 'instruments', token: 'MALL', units: -100 },
      { account: 'redeemed', token: 'MALL', units: 100 },
    ]);
    expect(event.data.instruments?.[0]?.reservation).to.match(/^ir-\d+$/);
    expect(server.ledger.state.instruments[code]).to.deep.include({ redeemedUnits: 100, remainingUnits: 0 });
    // The retry of a lost answer: the same sale, no second reservation.
    const calls = mall.reserveCalls;
    expect(expectOk(await call<SaleAck>(till.socket, 'sale:commit', body)).seq).to.equal(ack.seq);
    expect(mall.reserveCalls).to.equal(calls);
    // Spent: refused from the store's own record, without asking the mall.
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact }] }, 'VND_ERR_INSTRUMENT_SPENT');
    expect(mall.reserveCalls).to.equal(calls);
  });

  it('redeems a certificate in part over two sales, the remaining value carried from one to the next', async () => {
    const { code, compact } = await mall.issue('gift', 200);
    const first = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact }] }));
    expect(first.instruments?.[0]).to.deep.include({ units: 45, remainingAfter: 155 });
    const view = expectOk(await call<InstrumentView>(till2.socket, 'instrument:inquire', { instrument: compact }));
    expect(view.remainingUnits).to.equal(155);
    const second = expectOk(await sale({ lines: [{ code: CAKE, qty: 1 }, { code: PEN, qty: 1 }], instruments: [{ instrument: compact, units: 155 }], cashTenderedMinor: 10_000 }, till2));
    expect(second.instruments?.[0]).to.deep.include({ code, units: 155, remainingAfter: 0 });
  });

  it('a coupon pays only for its manufacturer\'s listed products, and only once', async () => {
    const coupon = await mall.issue('coupon', 30);
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: coupon.compact }], cashTenderedMinor: 1_000 }, 'CORE_ERR_PRODUCT_NOT_ELIGIBLE');
    const ack = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }, { code: JUICE, qty: 1 }], instruments: [{ instrument: coupon.compact }], cashTenderedMinor: 1_000 }));
    // 25 of its 30 SUNNY pay the juice; a coupon is used once, so nothing remains.
    expect(ack.instruments?.[0]).to.deep.include({ kind: 'coupon', units: 25, remainingAfter: 0 });
    await refused('sale:commit', { lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }], cashTenderedMinor: 1_000 }, 'VND_ERR_INSTRUMENT_SPENT');
  });

  it('offline: accepted within the mall\'s policy, refused beyond it with the reason', async () => {
    mall.down = true;
    const { code, compact } = await mall.issue('gift', 2_000);
    // 45 MALL is 4.50 at face value: within the 50.00 one instrument may give offline.
    const ack = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact }] }));
    expect(ack.instruments).to.deep.equal([{ code, kind: 'gift', token: 'MALL', units: 45, remainingAfter: 1_955, offline: true }]);
    const event = await server.ledger.readEvent(ack.seq);
    if (event.type !== 'sale') throw new Error('not a sale');
    expect(event.data.instruments?.[0]?.reservation).to.equal(null);
    // Asked beyond the per-instrument limit: 600 MALL is 60.00.
    const cakes = [{ code: CAKE, qty: 5 }];
    await refused('sale:commit', { lines: cakes, instruments: [{ instrument: compact, units: 600 }], cashTenderedMinor: 10_000 }, 'CORE_ERR_INSTRUMENT_OFFLINE_LIMIT');
    // Without units the sale takes what the limit allows, the rest in cash.
    const capped = expectOk(await sale({ lines: cakes, instruments: [{ instrument: compact }], cashTenderedMinor: 10_000 }));
    expect(capped.instruments?.[0]).to.deep.include({ units: 500, remainingAfter: 1_455, offline: true });
    expect(server.ledger.state.instrumentsOfflineDay[new Date().toISOString().slice(0, 10)]).to.be.at.least(5_450);
  });

  it('offline: two tills spending one coupon at once, only one is accepted (the spent set is checked right before the journal)', async () => {
    mall.down = true;
    const coupon = await mall.issue('coupon', 40);
    const before = server.ledger.state.seq;
    const [a, b] = await Promise.all([
      sale({ lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }] }, till),
      sale({ lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }] }, till2),
    ]);
    const ok = [a, b].filter((x) => x.ok);
    const no = [a, b].filter((x) => !x.ok);
    expect(ok, JSON.stringify([a, b])).to.have.length(1);
    expect(no).to.have.length(1);
    if (!no[0]?.ok) expect(no[0]?.error.code).to.equal('VND_ERR_INSTRUMENT_SPENT');
    expect(server.ledger.state.seq).to.equal(before + 1);
  });

  it('offline: the day\'s limit for all instruments together', async () => {
    mall.down = true;
    const day = new Date().toISOString().slice(0, 10);
    const taken = server.ledger.state.instrumentsOfflineDay[day] ?? 0;
    // Near the 500.00 a day: each certificate may give 50.00.
    const left = 50_000 - taken;
    const { compact } = await mall.issue('gift', 5_000);
    let n = 0;
    while (50_000 - (server.ledger.state.instrumentsOfflineDay[day] ?? 0) >= 5_000 && n < 20) {
      const c = await mall.issue('gift', 500);
      expectOk(await sale({ lines: [{ code: CAKE, qty: 4 }], instruments: [{ instrument: c.compact }], cashTenderedMinor: 10_000 }));
      n += 1;
    }
    expect(n).to.be.at.most(Math.ceil(left / 5_000));
    await refused('sale:commit', { lines: [{ code: CAKE, qty: 4 }], instruments: [{ instrument: compact, units: 500 }], cashTenderedMinor: 10_000 }, 'CORE_ERR_INSTRUMENT_OFFLINE_LIMIT');
  });

  it('sells a gift certificate the store signs for its own tokens; any store verifies it and it pays', async () => {
    const floatBefore = server.ledger.state.balances['float']?.['ACME'] ?? 0;
    const body = { key: key(), token: 'ACME', units: 400, payment: { method: 'cash', tenderedMinor: 2_500 } };
    const sold = expectOk(await call<InstrumentSaleAck>(till.socket, 'instrument:sell', body));
    expect(sold).to.deep.include({ token: 'ACME', units: 400, priceMinor: 2_000, currency: 'EUR' });
    expect(sold.payment).to.deep.equal({ method: 'cash', tenderedMinor: 2_500, changeMinor: 500 });
    expect(sold.code).to.match(/^ACME-[0-9A-Z]{12}-\d{2}$/);
    expect(server.ledger.state.balances['float']?.['ACME']).to.equal(floatBefore - 400);
    expect(server.ledger.state.balances['instruments']?.['ACME']).to.equal(400);
    // The retry: the same certificate, not a second one.
    const again = expectOk(await call<InstrumentSaleAck>(till.socket, 'instrument:sell', body));
    expect(again.instrument).to.equal(sold.instrument);
    // It verifies with nothing but the key directory, as at any other store.
    const directory = mall.snapshot('bolt').instruments;
    const checked = await verifyInstrument(sold.instrument, directory, new Map(mall.tokenTypes.map((t) => [t.code, t])), new Date());
    expect(checked).to.deep.include({ issuer: 'acme', token: 'ACME', units: 400 });
    // The mall learns of the certificate from the batch that sold it; until then the store takes it within the offline policy.
    const paid = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: sold.instrument }] }));
    expect(paid.instruments?.[0]).to.deep.include({ code: sold.code, units: 90, remainingAfter: 310, offline: true });
    expect(server.ledger.state.balances['instruments']?.['ACME']).to.equal(310);
    await refused('instrument:sell', { key: key(), token: 'MALL', units: 10, payment: { method: 'cash', tenderedMinor: 100 } }, 'VND_ERR_INSTRUMENT_NOT_FOR_SALE');
  });

  it('voids a certificate this store sold by mistake, with a supervisor and the mall\'s agreement; refuses a used one or a cashier\'s', async () => {
    const floatBefore = server.ledger.state.balances['float']?.['ACME'] ?? 0;
    const sold = expectOk(await call<InstrumentSaleAck>(till.socket, 'instrument:sell', { key: key(), token: 'ACME', units: 200, payment: { method: 'cash', tenderedMinor: 1_000 } }));
    const code = sold.code;
    // Its batch has reached the mall.
    mall.learn('acme', code, sold.instrument, 'ACME', 200);
    const body = { key: key(), code, reason: 'sold twice by mistake', supervisor: { staffId: 'ana', pin: '1234' } };
    await refused('instrument:void', body, 'VND_ERR_SUPERVISOR_REQUIRED');
    const voided = expectOk(await call<InstrumentVoidAck>(till.socket, 'instrument:void', { ...body, supervisor: { staffId: 'sam', pin: '9999' } }));
    expect(voided).to.deep.include({ code, token: 'ACME', units: 200, cashRefundMinor: 1_000 });
    expect(server.ledger.state.balances['float']?.['ACME']).to.equal(floatBefore);
    expect(server.ledger.state.instruments[code]).to.deep.include({ voided: true, remainingUnits: 0 });
    expect(mall.instruments.get(code)?.state).to.equal('voided');
    // The retry: the same void.
    expect(expectOk(await call<InstrumentVoidAck>(till.socket, 'instrument:void', { ...body, supervisor: { staffId: 'sam', pin: '9999' } })).seq).to.equal(voided.seq);
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: sold.instrument }] }, 'VND_ERR_INSTRUMENT_SPENT');
    // A certificate used here, or another store's, is not this store's to void.
    const used = expectOk(await call<InstrumentSaleAck>(till.socket, 'instrument:sell', { key: key(), token: 'ACME', units: 200, payment: { method: 'card', approvalRef: 'APPR-77120' } }));
    // Its card approval paid for it: it pays for no other certificate, and (the same list) no tokens sold at the till.
    expect(server.ledger.state.cardPayments['APPR-77120']).to.equal(used.seq);
    await refused('instrument:sell', { key: key(), token: 'ACME', units: 10, payment: { method: 'card', approvalRef: 'APPR-77120' } }, 'VND_ERR_PAYMENT_REUSED');
    expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: used.instrument }] }));
    await refused('instrument:void', { key: key(), code: used.code, reason: 'mistake', supervisor: { staffId: 'sam', pin: '9999' } }, 'VND_ERR_INSTRUMENT_NOT_VOIDABLE');
    const foreign = await mall.issue('gift', 100);
    await refused('instrument:void', { key: key(), code: foreign.code, reason: 'mistake', supervisor: { staffId: 'sam', pin: '9999' } }, 'VND_ERR_INSTRUMENT_NOT_VOIDABLE');
  });

  it('sells a mall certificate from stock only while the mall says it is unsold; its tokens come from the float', async () => {
    const stock = await mall.issue('gift', 250);
    const record = mall.instruments.get(stock.code);
    if (record === undefined) throw new Error('not issued');
    record.state = 'unsold';
    const floatBefore = server.ledger.state.balances['float']?.['MALL'] ?? 0;
    const sold = expectOk(await call<InstrumentSaleAck>(till.socket, 'instrument:sell', { key: key(), instrument: stock.compact, payment: { method: 'card', approvalRef: 'APPR-STOCK-1' } }));
    expect(sold).to.deep.include({ code: stock.code, token: 'MALL', units: 250, priceMinor: 2_500, instrument: stock.compact });
    expect(server.ledger.state.balances['float']?.['MALL']).to.equal(floatBefore - 250);
    expect(server.ledger.state.instruments[stock.code]).to.deep.include({ soldSeq: sold.seq, remainingUnits: 250 });
    // Sold once: again here, or a certificate the mall knows as live, or while the mall cannot say, is refused.
    await refused('instrument:sell', { key: key(), instrument: stock.compact, payment: { method: 'cash', tenderedMinor: 2_500 } }, 'VND_ERR_INSTRUMENT_NOT_FOR_SALE');
    const live = await mall.issue('gift', 100);
    await refused('instrument:sell', { key: key(), instrument: live.compact, payment: { method: 'cash', tenderedMinor: 1_000 } }, 'VND_ERR_INSTRUMENT_NOT_FOR_SALE');
    mall.down = true;
    const later = await mall.issue('gift', 100);
    (mall.instruments.get(later.code) as { state: string }).state = 'unsold';
    await refused('instrument:sell', { key: key(), instrument: later.compact, payment: { method: 'cash', tenderedMinor: 1_000 } }, 'VND_ERR_MALL_UNREACHABLE');
  });

  it('a refund of a sale paid by a coupon and a certificate gives their units back: the coupon may be used again', async () => {
    mall.down = true;
    const coupon = await mall.issue('coupon', 40);
    const gift = await mall.issue('gift', 100);
    const paid = expectOk(await sale({ lines: [{ code: MUESLI, qty: 1 }, { code: PEN, qty: 1 }], instruments: [{ instrument: coupon.compact }, { instrument: gift.compact }] }));
    expect(paid.instruments?.map((i) => [i.code, i.units, i.remainingAfter])).to.deep.equal([
      [coupon.code, 40, 0],
      [gift.code, 45, 55],
    ]);
    const balances = JSON.stringify(server.ledger.state.balances['instruments']);
    const refund = await call<{ refundId: string }>(till.socket, 'sale:refund', { key: key(), saleId: paid.saleId, reason: 'returned', supervisor: { staffId: 'sam', pin: '9999' } });
    expect(refund.ok, JSON.stringify(refund)).to.equal(true);
    expect(server.ledger.state.instruments[coupon.code]).to.deep.include({ redeemedUnits: 0, remainingUnits: 40 });
    expect(server.ledger.state.instruments[gift.code]).to.deep.include({ redeemedUnits: 0, remainingUnits: 100 });
    expect(JSON.stringify(server.ledger.state.balances['instruments'])).to.not.equal(balances);
    const again = expectOk(await sale({ lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }] }));
    expect(again.instruments?.[0]).to.deep.include({ code: coupon.code, units: 40, remainingAfter: 0 });
  });

  it('a mall that does not answer is left alone for a while: the next scans and sales are judged offline at once', async () => {
    const { compact } = await mall.issue('gift', 300);
    server.instruments.mallRetryAfterMs = 60_000;
    try {
      mall.down = true;
      expect(expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: compact })).source).to.equal('face');
      // Back, but not asked again within the pause.
      mall.down = false;
      const calls = mall.reserveCalls;
      expect(expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: compact })).source).to.equal('face');
      const ack = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact }] }));
      expect(ack.instruments?.[0]).to.deep.include({ offline: true });
      expect(mall.reserveCalls).to.equal(calls);
    } finally {
      server.instruments.mallRetryAfterMs = 0;
    }
    // The pause over: the mall is asked again.
    expect(expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: compact })).source).to.equal('mall');
  });

  it('attack: hostile shapes and names are refused at the edge, with nothing changed', async () => {
    const { compact } = await mall.issue('gift', 100);
    await refused('instrument:inquire', { code: '__proto__' }, 'CORE_ERR_INSTRUMENT_CODE');
    await refused('instrument:inquire', { code: 'constructor-ABCDEF-00' }, 'CORE_ERR_INSTRUMENT_CODE');
    await refused('instrument:inquire', { instrument: 'x'.repeat(1_025) }, 'CORE_ERR_VALIDATION');
    await refused('instrument:inquire', { instrument: compact, code: 'MALL-G7K2M9Q4XB-24' }, 'CORE_ERR_VALIDATION');
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: Array.from({ length: 9 }, () => ({ instrument: compact })) }, 'CORE_ERR_VALIDATION');
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact, units: -5 }] }, 'CORE_ERR_AMOUNT');
    // A "__proto__" key of its own, as JSON from a hostile client carries it.
    const protoKey = JSON.parse(`{"instrument":${JSON.stringify(compact)},"__proto__":{"units":1}}`) as Record<string, unknown>;
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [protoKey] }, 'CORE_ERR_VALIDATION');
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact, extra: 1 }] }, 'CORE_ERR_VALIDATION');
    // A header with more than it may carry (an embedded key) is not an instrument.
    const [, p, sig] = compact.split('.') as [string, string, string];
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: mall.mallInstrumentKey.kid, typ: 'mpgc', jwk: { kty: 'OKP' } })).toString('base64url');
    await refused('instrument:inquire', { instrument: `${header}.${p}.${sig}` }, 'CORE_ERR_INSTRUMENT_MALFORMED');
    expect(Object.getPrototypeOf(server.ledger.state.instruments)).to.equal(null);
  });

  it('attack: a card tender and a certificate of one token, or one certificate twice, are refused', async () => {
    const { compact } = await mall.issue('gift', 100);
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: compact }, { instrument: compact }] }, 'CORE_ERR_VALIDATION');
    await refused('sale:commit', { lines: [{ code: PEN, qty: 1 }], card: 'C0000000018', tenders: [{ token: 'MALL' }], instruments: [{ instrument: compact }] }, 'CORE_ERR_VALIDATION');
  });
});
