/**
 * The bid board: one static page and its script, served by the vendor server at /board
 * for a screen in the shop. It watches the `/board` namespace (no credential): lots, the
 * current bid, time left, updated as bids land. A customer may bid from it with their
 * card number and PIN. Text is written with textContent only, never as HTML.
 */
export const BOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Auctions</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #10141a; color: #f2f4f7; }
  header { padding: 16px 24px; font-size: 28px; font-weight: 600; display: flex; justify-content: space-between; }
  #conn { font-size: 16px; color: #f5a524; }
  #conn.live { color: #3ecf8e; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 16px; padding: 0 24px 24px; }
  article { background: #1c2430; border-radius: 12px; padding: 16px; }
  article.closed, article.cancelled { opacity: 0.6; }
  .title { font-size: 22px; font-weight: 600; }
  .high { font-size: 40px; font-weight: 700; margin: 8px 0; }
  .meta { color: #aab4c3; font-size: 15px; }
  .left { font-size: 20px; }
  form { padding: 16px 24px; display: flex; gap: 8px; flex-wrap: wrap; background: #1c2430; }
  input, select, button { font-size: 20px; padding: 10px; border-radius: 8px; border: 1px solid #3a4658; background: #10141a; color: inherit; min-height: 48px; }
  button { background: #2f6fed; border: none; font-weight: 600; cursor: pointer; }
  #message { padding: 8px 24px; min-height: 28px; font-size: 18px; }
  #message.bad { color: #ff6b6b; }
</style>
<script src="/board/socket.io.min.js" defer></script>
<script src="/board/board.js" defer></script>
</head>
<body>
<header><span>Auctions</span><span id="conn">connecting</span></header>
<main id="lots" aria-live="polite"></main>
<form id="bid" autocomplete="off">
  <select id="bid-lot" aria-label="Lot"></select>
  <input id="bid-card" placeholder="Card number" aria-label="Card number" inputmode="text" maxlength="20">
  <input id="bid-pin" type="password" placeholder="PIN" aria-label="PIN" inputmode="numeric" maxlength="12">
  <input id="bid-units" type="number" min="1" step="1" placeholder="Tokens" aria-label="Tokens">
  <button id="bid-send" type="submit">Bid</button>
</form>
<div id="message" role="status"></div>
</body>
</html>
`;

export const BOARD_JS = `'use strict';
(() => {
  const lots = new Map();
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  // The newer of two views of a lot: more bids, or closed, wins; a list answer may cross an update.
  const rank = (l) => l.bids * 4 + (l.status === 'closed' || l.status === 'cancelled' ? 2 : 0);
  const keep = (lot) => {
    const old = lots.get(lot.lotId);
    if (old === undefined || rank(lot) >= rank(old)) lots.set(lot.lotId, lot);
  };
  const left = (lot) => {
    if (lot.status === 'closed') return lot.result && lot.result.sold ? 'sold to ' + lot.result.card : 'closed unsold';
    if (lot.status === 'cancelled') return 'cancelled';
    const ms = Date.parse(lot.status === 'scheduled' ? lot.opensAt : lot.closesAt) - Date.now();
    const s = Math.max(0, Math.ceil(ms / 1000));
    const text = (s >= 3600 ? Math.floor(s / 3600) + 'h ' : '') + (s >= 60 ? Math.floor((s % 3600) / 60) + 'm ' : '') + (s % 60) + 's';
    return (lot.status === 'scheduled' ? 'opens in ' : 'closes in ') + text;
  };
  const render = () => {
    const main = $('lots');
    const list = [...lots.values()].sort((a, b) => Date.parse(a.closesAt) - Date.parse(b.closesAt));
    main.replaceChildren(...list.map((lot) => {
      const a = el('article', lot.status);
      a.dataset.lot = lot.lotId;
      a.dataset.bids = String(lot.bids);
      a.dataset.status = lot.status;
      a.append(el('div', 'title', lot.title));
      a.append(el('div', 'high', lot.high === null ? 'no bids' : lot.high.units + ' ' + lot.token));
      const who = lot.high === null ? '' : ' by ' + lot.high.card;
      a.append(el('div', 'meta', lot.bids + ' bids' + who + (lot.reserveMet ? '' : ' (reserve not met)')));
      if (lot.minBidUnits !== null) a.append(el('div', 'meta', 'next bid at least ' + lot.minBidUnits + ' ' + lot.token));
      a.append(el('div', 'left', left(lot)));
      return a;
    }));
    const select = $('bid-lot');
    const chosen = select.value;
    select.replaceChildren(...list.filter((l) => l.status === 'open').map((l) => {
      const o = el('option', '', l.title + ' (' + l.lotId + ')');
      o.value = l.lotId;
      return o;
    }));
    if (chosen) select.value = chosen;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || '0') + 1);
  };
  const tick = () => {
    for (const a of document.querySelectorAll('article[data-lot]')) {
      const lot = lots.get(a.dataset.lot);
      const t = a.querySelector('.left');
      if (lot && t) t.textContent = left(lot);
    }
  };
  const say = (text, bad) => {
    const m = $('message');
    m.textContent = text;
    m.className = bad ? 'bad' : '';
  };
  const socket = io('/board', { transports: ['websocket'] });
  socket.on('connect', () => {
    $('conn').textContent = 'live';
    $('conn').className = 'live';
    socket.emit('lots:list', {}, (ack) => {
      if (!ack.ok) return;
      for (const lot of ack.data) keep(lot);
      render();
      document.body.dataset.ready = '1';
    });
  });
  socket.on('disconnect', () => {
    $('conn').textContent = 'reconnecting';
    $('conn').className = '';
  });
  socket.on('lots:update', (changed) => {
    for (const lot of changed) keep(lot);
    render();
  });
  setInterval(tick, 1000);
  $('bid').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const units = Number($('bid-units').value);
    const req = { key: 'board:' + crypto.randomUUID(), lotId: $('bid-lot').value, card: $('bid-card').value.trim(), pin: $('bid-pin').value, units };
    $('bid-pin').value = '';
    say('sending your bid...', false);
    // The key is made once, before the first send: a retry after a timeout is the same bid.
    const send = (tries) => socket.timeout(10000).emit('board:bid', req, (err, ack) => {
      if (err) return tries > 0 ? send(tries - 1) : say('the store server did not answer: try again', true);
      if (ack.ok) say('your bid of ' + ack.data.units + ' is the high bid', false);
      else say(ack.error.message, true);
    });
    send(2);
  });
})();
`;
