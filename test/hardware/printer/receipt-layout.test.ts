import { expect } from 'chai';
import { type Columns, type Receipt, checkReceipt, layoutReceipt, pair, width, wrap } from '../../../hardware/printer/receipt.ts';
import { sampleReceipt } from './fixtures.ts';

const allColumns: Columns[] = [32, 42, 48];

describe('hardware/printer layoutReceipt', () => {
  for (const columns of allColumns) {
    describe(`${columns} columns`, () => {
      const r = sampleReceipt();
      const lines = layoutReceipt(r, columns);
      const texts = lines.map((l) => l.text);

      it('keeps every line within the width', () => {
        for (const t of texts) expect(width(t), JSON.stringify(t)).to.be.at.most(columns);
      });

      it('starts with the store name, centred and bold, then the address', () => {
        expect(lines[0]).to.deep.equal({ text: 'Bäckerei Müller', align: 'center', bold: true });
        expect(lines[1]).to.deep.equal({ text: 'Hauptstraße 5', align: 'center', bold: false });
        expect(lines[2]).to.deep.equal({ text: '10115 Berlin', align: 'center', bold: false });
      });

      it('right-aligns every amount in the last column', () => {
        const amounts = [
          ...r.lines.map((l) => l.total),
          ...r.tenders.map((t) => t.amount),
          ...r.balances.map((b) => b.amount),
          r.cash?.due, r.cash?.tendered, r.cash?.change,
        ] as string[];
        for (const amount of amounts) {
          const line = texts.find((t) => t.endsWith(` ${amount}`));
          expect(line, amount).to.be.a('string');
          expect(width(line as string)).to.equal(columns);
        }
        const change = lines.find((l) => l.text.startsWith('Change'));
        expect(change?.bold).to.equal(true);
      });

      it('prints the quantity and unit price of each item under its name', () => {
        const musli = texts.indexOf('Müsli');
        expect(musli).to.be.greaterThan(0);
        expect(texts[musli + 1]).to.match(/^ {2}2 x 120 ACME +240 ACME$/);
        expect(texts).to.include('Crème fraîche');
        expect(texts).to.include('Smørrebrød');
      });

      it('wraps a long name at word boundaries', () => {
        const full = 'Extra long organic wholegrain sourdough loaf with sunflower seeds and rye, sliced by hand';
        const start = texts.findIndex((t) => t.startsWith('Extra long'));
        const end = texts.findIndex((t) => t.startsWith('  1 x 95 ACME'));
        expect(end - start).to.be.within(2, 3);
        expect(texts.slice(start, end).join(' ')).to.equal(full);
      });
    });
  }

  it('truncates a name longer than three lines and marks the cut', () => {
    const name = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const lines = wrap(name, 32, 3);
    expect(lines).to.have.length(3);
    expect(lines[2]?.endsWith('.')).to.equal(true);
    for (const l of lines) expect(width(l)).to.be.at.most(32);
  });

  it('splits a single word wider than the paper', () => {
    expect(wrap('x'.repeat(70), 32, 3)).to.deep.equal(['x'.repeat(32), 'x'.repeat(32), 'x'.repeat(6)]);
  });

  it('never cuts a value: a long sale id moves to its own right-aligned line', () => {
    const id = '3f1c2a8e-6b0d-4c55-9e1f-2d7b9a0c4e11';
    const lines = layoutReceipt(sampleReceipt({ saleId: id }), 32).map((l) => l.text);
    const at = lines.indexOf('Sale');
    expect(at).to.be.greaterThan(0);
    expect((lines[at + 1] as string) + (lines[at + 2] as string)).to.include(id.slice(0, 32).trim());
    expect(lines.join('\n')).to.include(id.slice(32));
    expect(pair('Total', '12345', 11)).to.deep.equal(['Total 12345']);
    expect(pair('Total due', '12345', 11)).to.deep.equal(['Total due', '      12345']);
  });

  it('turns control characters into spaces so names cannot carry printer commands', () => {
    const r = sampleReceipt({ lines: [{ name: 'Evil\x1bi\x1dV\x00name\nnext', qty: 1, price: '1 ACME', total: '1 ACME' }] });
    const text = layoutReceipt(r, 42).map((l) => l.text).join('\n');
    expect(text).to.include('Evil i V name next');
    expect(Array.from(text).some((ch) => ch !== '\n' && ch.charCodeAt(0) < 0x20)).to.equal(false);
  });

  it('counts a decomposed accent as one column', () => {
    const decomposed = 'Cre\u0300me'.padEnd(10, 'x');
    const [line] = wrap(decomposed, 32, 1);
    expect(width(line as string)).to.equal(9);
    expect(line).to.equal('Crèmexxxx');
  });

  it('draws no empty section when a receipt has no items', () => {
    const texts = layoutReceipt(sampleReceipt({ lines: [] }), 32).map((l) => l.text);
    const rule = '-'.repeat(32);
    for (let i = 1; i < texts.length; i++) expect(texts[i] === rule && texts[i - 1] === rule, `line ${i}`).to.equal(false);
  });

  it('marks refunds and reprints', () => {
    expect(layoutReceipt(sampleReceipt({ kind: 'refund' }), 42).map((l) => l.text)).to.include.members(['*** REFUND ***', 'Refunded']);
    expect(layoutReceipt(sampleReceipt({ kind: 'reprint' }), 42).map((l) => l.text)).to.include('*** REPRINT ***');
  });

  it('is pure: same input, same output, input untouched', () => {
    const r = sampleReceipt();
    const before = JSON.stringify(r);
    expect(layoutReceipt(r, 48)).to.deep.equal(layoutReceipt(r, 48));
    expect(JSON.stringify(r)).to.equal(before);
  });

  it('rejects a width other than 32, 42 or 48', () => {
    expect(() => layoutReceipt(sampleReceipt(), 40 as Columns)).to.throw(RangeError);
  });

  it('checks receipts at the boundary with a named problem', () => {
    expect(checkReceipt(sampleReceipt()).ok).to.equal(true);
    const bad = [
      sampleReceipt({ qr: 'sale:Müller' }),
      sampleReceipt({ barcode: '{C123' }),
      sampleReceipt({ lines: [{ name: 'x', qty: 1.5, price: '1', total: '1' }] }),
      sampleReceipt({ at: 'yesterday' }),
      { ...sampleReceipt(), extra: true },
    ];
    for (const b of bad) {
      const c = checkReceipt(b);
      expect(c.ok, JSON.stringify(b).slice(0, 60)).to.equal(false);
      if (!c.ok) expect(c.problem).to.be.a('string').and.not.equal('');
    }
    const many = sampleReceipt({ lines: Array.from({ length: 501 }, () => ({ name: 'x', qty: 1, price: '1', total: '1' })) });
    expect(checkReceipt(many)).to.deep.include({ ok: false });
  });
});

describe('hardware/printer receipt layout: duplicates and reports', () => {
  it('marks a counted reprint as a duplicate with its count, and a reprint without one as before', () => {
    const r = sampleReceipt();
    const counted = layoutReceipt({ ...r, kind: 'reprint', reprintCount: 3 }, 42).map((l) => l.text);
    expect(counted).to.include('DUPLICATE — reprint 3');
    expect(counted).to.not.include('*** REPRINT ***');
    expect(layoutReceipt({ ...r, kind: 'reprint' }, 42).map((l) => l.text)).to.include('*** REPRINT ***');
  });

  it('lays a report out with its title and sections, and checks it like a receipt (no codes needed)', () => {
    const report: Receipt = {
      store: { name: 'Shop', address: [] },
      terminal: 'Till 1',
      cashier: 'Ana',
      at: '2026-11-30T18:00:00+01:00',
      saleId: 'Z 7',
      kind: 'report',
      title: 'Z REPORT 7',
      lines: [],
      tenders: [],
      balances: [],
      sections: [{ title: 'Sales', rows: [{ label: 'Net', amount: '€37.50' }] }],
    };
    expect(checkReceipt(report).ok).to.equal(true);
    const text = layoutReceipt(report, 32).map((l) => l.text);
    expect(text).to.include('Z REPORT 7');
    expect(text).to.include(`Report${' '.repeat(32 - 'Report'.length - 3)}Z 7`);
    expect(text).to.include(`Net${' '.repeat(32 - 3 - 6)}€37.50`);
    const tooMany = { ...report, sections: Array.from({ length: 13 }, () => ({ title: 'x', rows: [] })) };
    expect(checkReceipt(tooMany).ok).to.equal(false);
  });
});
