-- luacheck: std +busted
-- Declared tunnel scripts and their reload: `warren --control SOCK run FILE`, edited, then
-- `warren reload --control SOCK`. Real processes on loopback: a relay, a client, echo servers,
-- and wr_loadgen for the transfers that must go on byte-exact through every reload.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
require("helpers.reaper").per_test(before_each, after_each)
local net = require("helpers.net")
local wait = require("helpers.wait")

local loadgen = os.getenv("WR_LOADGEN")
local sanitized = os.getenv("WARREN_SANITIZED") == "1"

local dir = os.tmpname()
os.remove(dir)
assert(uv.fs_mkdir(dir, tonumber("700", 8)))

local function write(path, text)
  local f = assert(io.open(path .. ".new", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".new", path)) -- whole at once, as an editor saves
end

local key_file = dir .. "/key"
write(key_file, proc.key() .. "\n")

-- A client script: `tunnels` is Lua source for the body of its tunnels table.
local function client_script(relay_port, tunnels)
  return string.format("return { server = %q, key_file = %q, tunnels = { %s } }\n",
    "127.0.0.1:" .. relay_port, key_file, tunnels)
end

local function L(name, port, target)
  return string.format("%s = { L = \"127.0.0.1:%d:127.0.0.1:%d\" },", name, port, target)
end
local function D(name, port) return string.format("%s = { D = \"127.0.0.1:%d\" },", name, port) end
local function R(name, outer, inner)
  return string.format("%s = { R = \"127.0.0.1:%d:127.0.0.1:%d\", message = \"test\" },", name, outer, inner)
end

local sockets = 0
-- Starts `warren --control SOCK run FILE` and waits until it answers on the socket. prepare()
-- picks the ports and writes the script: a port that another program took since it was picked
-- means a second pick, not a failure.
local function run_script(path, extra, prepare)
  local output
  for _ = 1, 4 do
    if prepare then prepare() end
    sockets = sockets + 1
    local sock = string.format("%s/control%d.sock", dir, sockets)
    local spec = { proc.warren_bin, "--control", sock }
    for _, a in ipairs(extra or {}) do spec[#spec + 1] = a end
    spec[#spec + 1] = "run"
    spec[#spec + 1] = path
    local child = proc.start(spec)
    local up = wait.eventually(function()
      if child.code then return true end
      return uv.fs_stat(sock) and proc.warren({ "status", "--control", sock }).code == 0
    end, 15000)
    if up and not child.code then return child, sock end
    child:kill()
    child:wait(5000)
    output = select(2, child:output())
    if not (prepare and output:find("address already in use", 1, true)) then break end
  end
  error("the script did not start: " .. output, 2)
end

local function reload(sock)
  return proc.warren({ "reload", "--control", sock }, { timeout = 30000 })
end

local function status(sock)
  local r = proc.warren({ "status", "--control", sock, "--json" })
  assert.equal(0, r.code, r.stderr)
  return r.stdout
end

local function generation(sock) return tonumber(status(sock):match('"generation":(%d+)')) end

local function refused(port)
  local ok = net.exchange(port, "x", { timeout = 2000, want = 1 })
  return ok == nil
end

local function echoes(port)
  local payload = "ping " .. port
  return net.exchange(port, payload, { want = #payload }) == payload
end

describe("tunnel scripts", function()
  local relay, relay_port, echo, echo_port, from, to

  setup(function()
    from, to = net.free_range(6)
    relay, relay_port = proc.serve({ "--key-file", key_file, "--ports", from .. "-" .. to })
    echo, echo_port = net.echo_server()
  end)

  teardown(function()
    relay:kill()
    relay:wait(5000)
    echo:close()
  end)

  it("adds and drops -L, -D and -R tunnels by editing the script", function()
    local keep, l, d
    local path = dir .. "/edit.lua"
    local child, sock = run_script(path, nil, function()
      keep, l, d = net.free_port(), net.free_port(), net.free_port()
      write(path, client_script(relay_port, L("keep", keep, echo_port)))
    end)
    assert.is_true(echoes(keep))
    assert.is_true(refused(l) and refused(d) and refused(from))

    write(path, client_script(relay_port, L("keep", keep, echo_port) .. L("web", l, echo_port) .. D("socks", d)
      .. R("svc", from, echo_port)))
    local r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.matches("3 added, 0 changed, 0 removed, 1 unchanged", r.stdout)
    assert.is_true(echoes(l))
    assert.is_true(echoes(from)) -- through the relay's outer port to the client's service
    -- SOCKS5: no-auth greeting, then the answer
    assert.equal("\5\0", net.exchange(d, "\5\1\0", { want = 2 }))
    local st = status(sock)
    assert.matches('"name":"svc"', st)
    assert.matches('"state":"active"', st)

    -- a -D and a -R changed on their own addresses: replaced there
    write(path, client_script(relay_port, L("keep", keep, echo_port) .. L("web", l, echo_port)
      .. string.format("socks = { D = \"127.0.0.1:%d\", user = \"u\", password = \"p\" },", d)
      .. R("svc", from, echo_port):gsub("message = \"test\"", "message = \"changed\"")))
    r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.matches("0 added, 2 changed, 0 removed, 2 unchanged", r.stdout)
    assert.equal("\5\2", net.exchange(d, "\5\1\2", { want = 2 })) -- now asks for username/password
    assert.is_true(echoes(from))
    local services = proc.warren({ "services", "127.0.0.1:" .. relay_port, "--key-file", key_file })
    assert.matches("changed", services.stdout)

    write(path, client_script(relay_port, L("keep", keep, echo_port)))
    r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.matches("0 added, 0 changed, 3 removed, 1 unchanged", r.stdout)
    assert.is_true(wait.eventually(function() return refused(l) and refused(d) and refused(from) end, 5000))
    assert.is_true(echoes(keep))
    child:kill()
    assert.equal(0, child:wait(5000).code)
    assert.is_nil(uv.fs_stat(sock), "the control socket is removed at exit")
  end)

  it("sends new connections of a changed -L to its new target; the live one stays where it was", function()
    local other, other_port = net.serve(function(peer)
      peer:write("other\n")
      peer:shutdown(function() peer:close() end)
    end)
    local keep
    local path = dir .. "/change.lua"
    local child, sock = run_script(path, nil, function()
      keep = net.free_port()
      write(path, client_script(relay_port, L("keep", keep, echo_port)))
    end)
    -- a connection opened before the change
    local live = uv.new_tcp()
    assert.is_true(warren.await(function(resolve)
      live:connect("127.0.0.1", keep, function(e) resolve(not e) end)
    end, 5000))
    local got = {}
    live:read_start(function(_, data) if data then got[#got + 1] = data end end)
    live:write("before ")
    assert.is_true(wait.eventually(function() return table.concat(got) == "before " end))

    write(path, client_script(relay_port, L("keep", keep, other_port)))
    local r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.matches("1 changed", r.stdout)
    assert.equal("other\n", net.exchange(keep, nil))
    live:write("after")
    assert.is_true(wait.eventually(function() return table.concat(got) == "before after" end))
    live:close()
    other:close()
    child:kill()
    child:wait(5000)
  end)

  -- A connection held open through a tunnel: what it received, and whether it ended.
  local function live_connection(port)
    local conn = { got = {}, ended = false, tcp = uv.new_tcp() }
    assert.is_true(warren.await(function(resolve)
      conn.tcp:connect("127.0.0.1", port, function(e) resolve(not e) end)
    end, 5000))
    conn.tcp:read_start(function(err, data)
      if data then conn.got[#conn.got + 1] = data else conn.ended = err or true end
    end)
    function conn.text() return table.concat(conn.got) end
    -- Sends text and waits until the echo has it all (the whole conversation so far).
    function conn.echo(text)
      local want = conn.text() .. text
      conn.tcp:write(text)
      return wait.eventually(function() return conn.text() == want end, 5000)
    end
    return conn
  end

  it("cuts a removed tunnel's live connections after its grace, never a kept one's", function()
    local keep, web, socks
    local outer = from + 2
    -- long enough for a `warren reload` process and a look under load (ASan, -j2)
    local grace = 3
    local path = dir .. "/grace.lua"
    local function script(tunnels, seconds)
      return client_script(relay_port, tunnels):gsub("^return { ", "return { grace = " .. seconds .. ", ")
    end
    local child, sock = run_script(path, nil, function()
      keep, web, socks = net.free_port(), net.free_port(), net.free_port()
      write(path, script(L("keep", keep, echo_port) .. L("web", web, echo_port) .. D("socks", socks)
        .. R("svc", outer, echo_port), grace))
    end)
    local kept, through_web = live_connection(keep), live_connection(web)
    assert.is_true(wait.eventually(function() return echoes(outer) end, 5000))
    local through_svc = live_connection(outer)
    local through_socks = live_connection(socks)
    -- SOCKS5: no authentication, then CONNECT 127.0.0.1:echo_port
    local port_bytes = string.char(math.floor(echo_port / 256), echo_port % 256)
    through_socks.tcp:write("\5\1\0\5\1\0\1\127\0\0\1" .. port_bytes)
    assert.is_true(wait.eventually(function() return #through_socks.text() >= 12 end, 5000))
    assert.equal("\5\0\5\0", through_socks.text():sub(1, 4))
    through_socks.got = {}
    assert.is_true(kept.echo("kept before ") and through_web.echo("web before "))
    assert.is_true(through_socks.echo("socks before ") and through_svc.echo("svc before "))

    write(path, script(L("keep", keep, echo_port), grace))
    local t0 = uv.now()
    local r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.matches("0 added, 0 changed, 3 removed, 1 unchanged", r.stdout)
    assert.is_true(wait.eventually(function() return refused(web) and refused(socks) and refused(outer) end, 5000))
    -- within the grace: the removed tunnels' connections still carry bytes both ways, the -R
    -- user's too (a connection of the relay, relayed by the client)
    assert.is_true(through_web.echo("web within grace") and through_socks.echo("socks within grace"))
    assert.is_true(through_svc.echo("svc within grace"))
    assert.is_true(uv.now() - t0 < grace * 1000, "too slow to look within the grace")
    assert.is_false(through_web.ended or through_socks.ended or through_svc.ended)
    -- after it: cut
    assert.is_true(wait.eventually(function()
      return (through_web.ended and through_socks.ended and through_svc.ended) ~= false
    end, 5000))
    assert.is_true(uv.now() - t0 >= grace * 1000 - 100, (uv.now() - t0) .. " ms")
    assert.equal("web before web within grace", through_web.text())
    assert.equal("svc before svc within grace", through_svc.text())
    assert.truthy(select(2, child:output()):find("tunnel svc removed: 1 connection cut after 3 s grace", 1, true))
    -- the kept tunnel's connection went on through it all, byte for byte
    assert.is_true(kept.echo("kept after"))
    assert.equal("kept before kept after", kept.text())
    assert.is_false(kept.ended)

    -- grace = 0: cut at once
    write(path, script(L("keep", keep, echo_port) .. L("web", web, echo_port), 0))
    assert.equal(0, reload(sock).code)
    through_web = live_connection(web)
    assert.is_true(through_web.echo("again "))
    write(path, script(L("keep", keep, echo_port), 0))
    assert.equal(0, reload(sock).code)
    assert.is_true(wait.eventually(function() return through_web.ended end, 500))
    assert.is_true(kept.echo(" still"))
    assert.is_false(kept.ended)

    for _, bad in ipairs({ "-1", "1/0", "'30'" }) do
      write(path, script(L("keep", keep, echo_port), bad))
      r = reload(sock)
      assert.equal(1, r.code, bad)
      assert.matches("grace must be a number of seconds, 0 or more", r.stderr)
    end
    kept.tcp:close()
    through_web.tcp:close()
    through_socks.tcp:close()
    through_svc.tcp:close()
    child:kill()
    child:wait(5000)
    local log = select(2, child:output())
    assert.matches("tunnel web removed: 1 connection may go on for " .. grace .. " s", log)
    assert.matches("tunnel web removed: 1 connection cut after " .. grace .. " s grace", log)
    assert.matches("tunnel socks removed: 1 connection cut after " .. grace .. " s grace", log)
    assert.matches("tunnel web removed: 1 connection cut after 0 s grace", log)
  end)

  it("keeps the running generation when the new script fails, and says why", function()
    local keep, added, good
    local busy = uv.new_tcp()
    assert(busy:bind("127.0.0.1", 0))
    busy:listen(1, function() end)
    local busy_port = busy:getsockname().port
    local path = dir .. "/broken.lua"
    local child, sock = run_script(path, nil, function()
      keep, added = net.free_port(), net.free_port()
      good = client_script(relay_port, L("keep", keep, echo_port))
      write(path, good)
    end)
    local cases = {
      { "return {", "unexpected symbol" },
      { "error('the script broke')", "the script broke" },
      { "return 42", "must return a table" },
      { "return nil", "returned nothing" },
      { client_script(relay_port, L("keep", keep, echo_port)):gsub("server =", "serve_on = \"x\", server ="),
        'unknown key "serve_on"' },
      { client_script(relay_port, L("keep", keep, echo_port) .. "web = { L = \"1:2\", colour = \"red\" },"),
        'tunnels.web: unknown key "colour"' },
      { client_script(relay_port, L("keep", keep, echo_port) .. "web = { L = \"nonsense\" },"), "tunnels.web" },
      -- a port in use: and the tunnel added beside it must not stay bound
      { client_script(relay_port, L("keep", keep, echo_port) .. L("a", added, echo_port)
        .. L("z", busy_port, echo_port)), "address already in use" },
      { client_script(relay_port, L("keep", keep, echo_port)):gsub("127.0.0.1:" .. relay_port, "127.0.0.1:1"),
        "server changed: a reload cannot apply it" },
    }
    for _, case in ipairs(cases) do
      write(path, case[1])
      local r = reload(sock)
      assert.equal(1, r.code, case[1])
      assert.matches(case[2], r.stderr, 1, true)
      assert.equal(1, generation(sock))
      assert.is_true(echoes(keep), case[2])
      assert.is_true(refused(added), case[2])
    end
    write(path, good)
    local r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.equal(2, generation(sock))
    busy:close()
    child:kill()
    child:wait(5000)
    -- and the log says which reload failed and why
    assert.matches("reload by control socket uid %d+ failed, generation 1 kept", select(2, child:output()))
  end)

  it("refuses a script with an unknown key at start, naming the key", function()
    local path = dir .. "/unknown.lua"
    write(path, "return { serve = '127.0.0.1:0', key_file = " .. string.format("%q", key_file)
      .. ", hooks = { dail = function() end } }")
    local r = proc.warren({ "run", path })
    assert.equal(1, r.code)
    assert.matches('unknown hook "dail"', r.stderr)
    write(path, "return { serve = '127.0.0.1:0', key_file = " .. string.format("%q", key_file) .. ", prots = {} }")
    r = proc.warren({ "run", path })
    assert.equal(1, r.code)
    assert.matches('unknown key "prots"', r.stderr)
  end)

  it("reloads on SIGHUP and when the file changes (--watch)", function()
    local keep, l
    local path = dir .. "/watch.lua"
    local function prepare()
      keep, l = net.free_port(), net.free_port()
      write(path, client_script(relay_port, L("keep", keep, echo_port)))
    end
    local child, sock = run_script(path, { "--watch" }, prepare)
    write(path, client_script(relay_port, L("keep", keep, echo_port) .. L("web", l, echo_port)))
    assert.is_true(wait.eventually(function() return echoes(l) end, 5000))
    assert.equal(2, generation(sock))
    write(path, client_script(relay_port, L("keep", keep, echo_port)))
    assert.is_true(wait.eventually(function() return refused(l) end, 5000))
    child:kill("sigterm")
    assert.equal(0, assert(child:wait(10000)).code)

    child, sock = run_script(path, nil, prepare)
    write(path, client_script(relay_port, L("keep", keep, echo_port) .. L("web", l, echo_port)))
    child:kill("sighup")
    assert.is_true(wait.eventually(function() return echoes(l) end, 5000))
    assert.equal(2, generation(sock))
    child:kill()
    child:wait(5000)
  end)

  it("swaps a relay's hooks at once, and keeps its sessions", function()
    local path = dir .. "/relay.lua"
    local rp
    local function relay_script(allowed)
      return string.format("return { serve = %q, key_file = %q, ports = { %q }, hooks = {\n"
        .. "  dial = function(host, port) if port == %d then return true end return false, 'not this one' end } }\n",
        "127.0.0.1:" .. rp, key_file, from .. "-" .. to, allowed)
    end
    local other, other_port = net.echo_server()
    local declared, sock = run_script(path, nil, function()
      rp = net.free_port()
      write(path, relay_script(echo_port))
    end)
    local a, b = net.free_port(), net.free_port()
    local client = proc.start({ proc.warren_bin, "-L", string.format("%d:127.0.0.1:%d", a, echo_port),
      "-L", string.format("%d:127.0.0.1:%d", b, other_port), "127.0.0.1:" .. rp, "--key-file", key_file })
    assert.is_true(net.wait_port(a) and net.wait_port(b), select(2, client:output()))
    assert.is_true(echoes(a))
    assert.is_false(echoes(b))
    write(path, relay_script(other_port))
    local r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    assert.is_true(echoes(b))
    assert.is_false(echoes(a))
    assert.matches('"sessions_active":1', status(sock)) -- the same session: nobody reconnected
    assert.matches('"sessions_total":1', status(sock))
    write(path, relay_script(other_port):gsub("ports = { ", "ports = { \"1-2\", "))
    r = reload(sock)
    assert.equal(0, r.code, r.stderr)
    write(path, relay_script(other_port))
    r = reload(sock)
    assert.equal(1, r.code)
    assert.matches("ports: removing 1%-2 needs a restart", r.stderr)
    client:kill()
    client:wait(5000)
    declared:kill()
    declared:wait(5000)
    other:close()
  end)

  -- The issue's figure: 50 streams, 100 reloads. Each reload is a `warren reload` process.
  local streams, reloads = 50, sanitized and 40 or 100
  it(string.format("reloads %d times while %d streams transfer through an unchanged tunnel: none cut, "
    .. "every byte verified", reloads, streams), function()
    assert(loadgen, "WR_LOADGEN is not set (ctest sets it to the wr_loadgen build target)")
    local keep, target, l, d, base
    local path = dir .. "/load.lua"
    local child, sock = run_script(path, nil, function()
      keep, target, l, d = net.free_port(), net.free_port(), net.free_port(), net.free_port()
      base = L("keep", keep, target)
      write(path, client_script(relay_port, base))
    end)
    local seconds = sanitized and 40 or 20
    local run = proc.start({ loadgen, "stress", "-t", "127.0.0.1:" .. keep, "-l", "127.0.0.1:" .. target,
      "-c", tostring(streams), "-s", "16384", "-d", tostring(seconds), "-i", "0" })
    assert.is_true(wait.eventually(function()
      return tonumber(status(sock):match('"connections":(%d+)') or 0) >= streams
    end, 20000), "the streams did not all start")
    local t0 = uv.now()
    for i = 1, reloads do
      local extra = ""
      if i % 2 == 1 then
        extra = L("web" .. i, l, echo_port) .. D("socks" .. i, d)
          .. (i % 10 == 1 and R("svc", from + 1, echo_port) or "")
      end
      write(path, client_script(relay_port, base .. extra))
      local r = reload(sock)
      assert.equal(0, r.code, "reload " .. i .. ": " .. r.stderr)
      if i % 20 == 1 then
        local payload = "ping " .. l
        assert.equal(payload, select(1, net.exchange(l, payload, { want = #payload })))
      end
    end
    local elapsed = uv.now() - t0
    assert.is_nil(run.code, string.format("the transfer ended before the %d reloads (%d ms)", reloads, elapsed))
    local r = assert(run:wait((seconds + 30) * 1000))
    local line = r.stdout:match("SUMMARY:[^\n]*") or ""
    print(string.format("\n%d reloads in %d ms (%.1f ms each) under %d streams; %s", reloads, elapsed,
      elapsed / reloads, streams, line))
    assert.equal(0, r.code, line .. "\n" .. r.stderr)
    assert.matches(" errors=0 ", line)
    assert.matches(" corrupt=0 ", line)
    assert.matches(" conns=" .. streams .. " ", line)
    local totals = "CLIENT: total conns=0/" .. streams .. " ok=" .. streams .. " failed=0 "
    assert.is_not_nil(r.stdout:find(totals, 1, true), r.stdout)
    assert.equal(reloads + 1, generation(sock))
    child:kill()
    child:wait(5000)
  end)
end)

describe("reloading 10,000 tunnels", function()
  teardown(function() proc.run({ "rm", "-rf", dir }) end) -- the last block of this file: its files go
  it("applies one change in at most 100 ms (release build)", function()
    local relay, relay_port = proc.serve({ "--key-file", key_file })
    local first = net.free_port()
    local target_file = dir .. "/target"
    write(target_file, "80\n")
    local path = dir .. "/many.lua"
    -- distinct loopback addresses, one port: 10,000 listeners that no other test can be using
    write(path, string.format([[
local f = io.open(%q); local port = f:read("*l"); f:close()
local tunnels = {}
for i = 1, 10000 do
  tunnels["t" .. i] = { L = string.format("127.3.%%d.%%d:%d:127.0.0.1:%%s", math.floor(i / 250), i %% 250 + 1,
    i == 1 and port or "80") }
end
return { server = %q, key_file = %q, tunnels = tunnels }
]], target_file, first, "127.0.0.1:" .. relay_port, key_file))
    local child, sock = run_script(path)
    local best = math.huge
    for i = 1, 5 do
      write(target_file, tostring(8000 + i) .. "\n")
      local r = reload(sock)
      assert.equal(0, r.code, r.stderr)
      assert.matches("0 added, 1 changed, 0 removed, 9999 unchanged", r.stdout)
      best = math.min(best, tonumber(r.stdout:match("%(([%d.]+) ms%)")))
    end
    print(string.format("\nreload of 10,000 tunnels with one change: %.1f ms (best of 5)", best))
    if not sanitized then assert.is_true(best <= 100, best .. " ms") end
    child:kill()
    child:wait(10000)
    relay:kill()
    relay:wait(5000)
  end)
end)
