import { expect } from 'chai';
import { ERRORS } from '../../core/index.ts';
import { classifySaleRefusal, isDefiniteSaleRefusal } from '../../terminal/refusals.ts';

/**
 * A pending sale's key is dropped only when the store server certainly committed
 * nothing under it; every other answer keeps the key to be sent again.
 */
describe('terminal: which refusals drop a pending sale', () => {
  it('keeps the key after internal errors, a busy or stopping server and refusals of the connection', () => {
    for (const code of [
      'VND_ERR_INTERNAL',
      'VND_ERR_JOURNAL_BACKLOG',
      'VND_ERR_JOURNAL_CORRUPT',
      'VND_ERR_STATE_CORRUPT',
      'VND_ERR_SHUTTING_DOWN',
      'VND_ERR_UNAUTHENTICATED',
      'VND_ERR_FORBIDDEN',
      'VND_ERR_TERMINAL_REVOKED',
      'VND_ERR_RATE_LIMITED',
      'VND_ERR_IDEMPOTENCY_CONFLICT',
      'VND_ERR_IDEMPOTENCY_KEY',
      'CORE_ERR_UNBALANCED',
      'POS_ERR_OFFLINE',
    ]) {
      expect(isDefiniteSaleRefusal(code), code).to.equal(false);
    }
  });

  it('keeps the key after a code this terminal does not know, or a key of the object prototype', () => {
    for (const code of ['VND_ERR_IDEMPOTENCY_EXPIRED', 'VND_ERR_SOMETHING_NEW', '', 'constructor', '__proto__', 'toString']) expect(isDefiniteSaleRefusal(code), code).to.equal(false);
  });

  it('drops it after refusals of the sale itself, each a code of the catalogue', () => {
    for (const code of ['CORE_ERR_INSUFFICIENT_TOKENS', 'CORE_ERR_CASH_SHORT', 'CORE_ERR_VALIDATION', 'VND_ERR_CUSTOMER_UNKNOWN', 'VND_ERR_PRODUCT_UNKNOWN', 'CORE_ERR_TOKEN_NOT_ACCEPTED']) {
      expect(isDefiniteSaleRefusal(code), code).to.equal(true);
    }
    const definite = Object.keys(ERRORS).filter(isDefiniteSaleRefusal);
    // Only 4xx answers can be definite: a 5xx says the server failed, not that it judged.
    for (const code of definite) expect(ERRORS[code as keyof typeof ERRORS].status, code).to.be.within(400, 499);
    expect(definite.filter((c) => ERRORS[c as keyof typeof ERRORS].status === 503)).to.deep.equal([]);
  });

  it('waits for the customer PIN after PIN refusals, keeping the key and body', () => {
    for (const code of ['VND_ERR_CUSTOMER_PIN_REQUIRED', 'VND_ERR_CUSTOMER_PIN', 'VND_ERR_RATE_LIMITED']) {
      expect(classifySaleRefusal(code), code).to.equal('customer-pin');
      expect(isDefiniteSaleRefusal(code), code).to.equal(false);
    }
  });

  it('waits for the wallet PIN after the mall\'s wallet PIN refusals, keeping the key and body', () => {
    for (const code of ['MALL_ERR_WALLET_PIN_REQUIRED', 'MALL_ERR_WALLET_PIN']) {
      expect(classifySaleRefusal(code), code).to.equal('wallet-pin');
      expect(isDefiniteSaleRefusal(code), code).to.equal(false);
    }
  });

  it('drops the key of a sale whose card or till is locked for PINs, or whose wallet is locked or has no PIN: retrying cannot help', () => {
    for (const code of ['VND_ERR_CUSTOMER_LOCKED', 'VND_ERR_TERMINAL_LOCKED', 'MALL_ERR_WALLET_LOCKED', 'MALL_ERR_WALLET_PIN_NOT_SET']) expect(classifySaleRefusal(code), code).to.equal('definite');
  });

  it('waits for a cashier, or for pairing the till again, keeping the key', () => {
    expect(classifySaleRefusal('VND_ERR_CASHIER_REQUIRED')).to.equal('cashier');
    for (const code of ['VND_ERR_TERMINAL_REVOKED', 'VND_ERR_CREDENTIAL_REPLACED', 'VND_ERR_UNAUTHENTICATED']) {
      expect(classifySaleRefusal(code), code).to.equal('pairing');
      expect(isDefiniteSaleRefusal(code), code).to.equal(false);
    }
  });

  it('takes the wallet tokens off a sale whose wallet the store could not reach: a judgement, though a 503', () => {
    expect(classifySaleRefusal('VND_ERR_WALLET_OFFLINE')).to.equal('wallet');
    expect(isDefiniteSaleRefusal('VND_ERR_WALLET_OFFLINE')).to.equal(false);
    expect(classifySaleRefusal('MALL_ERR_WALLET_INSUFFICIENT')).to.equal('definite');
  });

  it('sends the same key again after anything else', () => {
    for (const code of ['VND_ERR_INTERNAL', 'VND_ERR_SHUTTING_DOWN', 'VND_ERR_IDEMPOTENCY_CONFLICT', 'VND_ERR_SOMETHING_NEW', '__proto__', 'constructor']) {
      expect(classifySaleRefusal(code), code).to.equal('unknown');
    }
  });

  it('names only codes of the catalogue', () => {
    const kinds = Object.keys(ERRORS).map((c) => classifySaleRefusal(c));
    for (const kind of ['definite', 'customer-pin', 'wallet-pin', 'cashier', 'pairing', 'wallet', 'unknown']) expect(kinds, kind).to.include(kind);
  });
});
