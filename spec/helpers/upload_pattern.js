// Large uploads that say where they went wrong (node, no modules).
//
//   node upload_pattern.js server                      prints "port N", then serves until killed
//   node upload_pattern.js client HOST:PORT BYTES STREAMS
//
// Each client stream sends BYTES (a multiple of 4) as fast as it can: the 4-byte big-endian index
// of every word, so a byte out of place names where it came from. The server reads each stream to
// its end and answers one line: "ok N" when all N bytes came in order, else "bad at BYTE: the
// bytes of BYTE2 (N in all)" for the first word out of place. The client prints every stream's
// line and exits 1 unless all are "ok BYTES".
'use strict';
const net = require('net');

const [mode, target, bytesArg, streamsArg] = process.argv.slice(2);

if (mode === 'server') {
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    let pos = 0;
    let bad = null;
    let carry = Buffer.alloc(0);
    sock.on('data', (d) => {
      const data = carry.length ? Buffer.concat([carry, d]) : d;
      let i = 0;
      for (; i + 4 <= data.length; i += 4, pos += 4) {
        const word = data.readUInt32BE(i);
        if (!bad && word !== pos / 4) bad = `bad at ${pos}: the bytes of ${word * 4}`;
      }
      carry = data.subarray(i);
    });
    sock.on('end', () => sock.end((bad ? `${bad} (${pos + carry.length} in all)` : `ok ${pos + carry.length}`) + '\n'));
    sock.on('error', () => sock.destroy());
  });
  server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
} else {
  const [host, port] = target.split(':');
  const bytes = Number(bytesArg);
  const data = Buffer.alloc(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) data.writeUInt32BE(i / 4, i);
  let left = Number(streamsArg);
  let failed = false;
  for (let s = 0; s < Number(streamsArg); s++) {
    let answer = '';
    const sock = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => sock.end(data));
    sock.on('data', (d) => { answer += d; });
    sock.on('error', (e) => { answer = answer || 'error ' + e.message + '\n'; });
    sock.on('close', () => {
      if (answer !== `ok ${bytes}\n`) failed = true;
      process.stdout.write(`stream ${s}: ${answer || 'no answer\n'}`);
      if (--left === 0) process.exit(failed ? 1 : 0);
    });
  }
  setTimeout(() => { console.log('not done within 60 s'); process.exit(1); }, 60000).unref();
}
