import { readdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { expect } from 'chai';
import { startDemoStore, type DemoStore } from '../helpers/vendor.ts';

/**
 * A GET over TLS that trusts only the store's authority and hands back the status as soon
 * as it arrives, and the body as a promise that fails when the transfer stops before its end.
 */
function getStreamed(url: string, headers: Record<string, string>, ca: string): Promise<{ status: number; body: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { headers, ca, agent: false }, (res) => {
      const body = new Promise<string>((ok, fail) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => ok(text));
        res.on('error', fail);
        res.on('close', () => (res.complete ? ok(text) : fail(new Error('the transfer stopped before its end'))));
      });
      resolve({ status: res.statusCode ?? 0, body });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('vendor-server: ledger export', function () {
  this.timeout(60_000);
  let store: DemoStore;

  beforeEach(async () => {
    store = await startDemoStore();
  });
  afterEach(async () => store.close());

  it('ends a complete export with a trailer naming the count, last seq and last hash', async () => {
    const res = await store.operator('GET', '/api/ledger/export?format=jsonl&from=5');
    expect(res.status).to.equal(200);
    const lines = res.text.trim().split('\n');
    const trailer = (JSON.parse(lines.pop() ?? '') as { trailer: Record<string, unknown> }).trailer;
    const last = JSON.parse(lines.at(-1) ?? '') as { hash: string; event: { seq: number } };
    expect(trailer).to.deep.equal({ count: lines.length, fromSeq: 5, lastSeq: last.event.seq, lastHash: last.hash });
    expect(trailer['lastSeq']).to.equal(store.server.ledger.state.seq);
    expect(trailer['lastHash']).to.equal(store.server.ledger.state.hash);

    const csv = await store.operator('GET', '/api/ledger/export?format=csv');
    const end = csv.text.trim().split('\n').at(-1);
    expect(end).to.equal(`${store.server.ledger.state.seq},,end,,,${store.server.ledger.state.seq} events; last hash ${store.server.ledger.state.hash},,,`);

    const empty = await store.operator('GET', `/api/ledger/export?from=${store.server.ledger.state.seq + 1}`);
    expect(JSON.parse(empty.text.trim())).to.deep.equal({ trailer: { count: 0, fromSeq: store.server.ledger.state.seq + 1, lastSeq: store.server.ledger.state.seq, lastHash: null } });
  });

  it('aborts the transfer, with no trailer and no clean end, when a journal read fails mid-stream', async () => {
    // A real read error: a line in the middle of the journal no longer matches its hash.
    const journalDir = join(store.dir, 'ledger', 'journal');
    const [segment] = (await readdir(journalDir)).sort();
    if (segment === undefined) throw new Error('a segment');
    const path = join(journalDir, segment);
    const text = await readFile(path, 'utf8');
    const at = text.indexOf('Stabilo');
    await writeFile(path, `${text.slice(0, at)}Stabilx${text.slice(at + 7)}`);

    for (const format of ['jsonl', 'csv']) {
      const res = await getStreamed(`${store.server.url}/api/ledger/export?format=${format}`, { authorization: `Bearer ${store.init.operatorToken}` }, store.server.caPem);
      // The status was sent with the first lines; the body must then fail, never end cleanly.
      expect(res.status).to.equal(200);
      const read = await res.body.then(
        (t) => ({ ok: true, text: t }),
        (err: unknown) => ({ ok: false, text: String(err) }),
      );
      expect(read.ok, `the ${format} body ended cleanly: ${read.text.slice(-200)}`).to.equal(false);
    }
    // The server is still up and answers.
    expect((await store.operator('GET', '/health')).status).to.equal(200);
  });
});
