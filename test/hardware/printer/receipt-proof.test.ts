import { expect } from 'chai';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { receiptProofPayload } from '../../../core/receipt-proof.ts';
import { signReceiptProof } from '../../../platform/receipt-proof.ts';
import type { DecodedReceipt } from '../../../hardware/printer/escpos-decoder.ts';
import { checkReceipt, receiptLimits } from '../../../hardware/printer/receipt.ts';
import { PrinterSimulator } from '../../../hardware/printer/simulator.ts';
import { qrCellDots, ThermalReceiptPrinter } from '../../../hardware/printer/thermal-printer.ts';
import { sampleReceipt } from './fixtures.ts';

const DEADLINE_MS = 30_000;

/** Modules a side of the QR code holding `bytes` at correction M, with its quiet zone. */
function sideModules(bytes: number): number {
  const capacity = [14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412, 450, 504, 560, 624, 666, 711, 779, 857, 911, 997, 1059];
  const version = capacity.findIndex((c) => c >= bytes) + 1;
  return 17 + 4 * version + 8;
}

describe('hardware/printer: a receipt\'s signed proof as its QR code', function () {
  this.timeout(2 * DEADLINE_MS);
  let proof: string;
  let sim: PrinterSimulator | undefined;

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const kid = await calculateJwkThumbprint((await exportJWK(publicKey)) as JWK);
    const payload = receiptProofPayload({ vendor: 'acme', saleId: 'S0000000061', hash: 'cd'.repeat(32), at: '2026-12-01T10:15:42.123Z', currency: 'EUR', totalMinor: 1250, debits: { ACME: 120, MALL: 45 }, cash: { dueMinor: 350 } });
    proof = await signReceiptProof(payload, { privateKey, kid });
  });

  afterEach(async () => {
    await sim?.stop();
    sim = undefined;
  });

  it('keeps every QR code on the paper: 3 dots a module for a proof on 58 mm paper, 5 on 80 mm, 6 for a short code', () => {
    expect(qrCellDots(proof, 32)).to.equal(3);
    expect(qrCellDots(proof, 48)).to.equal(5);
    expect(qrCellDots('mallpos:sale:S-2025-000123', 32)).to.equal(6);
    for (const columns of [32, 42, 48] as const) {
      for (const length of [1, 100, 300, proof.length, 800, receiptLimits.qrCharsMax]) {
        const dots = qrCellDots('x'.repeat(length), columns);
        expect(dots * sideModules(length), `${length} bytes at ${columns} columns`).to.be.at.most(columns * 12);
        expect(dots).to.be.at.least(2);
      }
    }
  });

  it('accepts a proof as the QR payload, and still refuses an over-long or non-ASCII one', () => {
    expect(checkReceipt(sampleReceipt({ qr: proof })).ok).to.equal(true);
    expect(checkReceipt(sampleReceipt({ qr: 'x'.repeat(receiptLimits.qrCharsMax + 1) })).ok).to.equal(false);
    expect(checkReceipt(sampleReceipt({ qr: `${proof}\u00e9` })).ok).to.equal(false);
  });

  for (const type of ['epson', 'star'] as const) {
    it(`prints the proof on a ${type.toUpperCase()} printer at 32 columns and the QR code decodes to the same text`, async () => {
      sim = new PrinterSimulator({ port: 0, emulation: type });
      await sim.start();
      const printer = new ThermalReceiptPrinter({ type, interface: sim.url, columns: 32 });
      expect(await printer.print(sampleReceipt({ qr: proof }))).to.deep.equal({ ok: true });
      const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
      expect((got as DecodedReceipt).qr).to.deep.equal([proof]);
    });
  }
});
