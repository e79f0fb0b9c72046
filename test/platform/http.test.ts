import { createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { closeServer } from '../../platform/http.ts';

describe('platform/http closeServer', () => {
  it('cuts a connection whose request is still in flight once the grace is over, and resolves', async () => {
    let answered = false;
    // A request the server is still working on when it is told to close.
    const http = createServer(() => undefined);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
    const { port } = http.address() as AddressInfo;
    const client = connect(port, '127.0.0.1');
    client.on('data', () => (answered = true));
    const cut = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const arrived = new Promise<void>((resolve) => http.once('request', () => resolve()));
    client.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await arrived;
    let closed = false;
    const closing = closeServer(http, 200).then(() => (closed = true));
    await cut;
    await closing;
    expect(closed).to.equal(true);
    expect(answered, 'the request in flight was cut, not answered').to.equal(false);
  });

  it('lets an idle keep-alive connection go at once', async () => {
    const http = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
    const { port } = http.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'keep-alive' } });
    expect(await res.text()).to.equal('ok');
    const started = Date.now();
    // A grace far longer than any test: resolving means the idle connection did not wait for it.
    await closeServer(http, 600_000);
    expect(Date.now() - started).to.be.lessThan(600_000);
  });
});
