-- luacheck: std +busted
-- warren serve + warren -L as separate processes on loopback, with the targets in this process.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local key, tunnel = proc.key, proc.tunnel

describe("warren -L through warren serve", function()
  local echo, echo_port
  setup(function() echo, echo_port = net.echo_server() end)
  teardown(function() echo:close() end)

  it("forwards a connection both ways", function()
    local t = tunnel(echo_port)
    local reply = net.exchange(t.port, "hello through the tunnel", { want = 24 })
    assert.equal("hello through the tunnel", reply)
    local c, r = t.stop()
    assert.equal(0, c.code)
    assert.equal(0, r.code)
  end)

  it("carries a half-close end to end", function()
    local counter, counter_port = net.count_server()
    local t = tunnel(counter_port)
    local payload = string.rep("x", 300000)
    local reply = net.exchange(t.port, payload, { half_close = true })
    assert.equal("received 300000 bytes", reply)
    t.stop()
    counter:close()
  end)

  it("moves many concurrent connections intact", function()
    local t = tunnel(echo_port)
    local tasks = {}
    for i = 1, 50 do
      tasks[i] = warren.spawn(function()
        local msg = string.rep(string.char(65 + i % 26), 20000 + i)
        local reply = net.exchange(t.port, msg, { want = #msg })
        return reply == msg
      end)
    end
    for i = 1, 50 do
      local ok, same = tasks[i]:join(20000)
      assert.is_true(ok and same, "connection " .. i)
    end
    t.stop()
  end)

  it("says clearly when the key is wrong, and the relay answers a raw prober with nothing", function()
    local relay_port = net.free_port()
    local relay = proc.start({ proc.warren_bin, "serve", "127.0.0.1:" .. relay_port, "-k", key() })
    assert(net.wait_port(relay_port))
    local r = proc.warren({ "-L", "127.0.0.1:" .. net.free_port() .. ":127.0.0.1:" .. echo_port,
      "127.0.0.1:" .. relay_port, "-k", key() }, { timeout = 30000 })
    assert.equal(1, r.code)
    assert.matches("wrong key", r.stderr)
    -- a prober sending junk gets no byte back
    local reply = net.exchange(relay_port, string.rep("\1\2junk", 10), { timeout = 1500 })
    assert.is_true(reply == nil or reply == "", "relay answered a prober: " .. tostring(reply))
    -- and broken HTTP gets what a plain web server gives it
    reply = net.exchange(relay_port, string.rep("GET / HTTP/1.1\r\n", 10), { timeout = 1500 })
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", reply)
    relay:kill()
    relay:wait(5000)
  end)

  it("reports an unreachable relay", function()
    local r = proc.warren({ "-L", "127.0.0.1:" .. net.free_port() .. ":127.0.0.1:9", "127.0.0.1:" .. net.free_port(),
      "-k", key() }, { timeout = 30000 })
    assert.equal(1, r.code)
    assert.matches("cannot connect to relay .*connection refused", r.stderr)
  end)

  it("closes the local connection when the target refuses", function()
    local t = tunnel(net.free_port())
    local reply = net.exchange(t.port, "anyone?", { timeout = 5000 })
    assert.is_true(reply == nil or reply == "")
    t.stop()
  end)

  it("closes connections idle longer than -t", function()
    local t = tunnel(echo_port, nil, { "-t", "1" })
    local t0 = uv.now()
    local reply = net.exchange(t.port, "then silence", { timeout = 8000 })
    assert.equal("then silence", reply) -- read until the tunnel closed the idle connection
    assert.is_true(uv.now() - t0 < 4000, "closed after " .. (uv.now() - t0) .. " ms")
    t.stop()
  end)

  it("takes a password on one end and a key file with it on the other", function()
    local relay_port, local_port = net.free_port(), net.free_port()
    local relay = proc.start({ proc.warren_bin, "serve", "127.0.0.1:" .. relay_port, "-p", "correct horse" })
    assert(net.wait_port(relay_port))
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write("correct horse\n")
    f:close()
    local client = proc.start({ proc.warren_bin, "-L",
      string.format("127.0.0.1:%d:127.0.0.1:%d", local_port, echo_port),
      "127.0.0.1:" .. relay_port, "--key-file", file })
    assert(net.wait_port(local_port), "forward did not start")
    assert.equal("keyed", net.exchange(local_port, "keyed", { want = 5 }))
    client:kill(); relay:kill()
    client:wait(5000); relay:wait(5000)
    os.remove(file)
  end)

  it("measures handshakes with warren bench handshake", function()
    local k = key()
    local relay, relay_port = proc.serve({ "-k", k })
    local r = proc.warren({ "bench", "handshake", "127.0.0.1:" .. relay_port, "-k", k, "-d", "1", "-c", "4" })
    relay:kill()
    relay:wait(5000)
    assert.equal(0, r.code, r.stderr)
    local done, failed, rate = r.stdout:match("^handshakes=(%d+) failed=(%d+) seconds=[%d.]+ handshakes_per_s=(%d+)\n$")
    assert.is_true(tonumber(done) > 0, r.stdout)
    assert.equal("0", failed)
    assert.is_true(tonumber(rate) > 0)
  end)

  it("detects a stopped relay within three keepalives", function()
    local t = tunnel(echo_port, { "--keepalive", "1" }, { "--keepalive", "1", "-v" })
    assert.equal("ping", net.exchange(t.port, "ping", { want = 4 }))
    local stopped = uv.now()
    t.relay:kill("sigstop")
    local detected
    for _ = 1, 100 do
      local _, err = t.client:output()
      if err:find("lost: peer dead", 1, true) then detected = uv.now() break end
      warren.sleep(100)
    end
    t.relay:kill("sigcont")
    assert.is_not_nil(detected, "client never noticed")
    assert.is_true(detected - stopped <= 4500, "took " .. (detected - stopped) .. " ms")
    t.stop()
  end)
end)

describe("the relay's front door", function()
  -- Sends data in pieces (a slow client) and returns everything until the relay closes.
  local function slowly(port, pieces)
    local c = uv.new_tcp()
    assert(warren.await(function(resolve) c:connect("127.0.0.1", port, function(e) resolve(not e) end) end, 2000))
    local parts = {}
    local done = warren.spawn(function()
      return warren.await(function(resolve)
        c:read_start(function(_, data)
          if data then parts[#parts + 1] = data else resolve(true) end
        end)
      end, 5000)
    end)
    for _, piece in ipairs(pieces) do
      c:write(piece)
      warren.sleep(50)
    end
    done:join()
    c:close()
    return table.concat(parts)
  end

  it("answers HTTP with a plain 404 page and keeps serving clients on the same port", function()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "front-test" }))
    local port = relay:port()
    local page = slowly(port, { "GE", "T /admin HTTP/1.1\r\nHo", "st: x\r\n\r\n" })
    assert.matches("^HTTP/1%.1 404 Not Found\r\n", page)
    assert.matches("<h1>404 Not Found</h1>", page)
    local huge = slowly(port, { "POST / HTTP/1.1\r\nX: " .. string.rep("a", 17000) })
    assert.matches("^HTTP/1%.1 400 Bad Request\r\n", huge)
    assert.equal(2, relay:stats().front_http)
    local echo, echo_port = net.echo_server()
    local client = assert(warren.client({ server = "127.0.0.1:" .. port, key = "front-test" }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    assert.equal("ping", net.exchange(fwd:port(), "ping", { want = 4, timeout = 3000 }))
    client:close()
    echo:close()
    relay:close()
  end)
end)

describe("warren -L to a dead target", function()
  it("logs the failed dial on the relay, without -v", function()
    local dead = net.free_port() -- nothing listens there
    local t = tunnel(dead)
    local reply = net.exchange(t.port, "hello", { timeout = 3000 })
    assert.is_true(reply == nil or reply == "")
    local function log() return select(2, t.relay:output()) end
    local logged = wait.eventually(function() return log():find("failed: connection refused", 1, true) end, 5000)
    t.stop()
    assert.is_truthy(logged, "relay log: " .. log())
  end)
end)

describe("warren.relay limits", function()
  -- Opens a connection from a source address and sends garbage; the handle, or nil.
  local function garbage_from(src, port, host)
    local c = uv.new_tcp()
    if src then assert(c:bind(src, 0)) end
    local ok = warren.await(function(resolve)
      c:connect(host or "127.0.0.1", port, function(e) resolve(not e) end)
    end, 2000)
    if not ok then c:close() return nil end
    c:write(string.rep("\0", 200)) -- not a handshake: sent to the probe sink, held open
    return c
  end

  -- Resolves to the read error (or "eof") the connection ends with.
  local function ending(c)
    return warren.await(function(resolve)
      c:read_start(function(err, data)
        if err then resolve(err) elseif not data then resolve("eof") end
      end)
    end, 3000)
  end

  it("at the cap drops the oldest connection without the key, so a real client still gets in", function()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "limit-test", max_unauthenticated = 3,
      probe_close_ms = 60000 }))
    local port = relay:port()
    local probes = {}
    for i = 1, 3 do probes[i] = assert(garbage_from(nil, port)) end
    wait.eventually(function() return relay:stats().unauthenticated_failed == 3 end)
    local first_end = warren.spawn(function() return ending(probes[1]) end)
    -- The cap is full, yet a key holder connects: the oldest probe makes room.
    local client = assert(warren.client({ server = "127.0.0.1:" .. port, key = "limit-test" }))
    assert(client:connect())
    wait.eventually(function() return relay:stats().handshakes_ok == 1 end)
    assert.equal(1, relay:stats().dropped_unauthenticated)
    assert.equal("ECONNRESET", select(2, first_end:join())) -- reset, as the probe sink ends
    assert.equal(2, relay:stats().unauthenticated) -- the two newer probes are still held
    client:close()
    for i = 2, 3 do probes[i]:close() end
    relay:close()
  end)

  it("lets a client in from an address past its failures, whose failed connections go first", function()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "limit-test", max_failed_handshakes = 2,
      max_unauthenticated = 4, probe_close_ms = 60000 }))
    local port = relay:port()
    local probes = {}
    for i = 1, 2 do probes[i] = assert(garbage_from(nil, port)) end
    wait.eventually(function() return relay:stats().handshakes_failed == 2 end)
    -- an idle connection from another address, then more from the flagged one up to the cap
    local idle = uv.new_tcp()
    assert(idle:bind("127.0.0.3", 0))
    assert(warren.await(function(resolve) idle:connect("127.0.0.1", port, function(e) resolve(not e) end) end, 2000))
    probes[3] = assert(garbage_from(nil, port))
    wait.eventually(function() return relay:stats().unauthenticated == 4 end)
    -- the same address as the prober (one NAT): the client is let in, and a flagged probe made room
    local client = assert(warren.client({ server = "127.0.0.1:" .. port, key = "limit-test" }))
    assert(client:connect())
    wait.eventually(function() return relay:stats().handshakes_ok == 1 end)
    assert.equal(1, relay:stats().dropped_unauthenticated)
    assert.equal(3, relay:stats().unauthenticated) -- the idle connection of the other address stays
    client:close()
    idle:close()
    for _, p in ipairs(probes) do p:close() end
    relay:close()
  end)

  it("tells a connection closed before any answer apart from a wrong key", function()
    local core = require("warren.core")
    local k = string.rep("k", 32)
    local closer, closer_port = net.serve(function(peer) peer:close() end)
    local started = uv.now()
    local client = warren.client({ server = "127.0.0.1:" .. closer_port, key = "limit-test" })
    local ok, err = client:connect()
    assert.is_nil(ok)
    assert.matches("closed the connection without answering", err)
    assert.is_true(uv.now() - started >= 1000, "gave up without retrying")
    local silent, silent_port = net.serve(function(peer) peer:read_start(function() end) end)
    local s, serr = core.session_connect({ host = "127.0.0.1", port = silent_port, key = k, timeout_ms = 300 })
    assert.is_nil(s)
    assert.matches("wrong key", serr)
    closer:close()
    silent:close()
  end)

  it("counts IPv4 peers of a dual-stack listener as IPv4, per address", function()
    local peers = {}
    local relay, err = warren.relay({ listen = "[::]:0", key = "limit-test", max_unauthenticated_per_address = 4,
      probe_close_ms = 60000, on_open = function(_, _, info) peers[#peers + 1] = info.peer return true end })
    if not relay then pending("no IPv6 here: " .. tostring(err)) return end
    local port = relay:port()
    local probes = {}
    for i = 1, 10 do probes[i] = assert(garbage_from("127.0.0.2", port)) end
    wait.eventually(function() return relay:stats().dropped_per_address == 6 end)
    assert.equal(4, relay:stats().unauthenticated) -- 127.0.0.2 churned only its own
    assert.equal(0, relay:stats().dropped_unauthenticated)
    local echo, echo_port = net.echo_server()
    local client = assert(warren.client({ server = "127.0.0.1:" .. port, key = "limit-test" }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    assert.equal("hello", net.exchange(fwd:port(), "hello", { want = 5, timeout = 3000 }))
    -- hooks see the plain IPv4 form, so IPv4 block lists match
    assert.matches("^127%.0%.0%.1:%d+$", peers[1])
    client:close()
    echo:close()
    for _, p in ipairs(probes) do p:close() end
    relay:close()
  end)
end)
