// An HTTP/1.1 reverse proxy that misbehaves on purpose, in front of a relay (node, no modules).
//
//   node fault_proxy.js RELAY_PORT SEED MODE [RECORD_FILE]      prints "port N", serves until killed
//
// MODE faults: each request, chosen at random from SEED, is passed on, or
//   drop       its connection is closed before the relay sees it
//   delay      passed on 50 to 400 ms late
//   duplicate  sent to the relay twice (the copy on a connection of its own); one answer comes back
//   reorder    an upstream POST is held until the next one has gone (or 300 ms passed)
//   reset      the connection is reset once part of the answer came back (part of its head, or
//              the head and the first piece of a streaming body)
// Every kind shows at least once: the first five requests that may take any fault take the five
// kinds, in an order drawn from SEED; the rest draw at random (one in two passes unharmed).
// In MODE faults, the session's first request (a POST at offset 0) is never duplicated or reset:
// MODE first-reset and first-duplicate do that to its first showing alone (the copy goes first, and the request
// itself once the copy's answer came), and pass everything else.
// MODE buffer: nothing is lost, but every answer is held until it is whole, as a buffering front
// does, and then passed on with a Content-Length. MODE pass: nothing happens.
// Each request is logged on stdout ("request MS ms METHOD k=KIND o=OFFSET N bytes"), and each
// fault as "fault KIND METHOD". With RECORD_FILE, the raw bytes of the
// first POST for an offset past 0 are written there once its answer is a 200.
'use strict';
const http = require('http');
const fs = require('fs');

const [relayPort, seedArg, mode, recordFile] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0;
// mulberry32: a small seeded generator, so a failing run can be repeated
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);
let recorded = !recordFile;

const say = (line) => process.stdout.write(line + '\n');

// The head and body as they would travel: for the recording.
const raw = (req, body) => {
  let head = `${req.method} ${req.url} HTTP/1.1\r\n`;
  for (let i = 0; i < req.rawHeaders.length; i += 2) head += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
  return Buffer.concat([Buffer.from(head + '\r\n'), body]);
};

// Sends req (with body) to the relay; calls onAnswer(res) or onError().
const toRelay = (req, body, opts, onAnswer, onError) => {
  const up = http.request({
    host: '127.0.0.1', port: Number(relayPort), method: req.method, path: req.url,
    headers: req.headers, agent: opts.ownConnection ? false : agent,
  }, onAnswer);
  up.on('error', onError);
  up.end(body);
  return up;
};

const pass = (req, res, body, fault) => {
  const up = toRelay(req, body, {}, (answer) => {
    const headers = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (!hopByHop.has(name)) headers[name] = value;
    }
    if (fault === 'reset') {
      // Part of the answer, then the connection is gone.
      const sock = res.socket;
      const head = `HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}\r\n`;
      if (answer.headers['transfer-encoding'] !== 'chunked') {
        sock.write(head.slice(0, 12 + Math.floor(random() * (head.length - 12))));
        return sock.destroy();
      }
      answer.once('data', (piece) => {
        res.writeHead(answer.statusCode, headers);
        res.write(piece.subarray(0, 1 + Math.floor(random() * piece.length)));
        setTimeout(() => sock.destroy(), 20);
        up.destroy();
      });
      return;
    }
    if (mode === 'buffer') {
      const parts = [];
      answer.on('data', (d) => parts.push(d));
      answer.on('end', () => {
        const whole = Buffer.concat(parts);
        headers['content-length'] = whole.length;
        res.writeHead(answer.statusCode, headers);
        res.end(whole);
      });
      return;
    }
    if (answer.headers['content-length'] !== undefined) headers['content-length'] = answer.headers['content-length'];
    res.writeHead(answer.statusCode, headers);
    res.flushHeaders();
    answer.on('data', (d) => res.write(d));
    answer.on('end', () => res.end());
    if (!recorded && req.method === 'POST' && answer.statusCode === 200 && !/[?&]o=0(&|$)/.test(req.url)) {
      recorded = true;
      fs.writeFileSync(recordFile, raw(req, body));
    }
  }, () => res.socket.destroy());
  // The user went away: so does the request to the relay.
  res.on('close', () => { if (!res.writableFinished) up.destroy(); });
};

// The kinds still owed their first showing, shuffled (Fisher-Yates) from SEED.
const owed = ['drop', 'delay', 'duplicate', 'reorder', 'reset'];
for (let i = owed.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [owed[i], owed[j]] = [owed[j], owed[i]];
}

const started = Date.now();
let firstDone = false; // first-reset and first-duplicate touch the first showing only
let held = null; // a POST waiting for the next one: {go, timer}

const handle = (req, res, body) => {
  const token = (name) => (req.url.match(new RegExp('[?&]' + name + '=([^&]*)')) || [])[1];
  say(`request ${Date.now() - started} ms ${req.method} k=${token('k')} o=${token('o')} ${body.length} bytes`);
  const first = req.method === 'POST' && /[?&]o=0(&|$)/.test(req.url);
  const r = mode === 'faults' ? random() : 1;
  let fault = r < 0.1 ? 'drop' : r < 0.2 ? 'delay' : r < 0.3 ? 'duplicate'
    : r < 0.4 ? 'reorder' : r < 0.5 ? 'reset' : null;
  if (mode === 'faults' && !first && owed.length) fault = owed.shift();
  if (first && (fault === 'duplicate' || fault === 'reset')) fault = null;
  const once = first && !firstDone;
  if (first) firstDone = true;
  if (once && mode === 'first-reset') fault = 'reset';
  if (once && mode === 'first-duplicate') {
    say('fault duplicate POST');
    toRelay(req, body, { ownConnection: true }, (answer) => {
      answer.resume();
      answer.on('end', () => pass(req, res, body));
    }, () => req.socket.destroy());
    return;
  }
  if (fault === 'drop') {
    say('fault drop ' + req.method);
    return req.socket.destroy();
  }
  if (fault === 'delay') {
    say('fault delay ' + req.method);
    return setTimeout(() => pass(req, res, body), 50 + random() * 350);
  }
  if (fault === 'duplicate') {
    say('fault duplicate ' + req.method);
    const copy = toRelay(req, body, { ownConnection: true }, (answer) => answer.resume(), () => {});
    setTimeout(() => copy.destroy(), 2000);
    return pass(req, res, body);
  }
  if (fault === 'reset') say('fault reset ' + req.method);
  if (req.method === 'POST' && (fault === 'reorder' || held)) {
    const go = () => pass(req, res, body, fault);
    if (!held) {
      held = { go, timer: setTimeout(() => { held = null; go(); }, 300) };
      return;
    }
    const earlier = held;
    held = null;
    clearTimeout(earlier.timer);
    say('fault reorder POST');
    go();
    return earlier.go();
  }
  pass(req, res, body, fault);
};

const server = http.createServer((req, res) => {
  const parts = [];
  req.socket.setNoDelay(true);
  req.on('data', (d) => parts.push(d));
  req.on('end', () => handle(req, res, Buffer.concat(parts)));
});
server.keepAliveTimeout = 30000;
server.requestTimeout = 0;
server.headersTimeout = 60000;
server.listen(0, '127.0.0.1', () => say('port ' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
