-- luacheck: std +busted
-- The WebSocket carrier against real peers: warren processes over ws:// and wss://, node (its
-- `ws` package and spec/helpers/integrity.js), curl, nginx fronting the relay, an HTTP CONNECT
-- proxy (tinyproxy), and goflyway's own manual test.
local warren = require("warren")
local uv = require("luv")
local bit = require("bit")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")
local children = require("helpers.children")

local node_env = { NODE_PATH = "/usr/share/nodejs" }
local integrity_runs = require("helpers.integrity")
local integrity_js = integrity_runs.js
-- Streams per integrity run (each up to integrity_runs.max_bytes each way, random: about 6.5 MB
-- each way per run).
local streams = integrity_runs.streams

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local kids = children.new()
teardown(kids.stop_all)
local spawn, serve, start = kids.spawn, kids.serve, kids.start
local stop, stderr_of = children.stop, children.stderr_of

-- A TLS relay on a free port; returns it, its port and its certificate's fingerprint.
local function relay_with_tls(args)
  local relay, port = serve(args)
  local fp = wait.eventually(function() return stderr_of(relay):match("certificate (sha256:%x+)") end, 5000)
  assert(fp, "the relay printed no fingerprint: " .. stderr_of(relay))
  return relay, port, fp
end

-- The integrity server (spec/helpers/integrity.js). Returns the child and its port.
local function integrity_server()
  return kids.port_server({ "node", integrity_js, "server" }, "the integrity server")
end

local function integrity(runs)
  integrity_runs.run(spawn, runs)
end

-- A real WebSocket peer: node's ws package. `server` echoes every message and prints its port;
-- `client URL [PROXY]` sends 20 binary messages of growing size (through an HTTP CONNECT proxy
-- when given) and prints "echoed 20" once each came back unchanged.
local ws_js = [[
const WebSocket = require('ws'), http = require('http');
const [mode, url, proxy] = process.argv.slice(1);
const fail = (m) => { console.log(m); process.exit(1); };
if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('listening', () => console.log('port ' + wss.address().port));
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
} else {
  const message = (i) => Buffer.alloc(i * 3001 + 1, i);
  const talk = (socket) => {
    const ws = new WebSocket(url, socket ? { createConnection: () => socket } : {});
    let n = 0;
    ws.on('open', () => { for (let i = 0; i < 20; i++) ws.send(message(i)); });
    ws.on('message', (m) => {
      if (!Buffer.from(m).equals(message(n))) fail('message ' + n + ' came back changed');
      if (++n === 20) { console.log('echoed 20'); process.exit(0); }
    });
    ws.on('error', (e) => fail('error ' + e.message));
  };
  if (!proxy) talk(null);
  else {
    const [host, port] = proxy.split(':');
    const req = http.request({ host, port: +port, method: 'CONNECT', path: new URL(url).host });
    req.on('connect', (res, socket) => res.statusCode === 200 ? talk(socket) : fail('proxy: ' + res.statusCode));
    req.on('error', (e) => fail('error ' + e.message));
    req.end();
  }
  setTimeout(() => fail("no echo within 15 s"), 15000).unref();
}
]]

-- A TCP forwarder (node) that passes the first 4 KiB of each direction on PIECE bytes at a time,
-- 2 ms apart, and the rest as it comes: the upgrade, the 101 and the first frames arrive in
-- pieces. Prints "port N".
local dribble_js = [[
const net = require('net');
const [target, piece] = process.argv.slice(1).map(Number);
const pass = (from, to) => {
  let budget = 4096, busy = false;
  const queue = [];
  const pump = () => {
    const item = queue.shift();
    if (item === undefined) { busy = false; return; }
    busy = true;
    if (item === null) { to.end(); busy = false; return; }
    to.write(item.data);
    if (item.slow) setTimeout(pump, 2); else pump();
  };
  from.on('data', (d) => {
    while (d.length && budget > 0) {
      const n = Math.min(piece, budget, d.length);
      queue.push({ data: d.subarray(0, n), slow: true });
      d = d.subarray(n);
      budget -= n;
    }
    if (d.length) queue.push({ data: d, slow: false });
    if (!busy) pump();
  });
  from.on('end', () => { queue.push(null); if (!busy) pump(); });
};
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const relay = net.connect({ port: target, host: '127.0.0.1', allowHalfOpen: true });
  client.setNoDelay(true);
  relay.setNoDelay(true);
  pass(client, relay);
  pass(relay, client);
  const kill = () => { client.destroy(); relay.destroy(); };
  client.on('error', kill);
  relay.on('error', kill);
});
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
]]

local function ws_echo_server()
  return kids.port_server({ "node", "-e", ws_js, "server", env = node_env }, "node ws server")
end

-- What a real client sends first: a listener stands in for the relay and keeps the request head
-- of `warren -L ...` plus server_args(listener_port).
local function record_upgrade(server_args)
  local recorded
  local recorder, recorder_port = net.serve(function(peer)
    local got = ""
    peer:read_start(function(_, data)
      if not data then return peer:close() end
      got = got .. data
      if got:find("\r\n\r\n", 1, true) then recorded = recorded or got end
    end)
  end)
  local args = { "-L", "127.0.0.1:0:127.0.0.1:9" }
  for _, a in ipairs(server_args(recorder_port)) do args[#args + 1] = a end
  local client = start(args)
  local ok = wait.eventually(function() return recorded end, 10000)
  client:kill()
  client:wait(5000)
  recorder:close()
  assert(ok, "no upgrade was recorded: " .. stderr_of(client))
  return recorded
end

-- Reads one direction of a WebSocket connection: the HTTP head first (kept in .head), then
-- frames, unmasked, each {fin = bool, op = N, masked = bool, payload = bytes} appended to .frames.
local function ws_reader()
  local r = { head = nil, frames = {} }
  local buf = ""
  function r.feed(data)
    buf = buf .. data
    if not r.head then
      local stop_at = buf:find("\r\n\r\n", 1, true)
      if not stop_at then return end
      r.head, buf = buf:sub(1, stop_at + 3), buf:sub(stop_at + 4)
    end
    while #buf >= 2 do
      local b1, b2 = buf:byte(1, 2)
      local len, at = b2 % 128, 3
      if len == 126 then
        if #buf < 4 then return end
        len, at = buf:byte(3) * 256 + buf:byte(4), 5
      elseif len == 127 then
        if #buf < 10 then return end
        len = 0
        for i = 3, 10 do len = len * 256 + buf:byte(i) end
        at = 11
      end
      local masked = b2 >= 128
      local key = masked and buf:sub(at, at + 3)
      if masked then at = at + 4 end
      if #buf < at + len - 1 then return end
      local payload = buf:sub(at, at + len - 1)
      if masked then
        local out = {}
        for i = 1, #payload do
          out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
        end
        payload = table.concat(out)
      end
      r.frames[#r.frames + 1] = { fin = b1 >= 128, op = b1 % 16, masked = masked, payload = payload }
      buf = buf:sub(at + len)
    end
  end
  return r
end

-- A hand-made WebSocket peer on a connection to the relay, for what warren's own client never
-- sends: it presents `head` (a recorded real upgrade), then sends frames and reads the relay's.
local function raw_peer(port, head)
  local tcp = uv.new_tcp()
  assert(warren.await(function(resolve)
    tcp:connect("127.0.0.1", port, function(e) resolve(not e) end)
  end, 5000), "cannot connect to the relay")
  local reader, ended, waiting, taken = ws_reader(), false, nil, 0
  tcp:read_start(function(_, data)
    if data then reader.feed(data) else ended = true end
    if waiting then waiting() end
  end)
  tcp:write(head)
  local peer = {}
  -- Waits until pred() is true, the relay ends or timeout_ms passes.
  local function await(pred, timeout_ms)
    if pred() or ended then return end
    warren.await(function(resolve)
      waiting = function() if pred() or ended then resolve() end end
    end, timeout_ms or 5000)
    waiting = nil
  end
  function peer.answer_head()
    await(function() return reader.head end)
    return reader.head
  end
  -- The relay's next frame: fin, opcode, payload (nothing at its end or on timeout).
  function peer.frame(timeout_ms)
    await(function() return reader.frames[taken + 1] end, timeout_ms)
    local f = reader.frames[taken + 1]
    if not f then return end
    taken = taken + 1
    assert.is_false(f.masked, "a relay's frame was masked")
    return f.fin, f.op, f.payload
  end
  -- Sends one frame (payload under 126 bytes), masked unless unmasked is true.
  function peer.send(opcode, payload, unmasked)
    local key = unmasked and "" or "\55\121\3\200"
    local body = payload
    if not unmasked then
      local out = {}
      for i = 1, #payload do
        out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
      end
      body = table.concat(out)
    end
    tcp:write(string.char(0x80 + opcode, (unmasked and 0 or 0x80) + #payload) .. key .. body)
  end
  function peer.ended(timeout_ms)
    await(function() return false end, timeout_ms)
    return ended
  end
  function peer.close()
    if not tcp:is_closing() then tcp:close() end
  end
  return peer
end

-- A forwarder to the relay that reads both directions' frames as they pass: returns the server,
-- its port and {client = ws_reader, relay = ws_reader, client_end = bool, relay_end = bool} of
-- the latest connection.
local function ws_tap(relay_port)
  local seen = {}
  local server, port = net.serve(function(client)
    local relay = uv.new_tcp()
    local conn = { client = ws_reader(), relay = ws_reader() }
    seen.latest = conn
    client:read_stop()
    relay:connect("127.0.0.1", relay_port, function(err)
      if err then return client:close() end
      local function pipe(from, to, reader, end_key)
        from:read_start(function(_, data)
          if data then
            reader.feed(data)
            to:write(data)
          else
            conn[end_key] = true
            if not to:is_closing() then to:shutdown() end
          end
        end)
      end
      pipe(client, relay, conn.client, "client_end")
      pipe(relay, client, conn.relay, "relay_end")
    end)
  end)
  return server, port, seen
end

-- An HTTP answer without its Date field, to compare two answers of one site.
local function undated(answer)
  return (answer or ""):gsub("\r\nDate: [^\r]*", "")
end

describe("the WebSocket carrier", function()
  local k, dir, relay, relay_port, fp, pool, server, server_port
  setup(function()
    k = proc.key()
    dir = tmpdir()
    pool = net.free_range(2)
    relay, relay_port, fp = relay_with_tls({ "-k", k, "-v", "--tls", "--self-signed", dir .. "/relay.pem",
      "--ports", pool .. "-" .. pool + 1, "--outer-bind", "127.0.0.1", "--max-users-per-address", "0" })
    server, server_port = integrity_server()
  end)
  teardown(function()
    local r = stop(relay, server)
    assert.equal(0, r.code, r.stderr) -- a graceful end, leak-free under sanitizers
  end)

  local carriers = {
    { name = "ws:// (goflyway's -w)", server = function() return { "-w", "127.0.0.1:" .. relay_port } end,
      outer = 0, log = "WebSocket upgrade from 127%.0%.0%.1:%d+\n" },
    { name = "wss:// (a pinned self-signed certificate)",
      server = function() return { "wss://127.0.0.1:" .. relay_port, "--pin", fp } end,
      outer = 1, log = "WebSocket upgrade from 127%.0%.0%.1:%d+ %(over TLS%)" },
  }
  for _, carrier in ipairs(carriers) do
    it("carries -L, -D (SOCKS5 and HTTP CONNECT) and -R over " .. carrier.name .. ", " .. streams ..
      " streams each, SHA-256 both ways, each stream half-closed", function()
      local lport, dport, outer = net.free_port(), net.free_port(), pool + carrier.outer
      local args = { "-L", lport .. ":127.0.0.1:" .. server_port, "-D", tostring(dport),
        "-R", outer .. ":127.0.0.1:" .. server_port, "--name", "integrity", "-k", k }
      for _, a in ipairs(carrier.server()) do args[#args + 1] = a end
      local client = start(args)
      assert(net.wait_port(lport) and net.wait_port(dport), stderr_of(client))
      assert(wait.output(client, "relay port " .. outer, 10000), stderr_of(client))
      local target = "127.0.0.1:" .. server_port
      integrity({
        { label = "-L", target = "127.0.0.1:" .. lport },
        { label = "-D SOCKS5", target = target, via = { "socks5", "127.0.0.1:" .. dport } },
        { label = "-D CONNECT", target = target, via = { "connect", "127.0.0.1:" .. dport } },
        { label = "-R", target = "127.0.0.1:" .. outer },
        -- and a few large ones: frames of every length form, long runs of them
        { label = "-L, large streams", target = "127.0.0.1:" .. lport, streams = 4, max = 32 * 1024 * 1024 },
      })
      local c = stop(client)
      assert.equal(0, c.code, c.stderr)
      assert.matches(carrier.log, stderr_of(relay))
    end)
  end

  it("carries wr_loadgen stress over wss://: 200 connections for 2 s, every echoed byte verified", function()
    local loadgen = assert(os.getenv("WR_LOADGEN"), "WR_LOADGEN is not set (ctest sets it)")
    local echo_port, lport = net.free_port(), net.free_port()
    local client = start({ "-L", lport .. ":127.0.0.1:" .. echo_port, "wss://127.0.0.1:" .. relay_port,
      "--pin", fp, "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    local r = proc.run({ loadgen, "stress", "-t", "127.0.0.1:" .. lport, "-l", "127.0.0.1:" .. echo_port,
      "-c", "200", "-s", "8192", "-d", "2", "-i", "0", "-q" }, 40000)
    local summary = r.stdout:match("SUMMARY:[^\n]*") or ""
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("conns=200 ", summary)
    assert.matches(" errors=0 .* corrupt=0 ", summary)
    assert.matches("OK$", summary)
    assert.is_true(tonumber(summary:match(" msgs=(%d+)")) >= 200, summary)
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
  end)

  it("takes warren.client{server = 'ws://...'} and 'wss://...', and a half-close reaches the target", function()
    local counter, counter_port = net.count_server()
    local data = string.rep("half-close over WebSocket ", 40000) -- about 1 MiB
    for _, url in ipairs({ "ws://127.0.0.1:" .. relay_port .. "/any/path", "wss://127.0.0.1:" .. relay_port }) do
      local c = assert(warren.client({ server = url, key = k, pin = fp }))
      assert(c:connect())
      local fwd = assert(c:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. counter_port }))
      -- the count comes back only after the target saw this side's end
      local answer = net.exchange(fwd:port(), data, { half_close = true, timeout = 10000 })
      assert.equal("received " .. #data .. " bytes", answer, url)
      c:close()
    end
    counter:close()
  end)

  it("reconnects by itself after the relay restarts, and the next transfer is byte-exact", function()
    local k2 = proc.key()
    local first, port = serve({ "-k", k2 })
    local lport = net.free_port()
    local client = start({ "-w", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. port, "-k", k2 })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "before the restart", target = "127.0.0.1:" .. lport, streams = 20 } })
    stop(first)
    local again = start({ "serve", "127.0.0.1:" .. port, "-k", k2, "-v" })
    assert(wait.eventually(function() return stderr_of(again):find("relay listening on", 1, true) end, 10000),
      stderr_of(again))
    assert(wait.eventually(function() return stderr_of(client):find("reconnected to", 1, true) end, 20000),
      "the client did not reconnect: " .. stderr_of(client))
    integrity({ { label = "after the restart", target = "127.0.0.1:" .. lport, streams = 20 } })
    local c, r = stop(client, again)
    assert.equal(0, c.code, c.stderr)
    assert.equal(0, r.code, r.stderr)
    assert.matches("front door: WebSocket upgrade from 127%.0%.0%.1:", r.stderr)
  end)

  it("connects when the upgrade, the 101 and the first frames come a few bytes at a time", function()
    local dribbler, port = kids.port_server({ "node", "-e", dribble_js, tostring(relay_port), "7" }, "the forwarder")
    local ws_port, wss_port = net.free_port(), net.free_port()
    local ws = start({ "-w", "-L", ws_port .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. port, "-k", k })
    local wss = start({ "-L", wss_port .. ":127.0.0.1:" .. server_port, "wss://127.0.0.1:" .. port, "--pin", fp,
      "-k", k })
    assert(net.wait_port(ws_port) and net.wait_port(wss_port), stderr_of(ws) .. stderr_of(wss))
    integrity({
      { label = "ws, dribbled", target = "127.0.0.1:" .. ws_port, streams = 20 },
      { label = "wss, dribbled", target = "127.0.0.1:" .. wss_port, streams = 20 },
    })
    local a, b = stop(ws, wss)
    stop(dribbler)
    assert.equal(0, a.code, a.stderr)
    assert.equal(0, b.code, b.stderr)
  end)

  -- A connection upgraded by hand with a fresh recording of a real client's upgrade; the relay's
  -- first frame, the session's handshake answer, is read.
  local function upgraded()
    local head = record_upgrade(function(p) return { "-w", "127.0.0.1:" .. p, "-k", k } end)
    local peer = raw_peer(relay_port, head)
    assert.matches("^HTTP/1%.1 101 Switching Protocols\r\n", peer.answer_head())
    local fin, op, payload = peer.frame()
    assert.is_true(fin)
    assert.equal(2, op)
    assert.is_true(#payload > 0)
    return peer
  end

  it("answers a PING with a PONG, and closes with 1003 on text and 1002 on an unmasked frame", function()
    local peer = upgraded()
    peer.send(9, "are you there?")
    assert.same({ true, 10, "are you there?" }, { peer.frame() })
    peer.send(9, "")
    assert.same({ true, 10, "" }, { peer.frame() })
    peer.close()

    peer = upgraded()
    peer.send(1, "text is not what this carrier speaks")
    local fin, op, payload = peer.frame()
    assert.same({ true, 8, "\3\235" }, { fin, op, (payload or ""):sub(1, 2) }) -- 1003
    assert.is_true(peer.ended(5000))
    peer.close()

    peer = upgraded()
    peer.send(2, "unmasked", true)
    fin, op, payload = peer.frame()
    assert.same({ true, 8, "\3\234" }, { fin, op, (payload or ""):sub(1, 2) }) -- 1002
    assert.is_true(peer.ended(5000))
    peer.close()
  end)

  it("answers a CLOSE that comes before the session's handshake is done with a CLOSE", function()
    -- RFC 6455 5.5.1: an endpoint that receives a CLOSE and has sent none MUST send one back,
    -- also when the session behind it ends at once because its handshake did not finish.
    local peer = upgraded()
    peer.send(8, "\3\232")
    local fin, op = peer.frame()
    assert.same({ true, 8 }, { fin, op })
    assert.is_true(peer.ended(5000))
    peer.close()
  end)

  it("ends a session with a CLOSE each way: the client's first, then the relay's answer", function()
    local tap, tap_port, seen = ws_tap(relay_port)
    local lport = net.free_port()
    local client = start({ "-w", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. tap_port, "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "through the tap", target = "127.0.0.1:" .. lport, streams = 5, max = 16384 } })
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
    local conn = seen.latest
    assert(wait.eventually(function() return conn.client_end and conn.relay_end end, 5000), "a side did not end")
    tap:close()
    local last_in, last_out = conn.client.frames[#conn.client.frames], conn.relay.frames[#conn.relay.frames]
    assert.matches("^GET / HTTP/1%.1\r\n", conn.client.head)
    assert.matches("^HTTP/1%.1 101 ", conn.relay.head)
    for _, f in ipairs(conn.client.frames) do
      assert.is_true(f.masked and f.fin, "client frames are final and masked")
      assert.is_true(f.op == 2 or f.op == 8 or f.op == 10, "client opcode " .. f.op)
    end
    for _, f in ipairs(conn.relay.frames) do
      assert.is_true(not f.masked and f.fin, "relay frames are final and unmasked")
      assert.is_true(f.op == 2 or f.op == 8 or f.op == 10, "relay opcode " .. f.op)
    end
    assert.same({ 8, "\3\232" }, { last_in.op, last_in.payload:sub(1, 2) })
    assert.same({ 8, "\3\232" }, { last_out.op, last_out.payload:sub(1, 2) })
  end)

  it("puts the URL's path and --host-header into the upgrade request", function()
    local head = record_upgrade(function(p)
      return { "ws://127.0.0.1:" .. p .. "/some/path?x=1", "--host-header", "front.example", "-k", k }
    end)
    assert.matches("^GET /some/path%?x=1 HTTP/1%.1\r\n", head)
    assert.matches("\r\nHost: front%.example\r\n", head)
    assert.matches("\r\nUpgrade: websocket\r\n", head)
    assert.matches("\r\nSec%-WebSocket%-Version: 13\r\n", head)
    head = record_upgrade(function(p) return { "-w", "127.0.0.1:" .. p, "-k", k } end)
    assert.matches("^GET / HTTP/1%.1\r\nHost: 127%.0%.0%.1:%d+\r\n", head)
  end)

  it("says what the relay answered when the key is wrong", function()
    local r = proc.warren({ "-w", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. relay_port, "-k", proc.key() },
      { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches('the relay answered the WebSocket upgrade with "HTTP/1%.1 404 Not Found": wrong key', r.stderr)
    r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "wss://127.0.0.1:" .. relay_port, "--pin", fp,
      "-k", proc.key() }, { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches("answered the WebSocket upgrade with \"HTTP/1%.1 404", r.stderr)
  end)
end)

describe("a relay with -P DIR and the WebSocket carrier", function()
  local dir, relay, port, k, echo, echo_port
  setup(function()
    dir = tmpdir()
    write(dir .. "/index.html", "<h1>an ordinary site</h1>\n")
    k = proc.key()
    relay, port = serve({ "-k", k, "-v", "-P", dir })
    echo, echo_port = net.echo_server()
  end)
  teardown(function()
    local r = stop(relay)
    echo:close()
    assert.equal(0, r.code, r.stderr)
  end)

  it("takes -w clients, tells a raw client to use another carrier, and serves the site to curl", function()
    local c = assert(warren.client({ server = "ws://127.0.0.1:" .. port, key = k }))
    assert(c:connect())
    local fwd = assert(c:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    assert.equal("through the site's port", net.exchange(fwd:port(), "through the site's port", { want = 23 }))
    c:close()
    local raw = assert(warren.client({ server = "127.0.0.1:" .. port, key = k }))
    local ok, err = raw:connect()
    assert.is_nil(ok)
    assert.matches("plain text", err)
    assert.matches("use %-%-tls", err)
    local r = proc.run({ "curl", "-s", "-m", "5", "http://127.0.0.1:" .. port .. "/" })
    assert.equal("<h1>an ordinary site</h1>\n", r.stdout)
  end)

  it("gives the site's answer to a wrong key", function()
    local r = proc.warren({ "-w", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. port, "-k", proc.key() },
      { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches('answered the WebSocket upgrade with "HTTP/1%.1 200 OK"', r.stderr)
  end)

  -- The site's answer to `request`, read until the site closes (this side half-closes first).
  local function site_answer(request)
    return net.exchange(port, request, { half_close = true, timeout = 5000 })
  end

  it("gives a bogus bearer token and a replayed upgrade exactly what the site gives", function()
    local function upgrade(auth)
      return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" .. port .. "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" ..
        (auth and ("Authorization: Bearer " .. auth .. "\r\n") or "") .. "\r\n"
    end
    local plain = site_answer(upgrade(nil))
    assert.matches("^HTTP/1%.1 200 OK\r\n.*<h1>an ordinary site</h1>\n$", plain)
    local bogus = site_answer(upgrade(string.rep("QUJD", 60)))
    assert.equal(undated(plain), undated(bogus))

    local recorded = record_upgrade(function(recorder_port) return { "-w", "127.0.0.1:" .. recorder_port, "-k", k } end)
    assert.matches("^GET / HTTP/1%.1\r\n.*Authorization: Bearer [%w+/=]+\r\n", recorded)
    -- Its first showing is a real client's: 101. Shown again, it is a replay: the site's answer.
    local first = net.exchange(port, recorded, { timeout = 2000, want = 12 })
    assert.matches("^HTTP/1%.1 101", first)
    local replay = site_answer(recorded)
    local without_token = site_answer((recorded:gsub("Authorization: [^\r]*\r\n", "")))
    assert.matches("^HTTP/1%.1 200 OK\r\n", replay)
    assert.equal(undated(without_token), undated(replay))
  end)
end)

-- nginx in front of the relay, as its documentation proxies WebSocket: the tunnel at /tunnel,
-- nginx's own pages everywhere else.
describe("the WebSocket carrier behind nginx", function()
  it("carries -L byte-exact through nginx's /tunnel, and nginx answers its other paths itself", function()
    local nginx_bin = "/usr/sbin/nginx"
    if not uv.fs_stat(nginx_bin) then return pending("nginx is not installed") end
    local k = proc.key()
    local relay, relay_port = serve({ "-k", k, "-v" })
    local server, server_port = integrity_server()
    local dir, nginx_port = tmpdir(), net.free_port()
    -- nginx's workers drop root's rights: they must be able to look into the directory
    assert(uv.fs_chmod(dir, tonumber("755", 8)))
    assert(uv.fs_mkdir(dir .. "/html", tonumber("755", 8)))
    write(dir .. "/nginx.conf", ([[
daemon off;
worker_processes 1;
pid DIR/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path DIR/tmp;
  proxy_temp_path DIR/tmp;
  fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp;
  scgi_temp_path DIR/tmp;
  server {
    listen 127.0.0.1:NGINX_PORT;
    root DIR/html;
    location /tunnel {
      proxy_pass http://127.0.0.1:RELAY_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
    }
  }
}
]]):gsub("DIR", dir):gsub("NGINX_PORT", nginx_port):gsub("RELAY_PORT", relay_port))
    local nginx = spawn({ nginx_bin, "-p", dir, "-e", "stderr", "-c", dir .. "/nginx.conf" })
    assert(net.wait_port(nginx_port), "nginx did not start: " .. stderr_of(nginx))
    local lport = net.free_port()
    local client = start({ "-L", lport .. ":127.0.0.1:" .. server_port, "ws://127.0.0.1:" .. nginx_port .. "/tunnel",
      "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "-L through nginx", target = "127.0.0.1:" .. lport } })
    local other = proc.run({ "curl", "-s", "-i", "-m", "5", "http://127.0.0.1:" .. nginx_port .. "/other" })
    assert.matches("^HTTP/1%.1 404 Not Found\r\nServer: nginx", other.stdout)
    assert.matches("<center>nginx", other.stdout)
    local c, r = stop(client, relay)
    stop(nginx, server)
    assert.equal(0, c.code, c.stderr)
    assert.equal(0, r.code, r.stderr)
    assert.matches("front door: WebSocket upgrade from 127%.0%.0%.1:", r.stderr)
  end)
end)

-- An HTTP proxy with CONNECT between client and relay (tinyproxy, Basic auth).
describe("the WebSocket carrier through an HTTP CONNECT proxy", function()
  -- (--proxy-user is -D's: the flag wanted is --proxy itself)
  local has_proxy_flag = proc.warren({ "--help" }).stdout:find("\n%s+%-%-proxy%s")

  it("reaches the relay through --proxy and HTTPS_PROXY, and goes direct for NO_PROXY and raw TCP", function()
    if not has_proxy_flag then return pending("--proxy not in this build") end
    local tinyproxy_bin = "/usr/bin/tinyproxy"
    if not uv.fs_stat(tinyproxy_bin) then return pending("tinyproxy is not installed") end
    local k = proc.key()
    local dir = tmpdir()
    local relay, relay_port, fp = relay_with_tls({ "-k", k, "--tls", "--self-signed", dir .. "/relay.pem" })
    local server, server_port = integrity_server()
    local tp_port = net.free_port()
    write(dir .. "/tinyproxy.conf", table.concat({
      "Port " .. tp_port, "Listen 127.0.0.1", "Timeout 60", "MaxClients 200", "Allow 127.0.0.1",
      "BasicAuth warren s3cret", "LogLevel Connect", "" }, "\n"))
    local tinyproxy = spawn({ tinyproxy_bin, "-d", "-c", dir .. "/tinyproxy.conf" })
    assert(net.wait_port(tp_port), "tinyproxy did not start: " .. table.concat({ tinyproxy:output() }))
    local function connects()
      local log = table.concat({ tinyproxy:output() })
      return select(2, log:gsub("CONNECT 127%.0%.0%.1:" .. relay_port, ""))
    end
    local proxy_url = "http://warren:s3cret@127.0.0.1:" .. tp_port

    -- --proxy, with the ws:// carrier
    local lport = net.free_port()
    local client = start({ "-L", lport .. ":127.0.0.1:" .. server_port, "ws://127.0.0.1:" .. relay_port,
      "--proxy", proxy_url, "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "-L through --proxy", target = "127.0.0.1:" .. lport } })
    stop(client)
    assert.is_true(connects() >= 1, "tinyproxy saw no CONNECT to the relay")

    -- HTTPS_PROXY from the environment, with wss://
    local before = connects()
    lport = net.free_port()
    client = spawn({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. server_port,
      "wss://127.0.0.1:" .. relay_port, "--pin", fp, "-k", k, env = { HTTPS_PROXY = proxy_url } })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "-L through HTTPS_PROXY", target = "127.0.0.1:" .. lport, streams = 20 } })
    stop(client)
    assert.is_true(connects() > before, "HTTPS_PROXY was not used")

    -- NO_PROXY names the relay: straight there, though the proxy named is dead
    lport = net.free_port()
    client = spawn({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. server_port,
      "wss://127.0.0.1:" .. relay_port, "--pin", fp, "-k", k,
      env = { HTTPS_PROXY = "http://127.0.0.1:" .. net.free_port(), NO_PROXY = "127.0.0.1" } })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "-L with NO_PROXY", target = "127.0.0.1:" .. lport, streams = 20 } })
    stop(client)

    -- the raw carrier takes no proxy from the environment
    lport = net.free_port()
    client = spawn({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. relay_port,
      "-k", k, env = { HTTPS_PROXY = "http://127.0.0.1:" .. net.free_port() } })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "raw -L beside HTTPS_PROXY", target = "127.0.0.1:" .. lport, streams = 5 } })
    stop(client)

    -- a wrong proxy password: the proxy's refusal, said as it came (tinyproxy's is a 401)
    local r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "ws://127.0.0.1:" .. relay_port, "--proxy",
      "http://warren:wrong@127.0.0.1:" .. tp_port, "-k", k }, { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches('the proxy answered CONNECT with "HTTP/1%.%d 40[17] ', r.stderr)
    stop(relay, server, tinyproxy)
  end)
end)

-- goflyway's README, its manual WebSocket test: an echo server, `goflyway -k testkey -w :8100`,
-- `goflyway -k testkey -w -L :1080 -D 127.0.0.1:8100`, and a WebSocket client through the local
-- proxy. Ports are free loopback ones; the relay binds 127.0.0.1 where the README's `:8100`
-- binds every interface.
describe("goflyway's manual WebSocket test", function()
  it("warren -k testkey -w :PORT, warren -k testkey -w -L :LPORT -D 127.0.0.1:PORT, a ws client", function()
    local echo, echo_port = ws_echo_server()
    local relay_port, lport = net.free_port(), net.free_port()
    local relay = start({ "-k", "testkey", "-w", "127.0.0.1:" .. relay_port, "-v" })
    assert(net.wait_port(relay_port), stderr_of(relay))
    local client = start({ "-k", "testkey", "-w", "-L", ":" .. lport, "-D", "127.0.0.1:" .. relay_port })
    assert(net.wait_port(lport), stderr_of(client))
    local r = proc.run({ "node", "-e", ws_js, "client", "ws://127.0.0.1:" .. echo_port .. "/",
      "127.0.0.1:" .. lport, env = node_env }, 20000)
    assert.equal("echoed 20\n", r.stdout)
    local c, rl = stop(client, relay)
    stop(echo)
    assert.equal(0, c.code, c.stderr)
    assert.equal(0, rl.code, rl.stderr)
    assert.matches("front door: WebSocket upgrade from 127%.0%.0%.1:", rl.stderr)
  end)
end)
