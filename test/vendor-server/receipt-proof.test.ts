import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { ReceiptData, SaleAck } from '../../core/index.ts';
import { parseReceiptQr } from '../../core/receipt-proof.ts';
import { receiptSignatureValid } from '../../platform/receipt-proof.ts';
import { createKeys, loadKeys } from '../../vendor-server/config.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const PEN = '4006381333931';
const CARD = 'C0000000018';

describe('vendor-server: receipts carry the store\'s signed proof', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let till: { terminalId: string; credential: string; socket: TerminalClient };

  before(async () => {
    store = await startDemoStore();
    till = await store.openTill();
  });
  after(async () => {
    await store?.close();
  });

  async function proofOf(data: ReceiptData): Promise<{ kid: string; hash: string; saleId: string; totalMinor: number; debits: Record<string, number> }> {
    const parsed = parseReceiptQr(data.proof);
    if (!parsed.ok) throw new Error(parsed.problem);
    const keys = await loadKeys(store.dir);
    expect(parsed.value.header.kid).to.equal(keys.kid);
    expect(await receiptSignatureValid(parsed.value, keys.publicJwk)).to.equal(true);
    return { kid: parsed.value.header.kid, ...parsed.value.payload };
  }

  it('signs the sale\'s journal hash and totals when the receipt is fetched or reprinted, never in the sale\'s answer', async () => {
    const ack = expectOk(await call<SaleAck>(till.socket, 'sale:commit', { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: CARD, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
    expect(ack).not.to.have.property('proof');
    const receipt = expectOk(await call<ReceiptData>(till.socket, 'receipt:get', { saleId: ack.saleId }));
    const proof = await proofOf(receipt);
    expect(proof).to.include({ saleId: ack.saleId, totalMinor: ack.totalMinor, hash: (await store.server.ledger.journal.read(ack.seq)).hash });
    expect(proof.debits).to.deep.equal(ack.debits);
    const reprint = expectOk(await call<ReceiptData>(till.socket, 'receipt:reprint', { saleId: ack.saleId }));
    expect((await proofOf(reprint)).hash).to.equal(proof.hash);
  });

  it('signs a reprint after a key rotation with the new key: nothing signed is kept across it', async () => {
    const ack = expectOk(await call<SaleAck>(till.socket, 'sale:commit', { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 1_000 }));
    const before = await proofOf(expectOk(await call<ReceiptData>(till.socket, 'receipt:get', { saleId: ack.saleId })));
    const journalBefore = store.server.ledger.state.seq;
    await createKeys(store.dir);
    await store.restart();
    // The till's credential was signed with the old key: it pairs again, and a supervisor
    // fetches the other till's receipt.
    till = await store.openTill('Till 2');
    expectOk(await call(till.socket, 'cashier:login', { staffId: 'sam', pin: '9999' }));
    const after = await proofOf(expectOk(await call<ReceiptData>(till.socket, 'receipt:get', { saleId: ack.saleId })));
    expect(after.kid).not.to.equal(before.kid);
    expect(after.hash).to.equal(before.hash);
    // Fetching a receipt journals nothing.
    expect(store.server.ledger.state.seq).to.equal(journalBefore);
  });
});
