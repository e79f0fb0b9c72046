import { z } from 'zod';
import { amount, customerRegister, idempotencyKey, identifier, personName, productCategory, productGtin, scanCode, tokenCode } from './schemas.ts';

/**
 * Payloads of the requests that open accounts and sell tokens (at the till and online),
 * and the store's loyalty programme as configured. Objects are strict: an unknown field
 * is refused, not ignored.
 */

/** An e-mail address as people type them; the server keeps it as given, trimmed and lower-cased. */
export const EMAIL_CHARS_MAX = 254;
/** A phone number: an optional +, then digits with spaces, dots, dashes or brackets; 6 to 15 digits in all (E.164). */
export const PHONE_PATTERN = /^\+?[0-9][0-9 ().-]{4,24}$/;

const email = z
  .string()
  .trim()
  .max(EMAIL_CHARS_MAX)
  .pipe(z.email('an e-mail address is name@domain'))
  .transform((s) => s.toLowerCase());

const phone = z
  .string()
  .trim()
  .regex(PHONE_PATTERN, 'a phone number is digits, optionally with a leading +, spaces, dots, dashes or brackets')
  .refine((s) => {
    const digits = s.replace(/[^0-9]/g, '').length;
    return digits >= 6 && digits <= 15;
  }, 'a phone number has 6 to 15 digits');

/** How a member store may reach the customer: at least one of the two. */
export const customerContact = z
  .strictObject({ email: email.optional(), phone: phone.optional() })
  .refine((c) => c.email !== undefined || c.phone !== undefined, 'give an e-mail address or a phone number, or leave the contact out');

export const customerRegisterRequest = z.strictObject({
  key: idempotencyKey,
  name: personName,
  /** A pre-printed card scanned at the till, or null for a new random number. */
  card: scanCode.nullable(),
  consent: z.boolean(),
  contact: customerContact.optional(),
});

/** The operator API's registration (POST /api/customers): consent and contact as at the till. */
export const customerRegisterOperator = customerRegister.extend({
  consent: z.boolean().optional(),
  contact: customerContact.optional(),
});

/** A card terminal's approval reference, as printed on its slip. */
export const approvalRef = identifier(/^[A-Za-z0-9][A-Za-z0-9._:/-]{3,63}$/, 'an approval reference is 4-64 letters, digits or . _ : / -');

/** Whole units of at least one: an amount (CORE_ERR_AMOUNT, CORE_ERR_OVERFLOW), then the floor (CORE_ERR_VALIDATION). */
export function positiveUnits(what: string, message = `${what} must be at least 1`) {
  return amount(what).refine((n) => n >= 1, message);
}

const units = positiveUnits('units', 'sell at least one token');

export const tokensSellRequest = z.strictObject({
  key: idempotencyKey,
  card: scanCode,
  token: tokenCode,
  units,
  payment: z.discriminatedUnion('method', [
    z.strictObject({ method: z.literal('cash'), tenderedMinor: amount('cash tendered') }),
    z.strictObject({ method: z.literal('card'), approvalRef }),
  ]),
});

/** A payment provider's id of a payment; it also makes the credit's idempotency key. */
export const PAYMENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{3,99}$/;

/** The body of a payment provider's notification that an online purchase of tokens was paid. */
export const paymentWebhookBody = z.strictObject({
  paymentId: identifier(PAYMENT_ID_PATTERN, 'a payment id is 4-100 letters, digits or . _ : -'),
  provider: identifier(/^[a-z0-9][a-z0-9-]{0,39}$/, 'a provider is 1-40 lower-case letters, digits or -'),
  card: scanCode,
  token: tokenCode,
  units,
  amountMinor: amount('amount paid'),
  currency: z.string().regex(/^[A-Z]{3}$/, 'a currency is 3 capital letters'),
});

export type CustomerRegisterRequest = z.output<typeof customerRegisterRequest>;
export type TokensSellRequest = z.output<typeof tokensSellRequest>;
export type PaymentWebhookBody = z.output<typeof paymentWebhookBody>;

/** Limits of a loyalty programme: rules, listed products, units per rule and per sale. */
export const LOYALTY_RULES_MAX = 32;
export const LOYALTY_GTINS_MAX = 10_000;
export const LOYALTY_UNITS_MAX = 1_000_000;

const ruleUnits = z.number().int().min(1).max(LOYALTY_UNITS_MAX);

export const loyaltyRuleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('per-amount'), everyMinor: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER), units: ruleUnits }),
  z.strictObject({ kind: z.literal('per-product'), gtins: z.array(productGtin).min(1).max(LOYALTY_GTINS_MAX), units: ruleUnits }),
  z.strictObject({ kind: z.literal('per-category'), category: productCategory, units: ruleUnits }),
]);

/** The `loyalty` section of the store's config (core/economy.ts LoyaltyProgram). */
export const loyaltyProgramSchema = z.strictObject({
  token: tokenCode,
  rules: z.array(loyaltyRuleSchema).min(1).max(LOYALTY_RULES_MAX),
  capPerSale: z.number().int().min(1).max(LOYALTY_UNITS_MAX),
});

