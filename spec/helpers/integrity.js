// Byte integrity through a tunnel, both ways, with many streams at once (node, no modules).
//
//   node integrity.js server                 prints "port N", then serves until killed
//   node integrity.js client HOST:PORT STREAMS MAXBYTES [socks5|connect PROXYHOST:PROXYPORT]
//
// Each client stream sends "UP DOWN\n" and then UP random bytes, and half-closes. The server sends
// DOWN random bytes back as soon as the line has come, reads the upload to its end, and only then
// sends a trailer: the SHA-256 of what it received and of what it sent (hex, 129 bytes with the
// newline), and closes. So every stream also checks that a half-close travels end to end and that
// the answer behind it still arrives. The client compares both digests with its own and prints
// "ok STREAMS streams UP_BYTES up DOWN_BYTES down", or "FAIL ..." and exits 1. Streams 0 and 1
// move 0 and 1 bytes each way; the others random sizes up to MAXBYTES; the whole run must end in
// 60 s. socks5 reaches HOST:PORT through a SOCKS5 proxy, connect through an HTTP CONNECT one.
'use strict';
const net = require('net');
const crypto = require('crypto');

const [mode, ...args] = process.argv.slice(2);
const TRAILER = 129;

function serve() {
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    let head = Buffer.alloc(0);
    let upHash = null;
    let downHash = null;
    let upDone = false;
    let downDone = false;
    const finish = () => {
      if (!upDone || !downDone) return;
      sock.end(upHash.digest('hex') + downHash.digest('hex') + '\n');
    };
    const sendDown = (n) => {
      downHash = crypto.createHash('sha256');
      const step = () => {
        while (n > 0) {
          const chunk = crypto.randomBytes(Math.min(n, 65536));
          n -= chunk.length;
          downHash.update(chunk);
          if (!sock.write(chunk)) return sock.once('drain', step);
        }
        downDone = true;
        finish();
      };
      step();
    };
    sock.on('data', (d) => {
      if (upHash) return upHash.update(d);
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      const [, down] = head.subarray(0, nl).toString().split(' ').map(Number);
      upHash = crypto.createHash('sha256');
      upHash.update(head.subarray(nl + 1));
      sendDown(down);
    });
    sock.on('end', () => {
      upDone = true;
      if (upHash) finish();
      else sock.end();
    });
    sock.on('error', () => sock.destroy());
  });
  server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
}

// A connected socket to host:port, directly or through the proxy; calls done(err, sock, rest)
// where rest are bytes that came in behind the proxy's answer.
function dial(host, port, proxy, done) {
  if (!proxy) {
    const sock = net.connect(port, host, () => done(null, sock, Buffer.alloc(0)));
    sock.once('error', (e) => done(e));
    return;
  }
  const [kind, where] = proxy;
  const [phost, pport] = where.split(':');
  const sock = net.connect(+pport, phost);
  let buf = Buffer.alloc(0);
  let stage = 0;
  sock.once('error', (e) => done(e));
  sock.on('connect', () => {
    if (kind === 'connect') {
      sock.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
    } else {
      sock.write(Buffer.from([5, 1, 0]));
    }
  });
  const onData = (d) => {
    buf = Buffer.concat([buf, d]);
    if (kind === 'connect') {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.removeListener('data', onData);
      const status = buf.subarray(0, buf.indexOf('\r\n')).toString();
      if (!/^HTTP\/1\.[01] 200/.test(status)) return done(new Error('proxy answered ' + status));
      return done(null, sock, buf.subarray(end + 4));
    }
    if (stage === 0) {
      if (buf.length < 2) return;
      if (buf[0] !== 5 || buf[1] !== 0) return done(new Error('SOCKS5 method refused'));
      buf = buf.subarray(2);
      stage = 1;
      const req = Buffer.from([5, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
      host.split('.').forEach((b, i) => { req[4 + i] = +b; });
      req.writeUInt16BE(port, 8);
      sock.write(req);
    }
    if (stage === 1) {
      if (buf.length < 5) return;
      const alen = buf[3] === 1 ? 4 : buf[3] === 4 ? 16 : 1 + buf[4];
      if (buf.length < 6 + alen) return;
      sock.removeListener('data', onData);
      if (buf[1] !== 0) return done(new Error('SOCKS5 reply ' + buf[1]));
      return done(null, sock, buf.subarray(6 + alen));
    }
  };
  sock.on('data', onData);
}

function client() {
  const [target, streamsArg, maxArg, kind, where] = args;
  const [host, portText] = target.split(':');
  const port = +portText;
  const streams = +streamsArg;
  const max = +maxArg;
  const proxy = kind ? [kind, where] : null;
  let pending = streams;
  let upTotal = 0;
  let downTotal = 0;
  const fail = (msg) => {
    console.log('FAIL ' + msg);
    process.exit(1);
  };
  setTimeout(() => fail(`${pending} of ${streams} streams unfinished after 60 s`), 60000).unref();
  for (let i = 0; i < streams; i++) {
    const up = i < 2 ? i : crypto.randomInt(max + 1);
    const down = i < 2 ? i : crypto.randomInt(max + 1);
    upTotal += up;
    downTotal += down;
    dial(host, port, proxy, (err, sock, rest) => {
      if (err) return fail(`stream ${i}: ${err.message}`);
      const sent = crypto.createHash('sha256');
      const got = [rest];
      sock.on('data', (d) => got.push(d));
      sock.on('error', (e) => fail(`stream ${i}: ${e.message}`));
      sock.on('end', () => {
        const all = Buffer.concat(got);
        if (all.length !== down + TRAILER) {
          return fail(`stream ${i}: ${all.length} bytes came back, ${down + TRAILER} expected`);
        }
        const trailer = all.subarray(down).toString();
        const recvHash = crypto.createHash('sha256').update(all.subarray(0, down)).digest('hex');
        if (trailer.slice(0, 64) !== sent.digest('hex')) {
          return fail(`stream ${i}: the server received other bytes than were sent (${up} up)`);
        }
        if (trailer.slice(64, 128) !== recvHash) {
          return fail(`stream ${i}: other bytes came back than the server sent (${down} down)`);
        }
        sock.end();
        if (--pending === 0) {
          console.log(`ok ${streams} streams ${upTotal} up ${downTotal} down`);
          process.exit(0);
        }
      });
      sock.write(`${up} ${down}\n`);
      let left = up;
      const step = () => {
        while (left > 0) {
          const chunk = crypto.randomBytes(Math.min(left, 65536));
          left -= chunk.length;
          sent.update(chunk);
          if (!sock.write(chunk)) return sock.once('drain', step);
        }
        sock.end(); // half-close: the trailer comes only after the server sees it
      };
      step();
    });
  }
}

if (mode === 'server') serve();
else if (mode === 'client') client();
else {
  console.error('usage: integrity.js server | client HOST:PORT STREAMS MAXBYTES [socks5|connect H:P]');
  process.exit(2);
}
