/**
 * How customer card numbers are shown to people. A card number is a bearer credential
 * at the till, so screens, receipts and logs show only its prefix and last digits
 * ("C•••••••018"), enough for a cashier or a customer to tell two cards apart. The
 * mask keeps the number's length, so a receipt's layout does not change.
 */
export const CARD_DIGITS_SHOWN = 3;
export const CARD_MASK_CHAR = '•';

const CARD = /^C([0-9]+)$/;
// A card number inside text: "C" and 8 or more digits, not part of a longer word or number.
const CARD_IN_TEXT = /(?<![A-Za-z0-9])C[0-9]{8,32}(?![0-9])/g;

/** "C0000000018" → "C•••••••018"; text that is not a card number is masked wherever it holds one. */
export function maskCard(card: string): string {
  const m = CARD.exec(card);
  if (m === null) return maskCardsInText(card);
  const digits = m[1] ?? '';
  // A number too short to keep any of it hidden is hidden whole.
  const shown = digits.length > CARD_DIGITS_SHOWN * 2 ? CARD_DIGITS_SHOWN : 0;
  return `C${CARD_MASK_CHAR.repeat(digits.length - shown)}${shown === 0 ? '' : digits.slice(-shown)}`;
}

/** Masks every card number in a message, e.g. "card C0000000019 has a wrong check digit". */
export function maskCardsInText(text: string): string {
  return text.replace(CARD_IN_TEXT, (card) => maskCard(card));
}
