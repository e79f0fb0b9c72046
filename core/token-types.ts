import { fail } from './errors.ts';

export const TOKEN_KINDS = ['mall', 'vendor', 'manufacturer', 'gift'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/**
 * A currency of tokens. `faceValueMinor` is the fiat value of one token in minor units
 * of `currency`: the predetermined rate of exchange at which tokens are bought.
 * `acceptedBy` is the acceptance list: vendor ids, or '*' for every member vendor.
 * A manufacturer token buys only the GTINs in `products`.
 */
export interface TokenType {
  code: string;
  name: string;
  kind: TokenKind;
  issuer: string;
  faceValueMinor: number;
  currency: string;
  acceptedBy: string[] | '*';
  products?: string[];
  expiresAt?: string;
}

export function isAcceptedAt(tt: TokenType, vendorId: string): boolean {
  return tt.acceptedBy === '*' || tt.acceptedBy.includes(vendorId);
}

export function isExpired(tt: TokenType, now: Date): boolean {
  return tt.expiresAt !== undefined && Date.parse(tt.expiresAt) <= now.getTime();
}

/** Whether this token type may pay for the product (manufacturer tokens: listed products only). */
export function mayBuy(tt: TokenType, gtin: string): boolean {
  return tt.kind !== 'manufacturer' || (tt.products ?? []).includes(gtin);
}

/** Throws the typed reason why tokens of this type cannot be spent here now. */
export function checkSpendable(tt: TokenType, vendorId: string, now: Date): void {
  if (!isAcceptedAt(tt, vendorId)) fail('CORE_ERR_TOKEN_NOT_ACCEPTED', `${tt.code} tokens are not accepted in this store`, { token: tt.code });
  if (isExpired(tt, now)) fail('CORE_ERR_TOKEN_EXPIRED', `${tt.code} tokens expired on ${tt.expiresAt?.slice(0, 10)}`, { token: tt.code });
}

export function lookupTokenType(types: ReadonlyMap<string, TokenType>, code: string): TokenType {
  const tt = types.get(code);
  if (tt === undefined) fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${code.slice(0, 20)}`, { token: code.slice(0, 20) });
  return tt;
}
