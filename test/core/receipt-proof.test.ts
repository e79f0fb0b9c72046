import { createHash, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import fc from 'fast-check';
import { calculateJwkThumbprint, compactVerify, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { parseReceiptQr, RECEIPT_QR_CHARS_MAX, RECEIPT_TYP, receiptProofPayload, receiptProofText, receiptSaleSeq, type ReceiptProofPayload } from '../../core/receipt-proof.ts';
import { receiptSignatureValid, signReceiptProof } from '../../platform/receipt-proof.ts';
import { verifyWithJwcrypto } from '../mall-sync/helpers.ts';

/** The largest QR text a version 18 QR code at error correction M holds (89 modules a side). */
const QR_V18_M_BYTES = 560;

describe('core/receipt-proof: the signed proof a receipt QR code carries', () => {
  let key: { privateKey: CryptoKey; kid: string };
  let jwk: Record<string, unknown>;
  let qr: string;
  let payload: ReceiptProofPayload;

  before(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    jwk = (await exportJWK(pair.publicKey)) as Record<string, unknown>;
    key = { privateKey: pair.privateKey, kid: await calculateJwkThumbprint(jwk as JWK) };
    // A typical receipt: two token types and cash, the time with an offset as a till writes it.
    payload = receiptProofPayload({
      vendor: 'acme',
      saleId: 'S0000000061',
      hash: 'ab'.repeat(32),
      at: '2026-12-01T10:15:42.123+01:00',
      currency: 'EUR',
      totalMinor: 1250,
      debits: { MALL: 45, ACME: 120 },
      cash: { dueMinor: 350 },
    });
    qr = await signReceiptProof(payload, key);
  });

  it('fits a receipt printer\'s QR code comfortably, and any JOSE library reads it', async () => {
    expect(qr.length).to.be.at.most(QR_V18_M_BYTES);
    expect(qr).to.match(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const { payload: bytes, protectedHeader } = await compactVerify(qr, await importJWK(jwk as JWK, 'EdDSA'), { algorithms: ['EdDSA'] });
    expect(protectedHeader).to.deep.equal({ alg: 'EdDSA', kid: key.kid, typ: RECEIPT_TYP });
    expect(new TextDecoder().decode(bytes)).to.equal(receiptProofText(payload));
    expect(JSON.parse(new TextDecoder().decode(bytes))).to.deep.equal(payload);
  });

  it('parses back what was signed, and the signature verifies', async () => {
    const parsed = parseReceiptQr(`${qr}\r\n`);
    if (!parsed.ok) throw new Error(parsed.problem);
    expect(parsed.value.payload).to.deep.equal(payload);
    expect(parsed.value.header.kid).to.equal(key.kid);
    expect(receiptSaleSeq(parsed.value.payload)).to.equal(61);
    expect(await receiptSignatureValid(parsed.value, jwk)).to.equal(true);
  });

  it('attack: any changed character of the QR text fails (malformed, or a signature that does not verify)', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}"\u00e9';
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: qr.length - 1 }), fc.constantFrom(...alphabet), async (at, ch) => {
        fc.pre(qr[at] !== ch);
        const changed = `${qr.slice(0, at)}${ch}${qr.slice(at + 1)}`;
        const parsed = parseReceiptQr(changed);
        if (!parsed.ok) return true;
        return (await receiptSignatureValid(parsed.value, jwk)) === false;
      }),
      { numRuns: 400 },
    );
  });

  it('attack: the last signature character changed only in its unused bits is refused (one text per signature)', () => {
    const sig = qr.slice(qr.lastIndexOf('.') + 1);
    const last = sig.at(-1) as string;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 64 bytes are 86 characters: the last one carries 2 bits, its low 4 bits are unused.
    const twin = alphabet[(alphabet.indexOf(last) & ~15) | ((alphabet.indexOf(last) + 1) & 15)] as string;
    expect(Buffer.from(sig.slice(0, -1) + twin, 'base64url')).to.deep.equal(Buffer.from(sig, 'base64url'));
    const parsed = parseReceiptQr(qr.slice(0, -1) + twin);
    expect(parsed.ok).to.equal(false);
  });

  it('attack: a payload that is not canonical JSON, has extra fields or hostile keys is refused before any key is looked up', async () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64url');
    const [h, , s] = qr.split('.') as [string, string, string];
    const text = receiptProofText(payload);
    const cases = [
      JSON.stringify(payload, null, 1),
      text.replace('"v":1', '"extra":1,"v":1'),
      text.replace('"debits":{', '"debits":{"__proto__":1,'),
      text.replace('"totalMinor":1250', '"totalMinor":1250.5'),
      text.replace('"totalMinor":1250', '"totalMinor":-1'),
      text.replace('"saleId":"S0000000061"', '"saleId":"S0000000000"'),
      `\ufeff${text}`,
    ];
    for (const c of cases) {
      const parsed = parseReceiptQr(`${h}.${b64(c)}.${s}`);
      expect(parsed.ok, c.slice(0, 60)).to.equal(false);
    }
    const badHeaders = [
      { alg: 'none', kid: key.kid, typ: RECEIPT_TYP },
      { alg: 'EdDSA', kid: key.kid, typ: 'mallpos-batch+jws' },
      { alg: 'EdDSA', kid: key.kid, typ: RECEIPT_TYP, crit: ['x'] },
      { alg: 'EdDSA', kid: '../../etc/passwd', typ: RECEIPT_TYP },
    ];
    for (const header of badHeaders) expect(parseReceiptQr(`${b64(JSON.stringify(header))}.${qr.split('.')[1] ?? ''}.${s}`).ok).to.equal(false);
  });

  it('bounds the input and never echoes it in a problem', () => {
    const hostile = `<script>alert(1)</script>${'x'.repeat(10)}`;
    for (const input of [hostile, `${hostile}.a.b`, 'a'.repeat(RECEIPT_QR_CHARS_MAX + 1), '', 42, null, ['a', 'b']]) {
      const parsed = parseReceiptQr(input);
      expect(parsed.ok).to.equal(false);
      if (!parsed.ok) expect(parsed.problem).not.to.include('<script>');
    }
  });

  it('the worked example in docs/PROTOCOL.md is what the store signs, and python\'s jwcrypto verifies it', async () => {
    const doc = await readFile(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
    const example = /<!-- receipt-example -->\n```\n([^\n]+)\n```/.exec(doc)?.[1] ?? '';
    const publicJwk = JSON.parse(/\n(\{"kty":"OKP","crv":"Ed25519","x":"RYCE[^\n]+)\n/.exec(doc)?.[1] ?? '{}') as Record<string, unknown>;
    // The example's key, from the seed the document names; Ed25519 signs deterministically.
    const seed = createHash('sha256').update('mallpos receipt example key').digest();
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
    const privateJwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }) as JWK;
    expect(privateJwk.x).to.equal(publicJwk['x']);
    const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: privateJwk.x } as JWK);
    expect(kid).to.equal(publicJwk['kid']);
    const signed = await signReceiptProof(
      receiptProofPayload({ vendor: 'acme', saleId: 'S0000000011', hash: '8d677ac870b0cddb2478e5fb7bf34ebcdb70aefe8d8b3aa5b0b9b423ee33c7e6', at: '2026-11-28T21:33:05.858Z', currency: 'EUR', totalMinor: 900, debits: { MALL: 90 }, cash: { dueMinor: 0 } }),
      { privateKey: (await importJWK(privateJwk, 'EdDSA')) as CryptoKey, kid },
    );
    expect(signed).to.equal(example);
    const parsed = parseReceiptQr(example);
    if (!parsed.ok) throw new Error(parsed.problem);
    expect(await receiptSignatureValid(parsed.value, publicJwk)).to.equal(true);

    const [h, p, sig] = example.split('.') as [string, string, string];
    const changed = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
    const jwk = { kty: 'OKP', crv: 'Ed25519', x: publicJwk['x'] };
    const [ok, bad] = verifyWithJwcrypto([
      { jws: { protected: h, payload: p, signature: sig }, jwk },
      { jws: { protected: h, payload: p, signature: changed }, jwk },
    ]);
    expect(ok?.ok, ok?.error).to.equal(true);
    expect(JSON.parse(ok?.payload ?? '{}')).to.include({ saleId: 'S0000000011', totalMinor: 900, vendor: 'acme' });
    expect(ok?.header).to.deep.equal({ alg: 'EdDSA', kid, typ: RECEIPT_TYP });
    expect(bad?.ok).to.equal(false);
  });
});
