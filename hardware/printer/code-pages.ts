/**
 * The single-byte code pages the receipt path uses, as tables of their upper
 * halves (bytes 0x80-0xFF; the lower half is ASCII). They are kept here rather
 * than taken from iconv-lite because iconv-lite is only node-thermal-printer's
 * dependency, and the simulator must decode without trusting the encoder it checks.
 */
export type CodePage = 'PC437' | 'PC850' | 'PC858' | 'WPC1252';

const PC437_HIGH =
  '\u00c7\u00fc\u00e9\u00e2\u00e4\u00e0\u00e5\u00e7\u00ea\u00eb\u00e8\u00ef\u00ee\u00ec\u00c4\u00c5' +
  '\u00c9\u00e6\u00c6\u00f4\u00f6\u00f2\u00fb\u00f9\u00ff\u00d6\u00dc\u00a2\u00a3\u00a5\u20a7\u0192' +
  '\u00e1\u00ed\u00f3\u00fa\u00f1\u00d1\u00aa\u00ba\u00bf\u2310\u00ac\u00bd\u00bc\u00a1\u00ab\u00bb' +
  '\u2591\u2592\u2593\u2502\u2524\u2561\u2562\u2556\u2555\u2563\u2551\u2557\u255d\u255c\u255b\u2510' +
  '\u2514\u2534\u252c\u251c\u2500\u253c\u255e\u255f\u255a\u2554\u2569\u2566\u2560\u2550\u256c\u2567' +
  '\u2568\u2564\u2565\u2559\u2558\u2552\u2553\u256b\u256a\u2518\u250c\u2588\u2584\u258c\u2590\u2580' +
  '\u03b1\u00df\u0393\u03c0\u03a3\u03c3\u00b5\u03c4\u03a6\u0398\u03a9\u03b4\u221e\u03c6\u03b5\u2229' +
  '\u2261\u00b1\u2265\u2264\u2320\u2321\u00f7\u2248\u00b0\u2219\u00b7\u221a\u207f\u00b2\u25a0\u00a0';

const PC850_HIGH =
  '\u00c7\u00fc\u00e9\u00e2\u00e4\u00e0\u00e5\u00e7\u00ea\u00eb\u00e8\u00ef\u00ee\u00ec\u00c4\u00c5' +
  '\u00c9\u00e6\u00c6\u00f4\u00f6\u00f2\u00fb\u00f9\u00ff\u00d6\u00dc\u00f8\u00a3\u00d8\u00d7\u0192' +
  '\u00e1\u00ed\u00f3\u00fa\u00f1\u00d1\u00aa\u00ba\u00bf\u00ae\u00ac\u00bd\u00bc\u00a1\u00ab\u00bb' +
  '\u2591\u2592\u2593\u2502\u2524\u00c1\u00c2\u00c0\u00a9\u2563\u2551\u2557\u255d\u00a2\u00a5\u2510' +
  '\u2514\u2534\u252c\u251c\u2500\u253c\u00e3\u00c3\u255a\u2554\u2569\u2566\u2560\u2550\u256c\u00a4' +
  '\u00f0\u00d0\u00ca\u00cb\u00c8\u0131\u00cd\u00ce\u00cf\u2518\u250c\u2588\u2584\u00a6\u00cc\u2580' +
  '\u00d3\u00df\u00d4\u00d2\u00f5\u00d5\u00b5\u00fe\u00de\u00da\u00db\u00d9\u00fd\u00dd\u00af\u00b4' +
  '\u00ad\u00b1\u2017\u00be\u00b6\u00a7\u00f7\u00b8\u00b0\u00a8\u00b7\u00b9\u00b3\u00b2\u25a0\u00a0';

// PC858 is PC850 with the euro sign in place of the dotless i at 0xD5.
const PC858_HIGH = PC850_HIGH.slice(0, 0x55) + '\u20ac' + PC850_HIGH.slice(0x56);

// Windows-1252: 0xA0-0xFF are Latin-1; 0x81, 0x8D, 0x8F, 0x90 and 0x9D are unassigned.
const WPC1252_HIGH =
  '\u20ac\ufffd\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\ufffd\u017d\ufffd' +
  '\ufffd\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\ufffd\u017e\u0178' +
  Array.from({ length: 0x60 }, (_, i) => String.fromCharCode(0xa0 + i)).join('');

const HIGH: Record<CodePage, string> = {
  PC437: PC437_HIGH,
  PC850: PC850_HIGH,
  PC858: PC858_HIGH,
  WPC1252: WPC1252_HIGH,
};

for (const [name, table] of Object.entries(HIGH)) {
  if (table.length !== 128) throw new Error(`code page table ${name} has ${table.length} entries, not 128`);
}

const ENCODE: Record<CodePage, Map<string, number>> = {
  PC437: reverse(PC437_HIGH),
  PC850: reverse(PC850_HIGH),
  PC858: reverse(PC858_HIGH),
  WPC1252: reverse(WPC1252_HIGH),
};

function reverse(high: string): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < 128; i++) {
    const ch = high[i] ?? '\ufffd';
    if (ch !== '\ufffd' && !m.has(ch)) m.set(ch, 0x80 + i);
  }
  return m;
}

/** ESC t n as EPSON numbers its code pages (ESC/POS "Select character code table"). */
export const EPSON_CODE_PAGE_NUMBERS: Record<number, CodePage> = { 0: 'PC437', 2: 'PC850', 16: 'WPC1252', 19: 'PC858' };

/** ESC GS t n as Star line mode numbers them; 0 ("normal") prints the PC437 glyphs. */
export const STAR_CODE_PAGE_NUMBERS: Record<number, CodePage> = { 0: 'PC437', 1: 'PC437', 4: 'PC858', 32: 'WPC1252' };

/** The character a byte prints as in a code page; U+FFFD where the page has none. */
export function decodeByte(page: CodePage, byte: number): string {
  if (byte < 0x80) return String.fromCharCode(byte);
  return HIGH[page][byte - 0x80] ?? '\ufffd';
}

export function decodeBytes(page: CodePage, bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += decodeByte(page, b);
  return s;
}

/** The byte for a character, or undefined when the code page cannot print it. */
export function encodeChar(page: CodePage, ch: string): number | undefined {
  const code = ch.codePointAt(0) ?? 0;
  if (ch.length === 1 && code >= 0x20 && code < 0x7f) return code;
  return ENCODE[page].get(ch);
}

// One-for-one stand-ins for common characters that no decomposition reaches.
const FALLBACK: Record<string, string> = {
  'ł': 'l', 'Ł': 'L', 'đ': 'd', 'Đ': 'D', 'ı': 'i', 'ħ': 'h', 'Ħ': 'H', 'ŧ': 't', 'Ŧ': 'T',
  '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u2032': "'",
  '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u2033': '"',
  '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2014': '-', '\u2212': '-',
  '\u2026': '.', '\u2022': '*', '\u00a0': ' ', '\u202f': ' ', '\u2009': ' ',
};

/**
 * Rewrites text so that every character is printable in `page`, one character
 * for one character so the layout's column count still holds: a character the
 * page lacks becomes its base letter ("ő" → "o"), a common stand-in ("ł" → "l",
 * "–" → "-") or "?". Done before node-thermal-printer sees the text, because its
 * own fallback silently switches the printer to another code page (or, for CJK,
 * to another international character set) in the middle of a receipt.
 */
export function toCodePage(page: CodePage, text: string): string {
  let out = '';
  for (const ch of text.normalize('NFC')) {
    if (encodeChar(page, ch) !== undefined) {
      out += ch;
      continue;
    }
    const code = ch.codePointAt(0) ?? 0;
    if (code < 0x20 || (code >= 0x7f && code < 0xa0)) {
      out += ' ';
      continue;
    }
    const base = ch.normalize('NFKD').replace(/[\u0300-\u036f]/g, '');
    if (Array.from(base).length === 1 && encodeChar(page, base) !== undefined) {
      out += base;
      continue;
    }
    const stand = FALLBACK[ch];
    out += stand !== undefined && encodeChar(page, stand) !== undefined ? stand : '?';
  }
  return out;
}
