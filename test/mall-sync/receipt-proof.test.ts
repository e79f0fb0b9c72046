import { Writable } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../../platform/logger.ts';
import { receiptProofPayload, type ReceiptProofPayload } from '../../core/receipt-proof.ts';
import type { SaleAck } from '../../core/index.ts';
import { signReceiptProof } from '../../platform/receipt-proof.ts';
import { RECEIPT_BODY_BYTES_MAX } from '../../mall-sync/receipt-page.ts';
import type { ReceiptVerdict } from '../../mall-sync/receipt-verify.ts';
import { fetchTls } from '../helpers/http.ts';
import {
  forEachStore,
  http,
  newKey,
  opKey,
  P_PEN,
  pushAll,
  registerScenario,
  seedVendorCatalog,
  sell,
  startMall,
  startVendor,
  storeFingerprint,
  type MallRig,
  type TestKey,
  type VendorRig,
} from './helpers.ts';

forEachStore('mall-sync: verifiable receipts', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let v: VendorRig;
  let bobs: TestKey;
  let card: string;
  /** The mall's error log lines. */
  const logs: string[] = [];

  /** The receipt proof the store server signs for a sale (terminal-socket's receiptProof), optionally altered before signing. */
  async function receiptOf(sale: SaleAck, keys: { privateKey: CryptoKey; kid: string } = v.keys, change?: (p: ReceiptProofPayload) => void, vendor = 'acme'): Promise<string> {
    const record = await v.opened.journal.read(sale.seq);
    const payload = receiptProofPayload({ vendor, saleId: sale.saleId, hash: record.hash, at: sale.at, currency: sale.currency, totalMinor: sale.totalMinor, debits: sale.debits, cash: sale.cash });
    change?.(payload);
    return signReceiptProof(payload, keys);
  }

  /** Asks the mall, and checks that asking changed nothing. */
  async function verify(qr: unknown): Promise<ReceiptVerdict> {
    const before = storeFingerprint(mall.mall);
    const res = await http(`${mall.mall.url}/v1/receipts/verify`, 'POST', { qr });
    expect(res.status, res.text.slice(0, 300)).to.equal(200);
    expect(storeFingerprint(mall.mall), 'a check changes nothing').to.equal(before);
    return res.body as ReceiptVerdict;
  }

  async function page(query: string): Promise<{ status: number; text: string; headers: { get(name: string): string | null } }> {
    const res = await fetchTls(`${mall.mall.url}/receipts${query}`);
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  before(async () => {
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(chunk.toString());
        done();
      },
    });
    mall = await startMall({ store, logger: createLogger({ level: 'error', name: 'mall-sync', destination }) });
    v = await startVendor('acme');
    bobs = await newKey();
    await registerScenario(mall, v, bobs.publicJwk);
    await seedVendorCatalog(v);
    const c = await v.ledger.registerCustomer(v.op, { name: 'Anna Berger' });
    card = c.card;
    await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 5000, reference: 'own tokens' });
    await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 1000, reason: 'reward' });
  });

  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('says "not yet synced" before the batch, "confirmed" after it, and the same after a restart', async () => {
    const sale = await sell(v, card, [{ code: P_PEN, qty: 2 }], [{ token: 'ACME', units: 100 }]);
    const qr = await receiptOf(sale);
    const early = await verify(qr);
    expect(early.verdict, early.message).to.equal('not-yet-synced');
    expect(early.genuine).to.equal(true);
    expect(early.key).to.include({ kid: v.keys.kid, vendor: 'acme', status: 'active', validAtSale: true });
    expect(early.receipt).to.include({ vendor: 'acme', saleId: sale.saleId, totalMinor: sale.totalMinor });
    expect(early.sync).to.equal(null);

    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const confirmed = await verify(qr);
    expect(confirmed.verdict, confirmed.message).to.equal('confirmed');
    expect(confirmed.sync).to.include({ batchSeq: 1, clearing: 'cleared', refunded: false });
    expect(confirmed.sync?.eventHash).to.equal((await v.opened.journal.read(sale.seq)).hash);
    expect(confirmed.sync?.differences).to.deep.equal([]);
    expect(confirmed.vendorName).to.equal('ACME Market');

    await mall.restart();
    expect((await verify(qr)).verdict).to.equal('confirmed');
    // A scanner's line end around the text changes nothing.
    expect((await verify(`${qr}\r\n`)).verdict).to.equal('confirmed');
  });

  it('attack: a valid signature over totals that differ from the ingested sale is a MISMATCH, loudly', async () => {
    const sale = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const inflated = await receiptOf(sale, v.keys, (p) => {
      p.totalMinor += 1000;
      p.cashDueMinor += 1000;
    });
    const otherHash = await receiptOf(sale, v.keys, (p) => {
      p.hash = 'f'.repeat(64);
    });
    const otherTokens = await receiptOf(sale, v.keys, (p) => {
      p.debits = { MALL: 90 };
    });
    // Before the batch the mall has nothing to compare with: the signature alone is genuine.
    expect((await verify(inflated)).verdict).to.equal('not-yet-synced');
    expect((await pushAll(mall, v)).res.status).to.equal(200);

    const a = await verify(inflated);
    expect(a.verdict).to.equal('MISMATCH');
    expect(a.genuine).to.equal(false);
    expect(a.message).to.match(/^MISMATCH: /);
    expect(a.sync?.differences.join('\n')).to.include(`total: the sale says ${sale.totalMinor}, the receipt ${sale.totalMinor + 1000}`);
    expect(a.sync?.differences.join('\n')).to.include('cash due');
    const b = await verify(otherHash);
    expect(b.verdict).to.equal('MISMATCH');
    expect(b.sync?.differences[0]).to.include('the receipt says ffff');
    expect(logs.some((l) => l.includes('receipt MISMATCH') && l.includes(sale.saleId)), 'the operator hears of it').to.equal(true);
    const c = await verify(otherTokens);
    expect(c.verdict).to.equal('MISMATCH');
    expect(c.sync?.differences.join('\n')).to.include('tokens: the sale says 90 ACME, the receipt 90 MALL');
    // The honest receipt of the same sale is still confirmed.
    expect((await verify(await receiptOf(sale))).verdict).to.equal('confirmed');
  });

  it('attack: a receipt signed with store A\'s key claiming vendor B fails, as do unknown vendors and keys', async () => {
    const sale = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const asBobs = await verify(await receiptOf(sale, v.keys, undefined, 'bobs'));
    expect(asBobs.verdict, asBobs.message).to.equal('key-unknown');
    expect(asBobs.message).to.include('not a key of');
    expect(asBobs.genuine).to.equal(false);
    // Bob's own key cannot sign for acme either.
    const bobsForAcme = await verify(await receiptOf(sale, bobs));
    expect(bobsForAcme.verdict).to.equal('key-unknown');
    const stranger = await newKey();
    expect((await verify(await receiptOf(sale, stranger))).verdict).to.equal('key-unknown');
    expect((await verify(await receiptOf(sale, v.keys, undefined, 'nobody'))).verdict).to.equal('vendor-unknown');
  });

  it('attack: a signature by another key under acme\'s kid is a bad signature; junk is malformed', async () => {
    const sale = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const stranger = await newKey();
    const forged = await verify(await receiptOf(sale, { privateKey: stranger.privateKey, kid: v.keys.kid }));
    expect(forged.verdict).to.equal('bad-signature');
    expect(forged.key?.kid).to.equal(v.keys.kid);
    for (const junk of ['', 'mallpos:acme:S0000000001', 'a.b.c', 42, null, { qr: 'x' }, 'x'.repeat(3000)]) {
      const verdict = await verify(junk);
      expect(verdict.verdict).to.equal('malformed');
      expect(verdict.receipt).to.equal(null);
    }
  });

  it('attack: oversized and misshapen requests are refused with a typed error and change nothing', async () => {
    const before = storeFingerprint(mall.mall);
    const big = await http(`${mall.mall.url}/v1/receipts/verify`, 'POST', { qr: 'x'.repeat(RECEIPT_BODY_BYTES_MAX + 10) });
    expect(big.status).to.equal(413);
    expect(big.body.error.code).to.equal('MALL_ERR_TOO_LARGE');
    const shape = await http(`${mall.mall.url}/v1/receipts/verify`, 'POST', { qr: 'x', more: 1 });
    expect(shape.status).to.equal(400);
    expect(shape.body.error.code).to.equal('MALL_ERR_VALIDATION');
    const proto = await http(`${mall.mall.url}/v1/receipts/verify`, 'POST', JSON.parse('{"__proto__":{"qr":"x"}}'));
    expect(proto.status).to.equal(400);
    expect(storeFingerprint(mall.mall)).to.equal(before);
  });

  it('attack: the page escapes whatever it is given, and a hostile vendor name, and runs no script', async () => {
    const empty = await page('');
    expect(empty.status).to.equal(200);
    expect(empty.text).to.include('<form method="get" action="/receipts">');
    expect(empty.headers.get('content-security-policy')).to.include("default-src 'none'");
    const hostile = '</textarea><script>alert(1)</script>"\'&';
    const shown = await page(`?qr=${encodeURIComponent(hostile)}`);
    expect(shown.status).to.equal(200);
    expect(shown.text).not.to.include('<script>');
    expect(shown.text).not.to.include('</textarea><');
    expect(shown.text).to.include('&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
    expect(shown.text).to.include('Not a mallpos receipt');
    // A repeated parameter is not a receipt, and is not shown either.
    const twice = await page('?qr=a&qr=b');
    expect(twice.text).to.include('Not a mallpos receipt');

    // A vendor registered under a name made of HTML: its name is text on the page.
    const evil = await newKey();
    await mall.admin.registerVendor({ id: 'evil', name: '<img src=x onerror=alert(1)>', jwk: evil.publicJwk });
    const sale = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const qr = await receiptOf(sale, evil, undefined, 'evil');
    const named = await page(`?qr=${encodeURIComponent(qr)}`);
    expect(named.text).not.to.include('<img');
    expect(named.text).to.include('&lt;img src=x onerror=alert(1)&gt;');
    expect(named.text).to.include('Genuine, not yet synced');

    // A confirmed receipt reads as such.
    const honest = await receiptOf(sale);
    expect((await pushAll(mall, v)).res.status).to.equal(200);
    const ok = await page(`?qr=${encodeURIComponent(honest)}`);
    expect(ok.text).to.include('Genuine and confirmed');
    expect(ok.text).to.include(sale.saleId);
  });

  it('attack: an old rotated key still verifies what it signed while valid; after the rotation and once revoked it does not', async () => {
    const before = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    expect((await pushAll(mall, v)).res.status).to.equal(200);
    const oldKeys = { privateKey: v.keys.privateKey, kid: v.keys.kid };
    const signedBefore = await receiptOf(before, oldKeys);
    const rotated = await newKey();
    await mall.admin.addKey('acme', rotated.publicJwk);

    // Retired, but the sale was made while it was the store's key.
    const old = await verify(signedBefore);
    expect(old.verdict, old.message).to.equal('confirmed');
    expect(old.key).to.include({ kid: oldKeys.kid, status: 'retired', validAtSale: true });
    // A reprint signs with the key the store uses now: also confirmed.
    expect((await verify(await receiptOf(before, rotated))).verdict).to.equal('confirmed');

    // A sale after the rotation, signed with the retired key.
    const after = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const late = await verify(await receiptOf(after, oldKeys));
    expect(late.verdict, late.message).to.equal('key-retired');
    expect(late.genuine).to.equal(false);
    expect(late.key?.validAtSale).to.equal(false);
    expect((await verify(await receiptOf(after, rotated))).verdict).to.equal('not-yet-synced');

    // Revoked: nothing it signed is trusted, not even what it signed before.
    await mall.admin.revokeKey('acme', oldKeys.kid, 'laptop stolen');
    const revoked = await verify(signedBefore);
    expect(revoked.verdict).to.equal('key-revoked');
    expect(revoked.genuine).to.equal(false);
    expect((await verify(await receiptOf(before, rotated))).verdict).to.equal('confirmed');
  });
});
