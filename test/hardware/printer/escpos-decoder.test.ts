import { expect } from 'chai';
import { decodeBytes, encodeChar, toCodePage } from '../../../hardware/printer/code-pages.ts';
import { type DecodedReceipt, type DecoderEvent, EscPosDecoder, renderReceipt } from '../../../hardware/printer/escpos-decoder.ts';
import { ThermalReceiptPrinter } from '../../../hardware/printer/thermal-printer.ts';
import { sampleReceipt } from './fixtures.ts';

function receiptsOf(events: DecoderEvent[]): DecodedReceipt[] {
  return events.flatMap((e) => (e.type === 'receipt' ? [e.receipt] : []));
}

function decodeAll(bytes: Uint8Array, emulation: 'epson' | 'star' = 'epson'): DecodedReceipt[] {
  const d = new EscPosDecoder(emulation);
  return receiptsOf([...d.push(bytes), ...d.end()]);
}

function decodeByteByByte(bytes: Uint8Array, emulation: 'epson' | 'star' = 'epson'): { receipts: DecodedReceipt[]; events: DecoderEvent[] } {
  const d = new EscPosDecoder(emulation);
  const events: DecoderEvent[] = [];
  for (const b of bytes) events.push(...d.push(Uint8Array.of(b)));
  events.push(...d.end());
  return { receipts: receiptsOf(events), events };
}

describe('hardware/printer EscPosDecoder', () => {
  for (const emulation of ['epson', 'star'] as const) {
    it(`decodes a ${emulation} job the same whether it arrives whole or byte by byte`, () => {
      const bytes = new ThermalReceiptPrinter({ type: emulation, interface: 'tcp://127.0.0.1:9', columns: 42 }).encode(sampleReceipt());
      const whole = decodeAll(bytes, emulation);
      const split = decodeByteByByte(bytes, emulation).receipts;
      expect(whole).to.have.length(1);
      expect(split).to.deep.equal(whole);
      expect(whole[0]?.unknown).to.deep.equal([]);
      // The receipt ends at its cut; node-thermal-printer's ESC @ after the cut starts an empty next one.
      const raw = whole[0]?.raw as Buffer;
      expect(raw.equals(bytes.subarray(0, raw.length))).to.equal(true);
      expect([...bytes.subarray(raw.length)]).to.deep.equal([0x1b, 0x40]);
    });
  }

  it('reports DLE EOT and GS r status queries even when split across chunks', () => {
    const { events } = decodeByteByByte(Buffer.from([0x10, 0x04, 0x01, 0x10, 0x04, 0x04, 0x1d, 0x72, 0x01]));
    expect(events).to.deep.equal([
      { type: 'status-query', command: 'dle-eot', n: 1 },
      { type: 'status-query', command: 'dle-eot', n: 4 },
      { type: 'status-query', command: 'gs-r', n: 1 },
    ]);
  });

  it('reports nothing for a job that only asks for status', () => {
    const d = new EscPosDecoder();
    const events = [...d.push(Buffer.from([0x1b, 0x40, 0x10, 0x04, 0x02])), ...d.end()];
    expect(receiptsOf(events)).to.deep.equal([]);
  });

  it('decodes text in the code page ESC t selects, switching mid-line', () => {
    // 0xD5 is a box-drawing character in PC437 and the euro sign in PC858.
    const bytes = Buffer.from([0x41, 0xd5, 0x1b, 0x74, 19, 0xd5, 0x0a, 0x1b, 0x74, 16, 0x80, 0xfc, 0x0a]);
    const [r] = decodeAll(bytes);
    expect(r?.lines.map((l) => l.text)).to.deep.equal(['A\u2552€', '€ü']);
    expect(r?.codePages).to.deep.equal(['PC858', 'WPC1252']);
  });

  it('records alignment and emphasis of each line', () => {
    const bytes = Buffer.concat([
      Buffer.from([0x1b, 0x61, 1, 0x1b, 0x45, 1]), Buffer.from('Title\n'),
      Buffer.from([0x1b, 0x45, 0, 0x1b, 0x61, 2]), Buffer.from('right\n'),
      Buffer.from([0x1b, 0x21, 0x08, 0x1b, 0x61, 0]), Buffer.from('bold by mode\n'),
    ]);
    expect(decodeAll(bytes)[0]?.lines).to.deep.equal([
      { text: 'Title', align: 'center', bold: true },
      { text: 'right', align: 'right', bold: false },
      { text: 'bold by mode', align: 'left', bold: true },
    ]);
  });

  it('decodes GS k barcodes in both forms and CODE128 code sets', () => {
    const bytes = Buffer.concat([
      Buffer.from([0x1d, 0x6b, 0x04]), Buffer.from('ABC-1'), Buffer.from([0x00]),
      Buffer.from([0x1d, 0x6b, 73, 7]), Buffer.from('{BR-{{1'),
      Buffer.from([0x1d, 0x6b, 73, 6]), Buffer.from('{C'), Buffer.from([12, 34, 5, 99]),
      Buffer.from([0x1d, 0x56, 0x41, 0x03]),
    ]);
    const [r] = decodeAll(bytes);
    expect(r?.barcodes).to.deep.equal([
      { symbology: 'CODE39', data: 'ABC-1' },
      { symbology: 'CODE128', data: 'R-{1' },
      { symbology: 'CODE128', data: '12340599' },
    ]);
    expect(r?.cut).to.equal(true);
  });

  it('decodes the QR payload from GS ( k store and print', () => {
    const data = Buffer.from('sale:S-1');
    const len = data.length + 3;
    const bytes = Buffer.concat([
      Buffer.from([0x1d, 0x28, 0x6b, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00]),
      Buffer.from([0x1d, 0x28, 0x6b, len & 0xff, len >> 8, 0x31, 0x50, 0x30]), data,
      Buffer.from([0x1d, 0x28, 0x6b, 0x03, 0x00, 0x31, 0x51, 0x30]),
    ]);
    expect(decodeByteByByte(bytes).receipts[0]?.qr).to.deep.equal(['sale:S-1']);
  });

  it('splits receipts at each cut and lists commands it does not know', () => {
    const bytes = Buffer.concat([Buffer.from('one\n'), Buffer.from([0x1d, 0x56, 0x00]), Buffer.from([0x1b, 0x8f]), Buffer.from('two\n'), Buffer.from([0x1d, 0x56, 0x01])]);
    const rs = decodeAll(bytes);
    expect(rs.map((r) => r.lines.map((l) => l.text))).to.deep.equal([['one'], ['two']]);
    expect(rs[1]?.unknown).to.deep.equal(['1b8f']);
  });

  it('keeps text that ends without a cut as an uncut receipt', () => {
    const rs = decodeAll(Buffer.from('no cut'));
    expect(rs).to.have.length(1);
    expect(rs[0]?.cut).to.equal(false);
    expect(rs[0]?.lines[0]?.text).to.equal('no cut');
  });

  it('renders a decoded receipt as readable text', () => {
    const [r] = decodeAll(new ThermalReceiptPrinter({ type: 'epson', interface: 'tcp://127.0.0.1:9', columns: 32 }).encode(sampleReceipt()));
    const text = renderReceipt(r as DecodedReceipt, 32);
    expect(text).to.include('        Bäckerei Müller\n');
    expect(text).to.include('[QR mallpos:sale:S-2025-000123]');
    expect(text).to.include('[CODE128 R-S2025000123]');
    expect(text).to.include('8<----');
  });
});

describe('hardware/printer code pages', () => {
  it('encodes and decodes the European letters receipts need in PC858 and WPC1252', () => {
    const sample = 'Müsli Crème fraîche Smørrebrød € Ærø ß ñ ç å';
    for (const page of ['PC858', 'WPC1252'] as const) {
      const bytes = Uint8Array.from(Array.from(sample, (ch) => encodeChar(page, ch) as number));
      expect(decodeBytes(page, bytes)).to.equal(sample);
    }
    expect(encodeChar('PC858', '€')).to.equal(0xd5);
    expect(encodeChar('WPC1252', '€')).to.equal(0x80);
  });

  it('replaces what the code page lacks one character for one', () => {
    expect(toCodePage('PC858', 'Gödöllő Łódź – “ok” 漢 €')).to.equal('Gödöllo Lódz - "ok" ? €');
    expect(toCodePage('PC858', 'tab\there')).to.equal('tab here');
  });
});
