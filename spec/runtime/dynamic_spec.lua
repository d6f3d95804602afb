-- luacheck: std +busted
-- warren -D (SOCKS5, SOCKS4/4a, HTTP proxy) through warren serve, with curl, node's ws and ssh as
-- the real clients, and goflyway's command lines. Targets run in this process (luv) or as
-- children, all on loopback.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local key = proc.key

local function start(args)
  local spec = { proc.warren_bin }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  return proc.start(spec)
end

local function stop(...)
  for _, child in ipairs({ ... }) do child:kill() end
  local results = {}
  for i, child in ipairs({ ... }) do results[i] = child:wait(5000) end
  return unpack(results)
end

-- `warren serve` and a `warren -D` client; returns relay, client, proxy port, relay port.
local function proxy(client_extra, k)
  k = k or key()
  local relay_port, proxy_port = net.free_port(), net.free_port()
  local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k })
  assert(net.wait_port(relay_port), "relay did not start")
  local args = { "-D", tostring(proxy_port), "127.0.0.1:" .. relay_port, "-k", k }
  for _, a in ipairs(client_extra or {}) do args[#args + 1] = a end
  local client = start(args)
  assert(net.wait_port(proxy_port), "proxy did not start")
  return relay, client, proxy_port, relay_port
end

local http_server = net.http_server

local function curl(...)
  local spec = { "curl", "-sS", "-m", "10" }
  for _, a in ipairs({ ... }) do spec[#spec + 1] = a end
  return proc.run(spec, 20000)
end

describe("warren -D", function()
  local web, web_port, seen, relay, client, port
  setup(function()
    web, web_port, seen = http_server()
    relay, client, port = proxy()
  end)
  teardown(function()
    local c, r = stop(client, relay)
    web:close()
    assert.equal(0, c.code)
    assert.equal(0, r.code)
  end)

  it("serves curl over SOCKS5 (names resolved by the relay or locally), SOCKS4a and SOCKS4", function()
    for _, scheme in ipairs({ "socks5h", "socks5", "socks4a", "socks4" }) do
      local r = curl("-x", scheme .. "://127.0.0.1:" .. port, "http://localhost:" .. web_port .. "/" .. scheme)
      assert.equal(0, r.code, scheme .. ": " .. r.stderr)
      assert.equal("hello /" .. scheme .. "\n", r.stdout)
    end
  end)

  it("serves curl as an HTTP proxy: absolute URLs rewritten to origin form, and CONNECT", function()
    local before = #seen
    local r = curl("-x", "http://127.0.0.1:" .. port, "-H", "Proxy-Connection: keep-alive",
      "http://127.0.0.1:" .. web_port .. "/plain?x=1")
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello /plain?x=1\n", r.stdout)
    local head = seen[before + 1]
    assert.matches("^GET /plain%?x=1 HTTP/1%.1\r\n", head)
    assert.matches("\r\nHost: 127%.0%.0%.1:" .. web_port .. "\r\n", head)
    assert.matches("\r\nConnection: close\r\n\r\n$", head)
    assert.is_nil(head:find("Proxy-", 1, true))

    r = curl("-p", "-x", "http://127.0.0.1:" .. port, "http://127.0.0.1:" .. web_port .. "/tunnelled")
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello /tunnelled\n", r.stdout)
    assert.matches("^GET /tunnelled HTTP/1%.1\r\n", seen[#seen]) -- CONNECT: untouched bytes
  end)

  it("reaches an IPv6 target", function()
    local web6, port6 = http_server(nil, "::1")
    if not web6 then return pending("no IPv6 on loopback: " .. tostring(port6)) end
    for _, args in ipairs({ { "-x", "socks5h://127.0.0.1:" .. port }, { "-x", "socks5://127.0.0.1:" .. port },
      { "-p", "-x", "http://127.0.0.1:" .. port }, { "-x", "http://127.0.0.1:" .. port } }) do
      args[#args + 1] = "http://[::1]:" .. port6 .. "/six"
      local r = curl(unpack(args))
      assert.equal(0, r.code, table.concat(args, " ") .. ": " .. r.stderr)
      assert.equal("hello /six\n", r.stdout)
    end
    web6:close()
  end)

  it("answers a refused target with each protocol's own code", function()
    local closed = "127.0.0.1:" .. net.free_port()
    local r = curl("-x", "socks5h://127.0.0.1:" .. port, "http://" .. closed .. "/")
    assert.equal(97, r.code)
    assert.matches("%(5%)", r.stderr) -- 0x05 connection refused
    r = curl("-x", "socks4://127.0.0.1:" .. port, "http://" .. closed .. "/")
    assert.equal(97, r.code)
    assert.matches("%(91%)", r.stderr) -- 0x5B rejected
    r = curl("-p", "-x", "http://127.0.0.1:" .. port, "http://" .. closed .. "/")
    assert.equal(56, r.code)
    assert.matches("CONNECT tunnel failed, response 502", r.stderr)
    r = curl("-x", "http://127.0.0.1:" .. port, "-w", "%{http_code}", "-o", "/dev/null", "http://" .. closed .. "/")
    assert.equal("502", r.stdout)
  end)

  it("answers malformed requests with an error and keeps serving", function()
    local function still_serves()
      local r = curl("-x", "socks5h://127.0.0.1:" .. port, "http://127.0.0.1:" .. web_port .. "/next")
      assert.equal(0, r.code, r.stderr)
      assert.equal("hello /next\n", r.stdout)
    end
    -- garbage (a TLS hello to a proxy port)
    assert.matches("^HTTP/1%.1 400 ", net.exchange(port, "\22\3\1\0\5hello"))
    still_serves()
    -- truncated SOCKS5 (the method answer comes, then the close) and SOCKS4 requests
    assert.equal("\5\0", net.exchange(port, "\5\1\0\5\1\0", { half_close = true }))
    assert.equal("", net.exchange(port, "\4\1\0", { half_close = true }))
    still_serves()
    -- SOCKS5 BIND and UDP ASSOCIATE: command not supported
    assert.equal("\5\0\5\7\0\1\0\0\0\0\0\0", net.exchange(port, "\5\1\0\5\2\0\1\127\0\0\1\0\80"))
    assert.equal("\5\0\5\7\0\1\0\0\0\0\0\0", net.exchange(port, "\5\1\0\5\3\0\1\127\0\0\1\0\80"))
    -- an HTTP head over 8 KiB, and a request that is not a proxy request
    local reply = net.exchange(port, "GET http://127.0.0.1/ HTTP/1.1\r\nX-Pad: " .. string.rep("a", 9000))
    assert.matches("^HTTP/1%.1 431 ", reply)
    assert.matches("^HTTP/1%.1 400 ", net.exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    still_serves()
  end)
end)

describe("warren -D with --proxy-user", function()
  it("requires the username and password from SOCKS5 and HTTP clients and refuses SOCKS4", function()
    local web, web_port = http_server()
    local relay, client, port = proxy({ "--proxy-user", "alice:s3cret" })
    local url = "http://127.0.0.1:" .. web_port .. "/auth"
    local r = curl("-x", "socks5h://alice:s3cret@127.0.0.1:" .. port, url)
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello /auth\n", r.stdout)
    r = curl("-x", "socks5h://alice:wrong@127.0.0.1:" .. port, url)
    assert.equal(97, r.code)
    assert.matches("rejected", r.stderr)
    r = curl("-x", "socks5h://127.0.0.1:" .. port, url) -- no credentials offered
    assert.equal(97, r.code)
    r = curl("-x", "http://127.0.0.1:" .. port, "-U", "alice:s3cret", url)
    assert.equal("hello /auth\n", r.stdout)
    r = curl("-x", "http://127.0.0.1:" .. port, "-U", "alice:nope", "-w", "%{http_code}", "-o", "/dev/null", url)
    assert.equal("407", r.stdout)
    r = curl("-p", "-x", "http://127.0.0.1:" .. port, url)
    assert.equal(56, r.code)
    assert.matches("407", r.stderr)
    r = curl("-x", "socks4://127.0.0.1:" .. port, url)
    assert.equal(97, r.code)
    stop(client, relay)
    web:close()
  end)
end)

-- An origin that keeps every byte it receives, answers once the first head is in, and closes
-- only at the proxy's EOF, so nothing sent its way can go unrecorded.
local function recording_origin()
  local got = { bytes = "", closed = false }
  local server, port = assert(net.serve(function(peer)
    local answered = false
    peer:read_start(function(_, data)
      if not data then
        got.closed = true
        return peer:shutdown(function() peer:close() end)
      end
      got.bytes = got.bytes .. data
      if not answered and got.bytes:find("\r\n\r\n", 1, true) then
        answered = true
        peer:write("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
      end
    end)
  end))
  return server, port, got
end

describe("warren -D as a plain HTTP proxy", function()
  it("forwards one request and its body, never a pipelined one with the proxy password", function()
    local origin, origin_port, got = recording_origin()
    local relay, client, port = proxy({ "--proxy-user", "alice:s3cret" })
    local url = "http://127.0.0.1:" .. origin_port
    local auth = "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"
    local second = "GET " .. url .. "/second HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. auth .. "\r\n"
    for _, first in ipairs({
      "GET " .. url .. "/first HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. auth .. "\r\n",
      "POST " .. url .. "/form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n" .. auth .. "\r\nhello",
    }) do
      got.bytes, got.closed = "", false
      local reply = net.exchange(port, first .. second .. second, { half_close = true })
      assert.matches("^HTTP/1%.1 200 OK\r\n.*ok\n$", reply)
      assert.is_truthy(wait.eventually(function() return got.closed end))
      assert.is_nil(got.bytes:find("Proxy-Authorization", 1, true), got.bytes)
      assert.is_nil(got.bytes:find("/second", 1, true), got.bytes)
      local _, heads = got.bytes:gsub("HTTP/1%.1\r\n", "")
      assert.equal(1, heads, got.bytes)
      if first:find("^POST") then assert.matches("\r\n\r\nhello$", got.bytes) end
    end
    -- a body of unknown length cannot be told from what follows it: refused before any dial
    got.bytes = ""
    local reply = net.exchange(port, "POST " .. url .. "/ HTTP/1.1\r\n" .. auth ..
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" .. second)
    assert.matches("^HTTP/1%.1 411 ", reply)
    assert.equal("", got.bytes)
    stop(client, relay)
    origin:close()
  end)
end)

describe("warren serve --hooks examples/acl.lua", function()
  it("refuses -D requests for this host in every address form", function()
    local k, relay_port, port = key(), net.free_port(), net.free_port()
    local acl = proc.source_dir .. "/examples/acl.lua"
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k, "--hooks", acl })
    assert(net.wait_port(relay_port), "relay did not start")
    local client = start({ "-D", tostring(port), "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(port), "proxy did not start")
    for _, host in ipairs({ "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::]", "[0:0:0:0:0:FFFF:7F00:0001]", "[::1]",
      "127.0.0.1", "0.0.0.0" }) do
      local url = "http://" .. host .. ":80/"
      local r = curl("-x", "http://127.0.0.1:" .. port, "-w", " %{http_code}", url)
      assert.matches("not a public address .* 403$", r.stdout, host)
      r = curl("-x", "socks5h://127.0.0.1:" .. port, url)
      assert.equal(97, r.code, host)
      assert.matches("%(2%)", r.stderr, host) -- 0x02 not allowed by ruleset
    end
    stop(client, relay)
  end)
end)

describe("warren serve --hooks FILE whose dial hook loops in a helper", function()
  it("denies that dial, logs it, and keeps serving every other", function()
    local web, web_port = http_server()
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    -- the loop is in a helper of the file, outside the hook: the whole file runs interpreted
    f:write([[
local function spin() local n = 0 while true do n = n + 1 end end
return { dial = function(host, port) if port == 9 then spin() end return true end }
]])
    f:close()
    local k, relay_port, port = key(), net.free_port(), net.free_port()
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k, "--hooks", file })
    assert(net.wait_port(relay_port), "relay did not start")
    local client = start({ "-D", tostring(port), "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(port), "proxy did not start")
    local r = curl("-x", "socks5h://127.0.0.1:" .. port, "http://127.0.0.1:9/")
    assert.equal(97, r.code, r.stderr)
    r = curl("-x", "socks5h://127.0.0.1:" .. port, "-w", "%{http_code}", "http://127.0.0.1:" .. web_port .. "/")
    assert.equal(0, r.code, r.stderr)
    assert.matches("200$", r.stdout)
    stop(client, relay)
    os.remove(file)
    web:close()
    assert.matches("dial hook ran past its budget", select(2, relay:output()))
  end)
end)

describe("client:dynamic in a script", function()
  it("gives the dial hook the resolved addresses, and examples/acl.lua keeps clients off internal ones", function()
    local web, web_port = http_server()
    local seen
    local acl = dofile(proc.source_dir .. "/examples/acl.lua")
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "acl-test", hooks = {
      dial = function(host, port, info)
        seen = { host = host, port = port, addresses = info.addresses, peer = info.peer, session = info.session }
        if port == web_port then return true end
        return acl.dial(host, port, info)
      end,
    } }))
    local c = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = "acl-test" }))
    assert(c:connect())
    local p = assert(c:dynamic({ listen = "127.0.0.1:0" }))
    local r = curl("-x", "socks5h://127.0.0.1:" .. p:port(), "http://localhost:" .. web_port .. "/acl")
    assert.equal("hello /acl\n", r.stdout)
    assert.equal("localhost", seen.host)
    assert.is_truthy(seen.addresses[1] == "127.0.0.1" or seen.addresses[1] == "::1", seen.addresses[1])
    assert.matches("^127%.0%.0%.1:%d+$", seen.peer)
    assert.is_truthy(seen.session:peer())
    -- the example ACL: port 80 on an internal address is refused with its reason
    r = curl("-x", "http://127.0.0.1:" .. p:port(), "-w", "%{http_code}", "-o", "/dev/null", "http://localhost:80/")
    assert.equal("403", r.stdout)
    assert.is_false((acl.dial("example.org", 80, { addresses = { "10.1.2.3" } })))
    assert.is_true(acl.dial("example.org", 443, { addresses = { "93.184.215.14" } }))
    assert.is_false((acl.dial("example.org", 25, { addresses = { "93.184.215.14" } })))
    c:close()
    relay:close()
    web:close()
  end)

  it("maps a policy denial, counts what happened, and drops silent clients", function()
    local web, web_port = http_server()
    local blocked = net.free_port()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "dyn-test",
      on_open = function(_, p) return p ~= blocked, "denied: port blocked" end }))
    local c = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = "dyn-test" }))
    assert(c:connect())
    local closes = {}
    local p = assert(c:dynamic({ listen = "127.0.0.1:0", request_timeout = 0.3,
      on_close = function(info) closes[#closes + 1] = info end }))
    local port = p:port()

    local r = curl("-x", "socks5h://127.0.0.1:" .. port, "http://127.0.0.1:" .. web_port .. "/ok")
    assert.equal("hello /ok\n", r.stdout)
    r = curl("-x", "socks5h://127.0.0.1:" .. port, "http://127.0.0.1:" .. blocked .. "/")
    assert.equal(97, r.code)
    assert.matches("%(2%)", r.stderr) -- 0x02 not allowed by ruleset
    r = curl("-x", "http://127.0.0.1:" .. port, "-w", "%{http_code}", "-o", "/dev/null",
      "http://127.0.0.1:" .. blocked .. "/")
    assert.equal("403", r.stdout)

    local t0 = uv.now()
    assert.equal("", net.exchange(port, nil, { timeout = 5000 })) -- says nothing: closed
    assert.is_true(uv.now() - t0 < 2000, "dropped after " .. (uv.now() - t0) .. " ms")
    assert.matches("^HTTP/1%.1 400 ", net.exchange(port, "\0"))

    wait.eventually(function() return p:stats().active == 0 and #closes == 1 end)
    local st = p:stats()
    assert.equal(5, st.accepted)
    assert.equal(2, st.failed_opens)
    assert.equal(2, st.bad_requests)
    assert.equal(0, st.refused)
    assert.equal(0, st.active)
    assert.is_true(st.bytes_down > 0 and st.bytes_up > 0)
    assert.equal(1, #closes)
    assert.equal("127.0.0.1:" .. web_port, closes[1].target)
    assert.equal(st.bytes_down, closes[1].bytes_down)

    -- no session (the relay is gone, so it stays gone): a general failure at once (HTTP 503)
    relay:close()
    wait.eventually(function() return c.session == nil end)
    r = curl("-x", "http://127.0.0.1:" .. port, "-w", "%{http_code}", "-o", "/dev/null",
      "http://127.0.0.1:" .. web_port .. "/")
    assert.equal("503", r.stdout)
    assert.equal(1, p:stats().refused)

    c:close()
    assert.same({ nil, "closed" }, { p:port() })
    web:close()
  end)
end)

describe("client:dynamic with a relay that does not answer", function()
  it("answers TTL expired (SOCKS5) and 504 (HTTP) when request_timeout runs out", function()
    local k, relay_port = key(), net.free_port()
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(relay_port))
    local c = assert(warren.client({ server = "127.0.0.1:" .. relay_port, key = k }))
    assert(c:connect())
    local p = assert(c:dynamic({ listen = "127.0.0.1:0", request_timeout = 0.5 }))
    relay:kill("sigstop")
    local t0 = uv.now()
    local r = curl("-x", "socks5h://127.0.0.1:" .. p:port(), "http://127.0.0.1:9/")
    assert.equal(97, r.code)
    assert.matches("%(6%)", r.stderr)
    r = curl("-x", "http://127.0.0.1:" .. p:port(), "-w", "%{http_code}", "-o", "/dev/null", "http://127.0.0.1:9/")
    assert.equal("504", r.stdout)
    assert.is_true(uv.now() - t0 < 3000)
    assert.equal(2, p:stats().failed_opens)
    relay:kill("sigcont")
    c:close()
    stop(relay)
  end)
end)

-- node's ws package gives a real WebSocket server and client.
local node_env = { NODE_PATH = "/usr/share/nodejs" }
local ws_js = [[
const WebSocket = require('ws'), http = require('http');
const [mode, url, proxy] = process.argv.slice(1);
const die = (m) => { console.log(m); process.exit(1); };
if (mode === 'server') {
  const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('listening', () => console.log('port ' + wss.address().port));
  wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
} else {
  const msg = (i) => 'message ' + i + ' ' + 'x'.repeat(i * 1000);
  const open = (sock) => {
    const ws = new WebSocket(url, sock ? { createConnection: () => sock } : {});
    let got = 0;
    ws.on('open', () => { for (let i = 0; i < 20; i++) ws.send(msg(i)); });
    ws.on('message', (d) => {
      if (d.toString() !== msg(got)) die('mismatch at ' + got);
      if (++got === 20) { console.log('echoed 20'); ws.close(); }
    });
    ws.on('error', (e) => die('error ' + e.message));
    // a CONNECT socket keeps node alive after the close handshake
    ws.on('close', () => process.exit(got === 20 ? 0 : 1));
  };
  if (!proxy) open(null);
  else {
    const [host, port] = proxy.split(':');
    const req = http.request({ host, port: +port, method: 'CONNECT', path: new URL(url).host });
    req.on('connect', (res, sock) => res.statusCode === 200 ? open(sock) : die('proxy said ' + res.statusCode));
    req.on('error', (e) => die('error ' + e.message));
    req.end();
  }
}
]]

describe("real clients through warren", function()
  it("carries a WebSocket echo through -L and through -D", function()
    local server = proc.start({ "node", "-e", ws_js, "server", env = node_env })
    local ws_port
    for _ = 1, 100 do
      ws_port = server:output():match("port (%d+)")
      if ws_port then break end
      warren.sleep(50)
    end
    assert(ws_port, "node ws server did not start: " .. select(2, server:output()))
    local k, relay_port, fwd_port, dyn_port = key(), net.free_port(), net.free_port(), net.free_port()
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(relay_port))
    local client = start({ "-L", fwd_port .. ":127.0.0.1:" .. ws_port, "-D", tostring(dyn_port),
      "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(fwd_port) and net.wait_port(dyn_port))
    local r = proc.run({ "node", "-e", ws_js, "client", "ws://127.0.0.1:" .. fwd_port .. "/", env = node_env }, 20000)
    assert.equal("echoed 20\n", r.stdout)
    r = proc.run({ "node", "-e", ws_js, "client", "ws://127.0.0.1:" .. ws_port .. "/ws", "127.0.0.1:" .. dyn_port,
      env = node_env }, 20000)
    assert.equal("echoed 20\n", r.stdout)
    stop(client, relay, server)
  end)

  it("carries ssh through -L to a local sshd", function()
    local sshd, why = require("helpers.sshd").start()
    if not sshd then return pending(why) end
    local k, relay_port, fwd_port = key(), net.free_port(), net.free_port()
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(relay_port))
    local client = start({ "-L", fwd_port .. "::" .. sshd.port, "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(fwd_port))
    local r = sshd.ssh(fwd_port, "echo through warren")
    stop(client, relay)
    sshd.stop()
    assert.equal(0, r.code, r.stderr)
    assert.equal("through warren\n", r.stdout)
  end)
end)

-- goflyway's README, with `goflyway` replaced by `warren`, ports made free loopback ones, and
-- `server`/`server2` made 127.0.0.1/localhost.
describe("goflyway's command lines", function()
  local echo, echo_port, web, web_port
  setup(function()
    echo, echo_port = net.echo_server()
    web, web_port = http_server()
  end)
  teardown(function()
    echo:close()
    web:close()
  end)

  local function relay_at(args)
    local relay_port = net.free_port()
    local full = { "127.0.0.1:" .. relay_port }
    for _, a in ipairs(args) do full[#full + 1] = a end
    local relay = start(full)
    assert(net.wait_port(relay_port), "relay did not start")
    return relay, relay_port
  end

  it("warren :80 runs a relay, and needs the same key as its clients", function()
    local r = proc.warren({ ":" .. net.free_port() })
    assert.equal(2, r.code) -- a usage error
    assert.matches("a key is required", r.stderr)
    local relay = relay_at({ "-p", "password" })
    stop(relay)
  end)

  it("warren -L 1080::1080 server:80 -p password", function()
    local relay, relay_port = relay_at({ "-p", "password" })
    local lport = net.free_port()
    local client = start({ "-L", lport .. "::" .. echo_port, "127.0.0.1:" .. relay_port, "-p", "password" })
    assert(net.wait_port(lport))
    assert.equal("goflyway -L", net.exchange(lport, "goflyway -L", { want = 11 }))
    stop(client, relay)
  end)

  it("warren -w -L 1080:server2:1080 server:80 -p password", function()
    local relay, relay_port = relay_at({ "-p", "password", "-v" })
    local lport = net.free_port()
    local client = start({ "-w", "-L", lport .. ":localhost:" .. echo_port, "127.0.0.1:" .. relay_port,
      "-p", "password" })
    assert(net.wait_port(lport))
    assert.equal("over ws", net.exchange(lport, "over ws", { want = 7 }))
    local c, r = stop(client, relay)
    assert.is_nil(c.stderr:find("carrier", 1, true))
    assert.matches("front door: WebSocket upgrade from 127%.0%.0%.1:", r.stderr)
  end)

  it("warren -D 1080 server:80 -p password", function()
    local relay, relay_port = relay_at({ "-p", "password" })
    local dport = net.free_port()
    local client = start({ "-D", tostring(dport), "127.0.0.1:" .. relay_port, "-p", "password" })
    assert(net.wait_port(dport))
    local r = curl("-x", "socks5h://127.0.0.1:" .. dport, "http://localhost:" .. web_port .. "/D")
    assert.equal("hello /D\n", r.stdout)
    stop(client, relay)
  end)

  it("warren -k testkey -w -L :1080 -D 127.0.0.1:8100 (relay: warren -k testkey -w :8100)", function()
    local relay, relay_port = relay_at({ "-k", "testkey", "-w" })
    local lport = net.free_port()
    local client = start({ "-k", "testkey", "-w", "-L", ":" .. lport, "-D", "127.0.0.1:" .. relay_port })
    assert(net.wait_port(lport))
    local r = curl("-x", "http://127.0.0.1:" .. lport, "http://127.0.0.1:" .. web_port .. "/L-D")
    assert.equal("hello /L-D\n", r.stdout)
    stop(client, relay)
  end)

  it("-L LPORT alone is a proxy on that port", function()
    local relay, relay_port = relay_at({ "-p", "password" })
    local lport = net.free_port()
    local client = start({ "-L", tostring(lport), "127.0.0.1:" .. relay_port, "-p", "password" })
    assert(net.wait_port(lport))
    local r = curl("-x", "socks5h://127.0.0.1:" .. lport, "http://127.0.0.1:" .. web_port .. "/L")
    assert.equal("hello /L\n", r.stdout)
    stop(client, relay)
  end)

  it("warren :80 -P http://127.0.0.1:8080 and -P /var/www/html are checked and accepted", function()
    local relay = relay_at({ "-P", "http://127.0.0.1:8080", "-p", "password" })
    stop(relay)
    relay = relay_at({ "-P", os.getenv("WARREN_SOURCE_DIR") or ".", "-p", "password" })
    stop(relay)
    for _, bad in ipairs({ "ftp://127.0.0.1:21", "http://127.0.0.1", "/no/such/dir" }) do
      local r = proc.warren({ "127.0.0.1:" .. net.free_port(), "-P", bad, "-p", "password" })
      assert.equal(2, r.code, bad)
      assert.matches("%-P", r.stderr)
    end
  end)

  it("-W BYTES, -t SECONDS and -v -v", function()
    local relay, relay_port = relay_at({ "-p", "password", "-W", "65536", "-t", "30" })
    local dport = net.free_port()
    local client = start({ "-v", "-v", "-W", "65536", "-t", "30", "-D", tostring(dport), "127.0.0.1:" .. relay_port,
      "-p", "password" })
    assert(net.wait_port(dport))
    local r = curl("-x", "socks5h://127.0.0.1:" .. dport, "http://127.0.0.1:" .. web_port .. "/flags")
    assert.equal("hello /flags\n", r.stdout)
    local c = stop(client, relay)
    assert.matches("debug dynamic: socks5 request for 127%.0%.0%.1:" .. web_port, c.stderr)
  end)

  it("--help tells about -D, --proxy-user, -P and the carriers", function()
    local r = proc.warren({ "--help" })
    local flags = { "%-D %[BIND:%]PORT", "%-%-proxy%-user USER:PASS", "%-P URL|DIR", "%-w  ", "%-%-http  ", "%-K  ",
      "%-%-tls" }
    for _, flag in ipairs(flags) do
      assert.matches(flag, r.stdout)
    end
  end)
end)
