/**
 * Amounts, times and messages as text: the one place the cashier screen turns numbers
 * into words. Amounts arrive as integers (token units, minor units of money) and are
 * formatted with integer arithmetic only, exactly as core/money.ts formats them for
 * receipts (a test holds the two to the same output).
 */

const CURRENCY_SYMBOLS = { EUR: '€', USD: '$', GBP: '£', JPY: '¥', CHF: 'CHF ' };
// ISO 4217 currencies whose minor unit is the whole unit.
const ZERO_DECIMAL_CURRENCIES = new Set(['JPY']);

/** Minor units in one whole unit of `currency`: 100, or 1 for yen. */
export function minorPerUnit(currency) {
  return ZERO_DECIMAL_CURRENCIES.has(currency) ? 1 : 100;
}

/** "€4.50" from 450: integer remainder and exact division, no floating-point rounding. */
export function formatMinor(minor, currency) {
  const negative = minor < 0;
  const abs = Math.abs(minor);
  const symbol = CURRENCY_SYMBOLS[currency] ?? `${currency} `;
  if (ZERO_DECIMAL_CURRENCIES.has(currency)) return `${negative ? '-' : ''}${symbol}${abs}`;
  const cents = abs % 100;
  const whole = (abs - cents) / 100;
  return `${negative ? '-' : ''}${symbol}${whole}.${String(cents).padStart(2, '0')}`;
}

/** The amount as a cashier would type it back ("12.50"): the formatted amount without its symbol. */
export function formatMinorPlain(minor, currency) {
  return formatMinor(minor, currency).replace(/^[^\d]+/, '');
}

/** Minor units from what a cashier types ("20", "12.5", "12,50", "€ 7"); null when it is not money. */
export function parseMoney(text, currency) {
  const t = String(text).replace(/[\s€$£¥]/g, '').replace(/^CHF/i, '');
  if (ZERO_DECIMAL_CURRENCIES.has(currency)) return /^\d{1,12}$/.test(t) ? Number(t) : null;
  const m = /^(\d{1,12})(?:[.,](\d{1,2}))?$/.exec(t);
  if (m === null) return null;
  return Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}

/** "90 ACME". */
export function formatUnits(n, token) {
  return `${n} ${token}`;
}

/** Messages are plain sentences: a capital first letter and a full stop. */
export function sentence(text) {
  const t = String(text).trim();
  if (t === '') return t;
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?:]$/.test(first) ? first : `${first}.`;
}

/** The time of a sale as the receipt prints it: "2026-11-28 21:23", local time. */
export function localTime(iso) {
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** "45 s", "3 min", "2 h". */
export function formatAge(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}
