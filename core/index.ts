export * from './errors.ts';
export * from './money.ts';
export * from './codes.ts';
export * from './card-mask.ts';
// Both modules define maskCard; the card-mask one (prefix and last digits, length kept) is the project's one.
export { maskCard } from './card-mask.ts';
export * from './token-types.ts';
export * from './ledger.ts';
export * from './pricing.ts';
export * from './events.ts';
export * from './schemas.ts';
export * from './protocol.ts';
export * from './batch.ts';
export * from './sale-check.ts';
export * from './cashier-day.ts';
export * from './economy.ts';
export * from './instruments.ts';
