-- luacheck: std +busted
-- The reverse-tunnel control plane under pressure and misuse: answers longer than a message,
-- request floods, hostile text, two processes with one client id, client lifetime, operator
-- limits. Relays and clients run in this process or as child processes, on loopback.
local warren = require("warren")
local core = require("warren.core")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local eventually = require("helpers.wait").eventually
local keys = require("warren.keys")

local function relay_with(opts)
  opts.listen = "127.0.0.1:0"
  opts.key = opts.key or keys.generate()
  opts.outer_bind = opts.outer_bind or "127.0.0.1"
  return assert(warren.relay(opts)), opts.key
end

-- A connected client of the relay at 127.0.0.1:relay_port.
local function client_of(relay_port, key, opts)
  opts = opts or {}
  opts.server, opts.key = "127.0.0.1:" .. relay_port, key
  local client = assert(warren.client(opts))
  assert(client:connect())
  return client
end

-- Opens a connection to 127.0.0.1:port and keeps it: the handle once connected, or nil.
local function hold(port)
  local c = uv.new_tcp()
  local ok = warren.await(function(resolve)
    c:connect("127.0.0.1", port, function(e) resolve(not e) end)
  end, 3000)
  if not ok then
    c:close()
    return nil
  end
  return c
end

-- Writes text on a held connection and reads its echo.
local function echo_of(c, text)
  local got = warren.await(function(resolve)
    c:read_start(function(_, chunk) resolve(chunk or "") end)
    c:write(text)
  end, 3000)
  c:read_stop()
  return got
end

-- Awaits the end of a held connection (EOF or error): true, or nil on timeout.
local function closed_by_peer(c, timeout_ms)
  local ended = warren.await(function(resolve)
    c:read_start(function(e, chunk) if e or not chunk then resolve(true) end end)
  end, timeout_ms)
  c:close()
  return ended
end

-- Child processes of the running test, killed after it whether it passed or not.
local children = {}

local function warren_child(args)
  local spec = { proc.warren_bin }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  local child = proc.start(spec)
  children[#children + 1] = child
  return child
end

local function reap_children()
  for _, child in ipairs(children) do
    child:kill("sigkill")
    child:wait(5000)
  end
  children = {}
end

-- The relay port a `warren -R` child printed for the service `name` (awaits it), or nil.
local function relay_port_of(child, name)
  local found = eventually(function() return child:output():match(name .. ": relay port (%d+)") end, 10000)
  return found and tonumber(found)
end

-- n consecutive ports that can be bound now, from 10000-19999: below the range the other
-- specs take theirs from (helpers.net), so thousands of them do not collide with a test
-- running beside this one.
local function quiet_range(n)
  for _ = 1, 50 do
    local from = math.random(10000, 20000 - n)
    local free = true
    for p = from, from + n - 1 do
      local probe = uv.new_tcp()
      free = probe:bind("127.0.0.1", p) ~= nil
      probe:close()
      if not free then break end
    end
    if free then return from, from + n - 1 end
  end
  error("no free range of " .. n .. " ports below 20000")
end

-- Pools have spare ports and services take "any": a port that another program took since
-- free_range looked is skipped instead of failing the test.
local function pool(n)
  local from, to = net.free_range(n + 2)
  return from .. "-" .. to
end

describe("control plane: long answers", function()
  it("pages a service list longer than 1 MiB to the Lua client and to `warren services`", function()
    local n = 3000
    -- spare ports: "any" skips one that another program took since quiet_range looked
    local from, to = quiet_range(n + 50)
    local relay, key = relay_with({ ports = { from .. "-" .. to }, max_services = n })
    local client = client_of(relay:port(), key)
    finally(function() -- whatever happens, these thousands of ports are not left to later tests
      client:close()
      relay:close()
    end)
    local message = string.rep("m", 256)
    local tasks = {}
    for t = 1, 32 do
      tasks[t] = warren.spawn(function()
        for i = t, n, 32 do
          assert(client:register({ outer = "any", inner = ":1", name = string.format("%s%05d", string.rep("n", 58), i),
            message = message }))
        end
      end)
    end
    for _, task in ipairs(tasks) do assert(task:join(60000)) end
    local all = relay:services()
    assert.equal(n, #all)
    assert.is_false(pcall(core.ctl_encode, all), "the list must not fit in one message")

    local listed = assert(client:active_services())
    assert.equal(n, #listed)
    for i, s in ipairs(listed) do assert.equal(all[i].port, s.port) end
    assert.equal(#relay:free_ports(), #assert(client:available_ports()))

    local r = proc.warren({ "services", "127.0.0.1:" .. relay:port(), "-k", key }, { timeout = 30000 })
    assert.equal(0, r.code, r.stderr)
    assert.equal(n + 1, select(2, r.stdout:gsub("\n", "")))
  end)

  it("pages free ports with after and limit, and refuses a bad page", function()
    local from, to = net.free_range(10)
    local relay, key = relay_with({ ports = { from .. "-" .. to } })
    local client = client_of(relay:port(), key)
    local before = relay:free_ports()
    local taken = assert(client:register({ outer = "any", inner = ":1", name = "taken" })).port
    local free = relay:free_ports()
    assert.equal(9, #free)
    local page = assert(client:_request({ op = "ports", after = free[1], limit = 3 }))
    assert.same({ free[2], free[3], free[4] }, page.ports)
    assert.equal(free[4], page.next)
    page = assert(client:_request({ op = "ports", after = free[4] }))
    assert.same({ free[5], free[6], free[7], free[8], free[9] }, page.ports)
    assert.is_nil(page.next)
    assert.equal(before[1], taken) -- the lowest, and no page shows it
    for _, p in ipairs(free) do assert.are_not.equal(taken, p) end
    local _, err, code = client:_request({ op = "services", limit = 100000 })
    assert.equal("bad_request", code)
    assert.matches("limit", err)
    client:close()
    relay:close()
  end)

  it("releases what a failed control task held: the client hears it at once and the lease frees the port", function()
    local relay, key = relay_with({ ports = { pool(1) }, lease = 1 })
    local answer = relay.registry._answer
    relay.registry._answer = function(self, client, meter, req, err) -- a bug in a handler, injected
      if type(req) == "table" and req.op == "crash" then error("injected failure") end
      return answer(self, client, meter, req, err)
    end
    local client = client_of(relay:port(), key)
    local port = assert(client:register({ outer = "any", inner = ":1", name = "held" })).port
    local t0 = uv.now()
    local reply, err = client:_request({ op = "crash" })
    assert.is_nil(reply)
    assert.equal("connection to the relay lost", err)
    assert.is_true(uv.now() - t0 < 2000, "the client waited for a timeout")
    assert(eventually(function() return relay:services()[1] and relay:services()[1].state == "leased" end, 3000))
    assert(eventually(function() return #relay:free_ports() == 3 end, 5000), "port not freed after the lease")
    assert.is_nil(hold(port))
    client:close()
    relay:close()
  end)

  it("answers an error, and keeps serving, when a hook's answer is too big to send", function()
    local from, to = net.free_range(2)
    local relay, key = relay_with({ ports = { from .. "-" .. to }, hooks = {
      discover = function(list, _, what)
        if what == "services" then return { { name = string.rep("x", 2 * 1024 * 1024) } } end
        return list
      end,
    } })
    local client = client_of(relay:port(), key)
    local _, err, code = client:_request({ op = "services" })
    assert.equal("failed", code)
    assert.matches("could not send", err)
    assert.equal(2, #assert(client:available_ports()))
    client:close()
    relay:close()
  end)
end)

describe("control plane: rate limit", function()
  it("answers a flood from one session with rate_limited and keeps serving the others", function()
    local from, to = net.free_range(4)
    local relay, key = relay_with({ ports = { from .. "-" .. to } })
    local flooder = client_of(relay:port(), key)
    local other = client_of(relay:port(), key, { client_id = "other" })
    assert(flooder:_control())
    local answers, tasks = {}, {}
    for i = 1, 60 do
      tasks[i] = warren.spawn(function()
        local reply, _, code, refusal = flooder:_send_request(flooder.channel, { op = "services" })
        answers[#answers + 1] = reply and "ok" or code
        if refusal then assert.is_true(refusal.retry_after > 0) end
      end)
    end
    local t0 = uv.now()
    assert(other:active_services())
    assert.is_true(uv.now() - t0 < 1000, "another client was held up")
    for _, task in ipairs(tasks) do task:join(10000) end
    local count = { ok = 0, rate_limited = 0 }
    for _, a in ipairs(answers) do count[a] = count[a] + 1 end
    assert.equal(60, count.ok + count.rate_limited)
    assert.is_true(count.ok >= 10 and count.ok < 20, "ok: " .. count.ok) -- the burst: 10 pages
    -- the library waits out rate_limited answers by itself
    for _ = 1, 5 do assert(flooder:active_services()) end
    flooder:close()
    other:close()
    relay:close()
  end)

  it("meters malformed messages like requests", function()
    local relay, key = relay_with({ ports = {} })
    local client = client_of(relay:port(), key)
    local ch = assert(client.session:open_channel(3000))
    -- twice the burst: only a relay slower than 2,000 messages a second would answer them all
    for _ = 1, 4000 do assert(ch:send("not a request")) end
    local count = { bad_request = 0, rate_limited = 0 }
    for _ = 1, 4000 do
      local answer = assert(ch:recv(3000))
      count[answer.error] = count[answer.error] + 1
    end
    assert.is_true(count.bad_request >= 2000, "answered: " .. count.bad_request)
    assert.is_true(count.rate_limited > 0, "none was refused")
    assert.equal(4000, count.bad_request + count.rate_limited)
    ch:close()
    client:close()
    relay:close()
  end)

  it("bounds the control channels of one session", function()
    local relay, key = relay_with({ ports = {} })
    local client = client_of(relay:port(), key)
    local channels = {}
    for i = 1, 4 do
      channels[i] = assert(client.session:open_channel(3000))
      assert(channels[i]:send({ op = "hello", seq = 1, client_id = "c" }))
      assert.is_true(assert(channels[i]:recv(3000)).ok)
    end
    local fifth = assert(client.session:open_channel(3000))
    assert(fifth:send({ op = "hello", seq = 1, client_id = "c" }))
    local refusal = assert(fifth:recv(3000))
    assert.equal("rate_limited", refusal.error)
    assert.matches("control channels", refusal.reason)
    fifth:close()
    channels[1]:close() -- a slot comes free
    assert(eventually(function()
      local ch = assert(client.session:open_channel(3000))
      assert(ch:send({ op = "hello", seq = 1, client_id = "c" }))
      local ok = assert(ch:recv(3000)).ok
      ch:close()
      return ok
    end, 3000))
    for i = 2, 4 do channels[i]:close() end
    client:close()
    relay:close()
  end)
end)

describe("control plane: text from peers", function()
  it("refuses control characters in names and messages", function()
    local relay, key = relay_with({ ports = { pool(1) } })
    local client = client_of(relay:port(), key)
    for _, bad in ipairs({ "\27]0;owned\7", "two\nlines", "c1 \194\155 csi", "bad \255 utf-8" }) do
      local _, err, code = client:register({ outer = "any", inner = ":1", name = "ok", message = bad })
      assert.equal("bad_request", code)
      assert.matches("printable", err)
      _, err, code = client:register({ outer = "any", inner = ":1", name = bad })
      assert.equal("bad_request", code)
      assert.matches("printable", err)
    end
    assert(client:register({ outer = "any", inner = ":1", name = "ünïcode", message = "ok ✓ 日本" }))
    client:close()
    relay:close()
  end)

  it("prints escapes instead of raw control characters, one line per service, aligned by characters", function()
    local relay, key = relay_with({ ports = { pool(2) }, hooks = {
      discover = function(list, _, what) -- an older or hostile relay sends what it likes
        if what == "ports" then return { "\27[2J", 7, { 8 } } end
        if list[1] then
          list[1].message = "\27[2J\27]0;owned\7line one\nline two"
          list[1].max_users, list[1].birth = "\27[31m", "yesterday"
          list[#list + 1] = "\27[5m"
        end
        return list
      end,
    } })
    local client = client_of(relay:port(), key)
    assert(client:register({ outer = "any", inner = ":1", name = "日本語", message = "first" }))
    assert(client:register({ outer = "any", inner = ":1", name = "ascii", message = "second" }))
    local r = proc.warren({ "services", "127.0.0.1:" .. relay:port(), "-k", key }, { timeout = 15000 })
    assert.equal(0, r.code, r.stderr)
    assert.is_nil(r.stdout:find("[%z\1-\9\11-\31\127]"), "raw control bytes in: " .. r.stdout)
    local lines = {}
    for line in r.stdout:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    assert.equal(3, #lines)
    assert.matches("\\e%[2J\\e%]0;owned\\x07line one\\nline two$", lines[2])
    -- MESSAGE starts in the same column (counted in characters) on every line
    local function column_of(line, text)
      local at = line:find(text, 1, true)
      return select(2, line:sub(1, at - 1):gsub("[^\128-\191]", ""))
    end
    assert.equal(column_of(lines[1], "MESSAGE"), column_of(lines[2], "\\e"))
    assert.equal(column_of(lines[1], "MESSAGE"), column_of(lines[3], "second"))
    assert.equal(column_of(lines[1], "STATE"), column_of(lines[2], "up"))
    r = proc.warren({ "ports", "127.0.0.1:" .. relay:port(), "-k", key }, { timeout = 15000 })
    assert.equal(0, r.code, r.stderr)
    assert.equal("7\n", r.stdout)
    client:close()
    relay:close()
  end)
end)

describe("control plane: one client id, two processes", function()
  after_each(reap_children)
  local http, http_port
  setup(function() http, http_port = net.http_server("served by the first") end)
  teardown(function() http:close() end)

  it("refuses a live service to another instance, gives it back to the same one, frees it after the lease", function()
    local relay, key = relay_with({ ports = { pool(2) }, lease = 30 })
    local first = client_of(relay:port(), key, { client_id = "box", keepalive = 1 })
    local entry = assert(first:register({ outer = "any", inner = ":" .. http_port, name = "web" }))
    local port = entry.port
    local states = {}
    entry:on_state(function(state) states[#states + 1] = state end)

    local second = client_of(relay:port(), key, { client_id = "box" })
    local _, err, code = second:register({ outer = port, inner = ":1", name = "web" })
    assert.equal("port_taken", code)
    assert.matches("held by another live client with the same client id %(box%)", err)
    _, err, code = second:register({ outer = "any", inner = ":1", name = "web" })
    assert.equal("name_taken", code)
    assert.matches("held by another live client", err)
    assert.same({}, states) -- the first is untouched and still serves
    assert.equal("served by the first", net.exchange(port, "GET / HTTP/1.0\r\n\r\n"):match("\r\n\r\n(.*)$"))

    -- the same process (same instance token) on another session takes it back at once
    local again = client_of(relay:port(), key, { client_id = "box" })
    again.instance = first.instance
    local back = assert(again:register({ outer = port, inner = ":" .. http_port, name = "web" }))
    assert.equal(port, back.port)
    again:close() -- its session ends: the service is leased, and a new process may take it
    assert(eventually(function() return relay:services()[1].state == "leased" end, 3000))
    assert.equal(port, assert(second:register({ outer = port, inner = ":1", name = "web" })).port)
    first:close()
    second:close()
    relay:close()
  end)

  it("makes a second `warren -R` with the same --client-id exit 1 while the first keeps its port", function()
    local relay, key = relay_with({ ports = { pool(1) } })
    local server = "127.0.0.1:" .. relay:port()
    local first = warren_child({ "-R", "0::" .. http_port, "--name", "web", "--client-id", "box", server,
      "-k", key })
    local port = relay_port_of(first, "web")
    assert(port, select(2, first:output()))
    local r = proc.warren({ "-R", port .. "::" .. http_port, "--name", "web", "--client-id", "box", server, "-k", key },
      { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches("held by another live client with the same client id", r.stderr)
    assert.equal("up", relay:services()[1].state)
    assert.is_nil(first.code)
    first:kill()
    assert.equal(0, first:wait(5000).code)
    relay:close()
  end)
end)

describe("control plane: discovery and the command line", function()
  it("sends --client-id with `warren services` and `warren ports`", function()
    local seen = {}
    local relay, key = relay_with({ ports = {}, hooks = {
      discover = function(list, client, what)
        seen[what] = client.client_id
        return list
      end,
    } })
    local server = "127.0.0.1:" .. relay:port()
    assert.equal(0, proc.warren({ "services", server, "-k", key, "--client-id", "probe-7" }, { timeout = 15000 }).code)
    assert.equal(0, proc.warren({ "ports", "--client-id", "probe-8", server, "-k", key }, { timeout = 15000 }).code)
    assert.same({ services = "probe-7", ports = "probe-8" }, seen)
    relay:close()
  end)

  it("states the relay's user limits and bind rule in --help", function()
    local r = proc.warren({ "--help" })
    assert.equal(0, r.code)
    assert.matches("%-%-max%-users%-default N", r.stdout)
    assert.matches("default 256", r.stdout)
    assert.matches("%-%-user%-idle SECONDS", r.stdout)
    assert.matches("default 600", r.stdout)
    assert.matches("%-%-allow%-client%-bind", r.stdout)
  end)
end)

describe("control plane: -R client lifetime", function()
  after_each(reap_children)
  local http, http_port
  setup(function() http, http_port = net.http_server("alive") end)
  teardown(function() http:close() end)

  it("exits 0 once its services end by --ttl and by --max-total", function()
    local relay, key = relay_with({ ports = { pool(2) } })
    local server = "127.0.0.1:" .. relay:port()
    local t0 = uv.now()
    local r = proc.warren({ "-R", "0::" .. http_port, "--name", "brief", "--ttl", "1", server, "-k", key },
      { timeout = 15000 })
    assert.equal(0, r.code, r.stderr)
    assert.is_true(uv.now() - t0 >= 900)
    local child = warren_child({ "-R", "0::" .. http_port, "--name", "once", "--max-total", "1", server,
      "-k", key })
    local port = assert(relay_port_of(child, "once"))
    assert.equal("alive", net.exchange(port, "GET / HTTP/1.0\r\n\r\n"):match("\r\n\r\n(.*)$"))
    local done = child:wait(10000)
    assert.equal(0, done.code, done.stderr)
    relay:close()
  end)

  it("exits 1 with the reason when the relay refuses its service after a restart", function()
    local key, relay_port = keys.generate(), net.free_port()
    local relay = warren_child({ "serve", "127.0.0.1:" .. relay_port, "-k", key, "--ports", pool(1),
      "--outer-bind", "127.0.0.1" })
    assert(net.wait_port(relay_port))
    local client = warren_child({ "-R", "0::" .. http_port, "--name", "svc", "127.0.0.1:" .. relay_port,
      "-k", key })
    local a = assert(relay_port_of(client, "svc"))
    relay:kill()
    relay:wait(5000)
    local b = a
    while b == a do b = net.free_port() end
    relay = warren_child({ "serve", "127.0.0.1:" .. relay_port, "-k", key, "--ports", tostring(b),
      "--outer-bind", "127.0.0.1" })
    local done = client:wait(15000)
    assert.is_truthy(done, "the client kept running")
    assert.equal(1, done.code)
    assert.matches("service svc ended: port " .. a .. " is not in the pool", done.stderr)
    relay:kill()
    relay:wait(5000)
  end)

  it("releases its ports at the relay at once on SIGTERM", function()
    local unregistered = {}
    local relay, key = relay_with({ ports = { pool(1) }, lease = 30, hooks = {
      unregister = function(svc, reason) unregistered[svc.name] = reason end,
    } })
    local client = warren_child({ "-R", "0::" .. http_port, "--name", "web", "127.0.0.1:" .. relay:port(),
      "-k", key })
    local port = assert(relay_port_of(client, "web"))
    local t0 = uv.now()
    client:kill("sigterm")
    local done = client:wait(5000)
    assert.equal(0, done.code, done.stderr)
    assert(eventually(function() return #relay:free_ports() == 3 end, 2000), "port still leased")
    assert.is_true(uv.now() - t0 < 3000)
    assert.equal("released by the client", unregistered.web)
    assert.is_nil(hold(port))
    relay:close()
  end)
end)

describe("control plane: the operator's limits", function()
  after_each(reap_children)
  local echo, echo_port
  setup(function() echo, echo_port = net.echo_server() end)
  teardown(function() echo:close() end)

  it("enforces --outer-bind unless clients may choose", function()
    local ports = pool(2)
    local relay, key = relay_with({ ports = { ports }, outer_bind = "127.0.0.1" })
    local client = client_of(relay:port(), key)
    local _, err, code = client:register({ outer = "any", inner = ":1", name = "wide", bind = "0.0.0.0" })
    assert.equal("bind_refused", code)
    assert.matches("listen on 127.0.0.1 only", err)
    assert(client:register({ outer = "any", inner = ":1", name = "same", bind = "127.0.0.1" }))
    client:close()
    relay:close()

    relay, key = relay_with({ ports = { ports }, outer_bind = "127.0.0.1", allow_client_bind = true })
    client = client_of(relay:port(), key)
    local entry = assert(client:register({ outer = "any", inner = ":" .. echo_port, name = "own", bind = "127.0.0.2" }))
    assert.is_nil(hold(entry.port)) -- not on 127.0.0.1: on the client's 127.0.0.2
    client:close()
    relay:close()
  end)

  it("caps users and closes idle ones by default, and `serve` sets both", function()
    local key, relay_port = keys.generate(), net.free_port()
    local relay = warren_child({ "serve", "127.0.0.1:" .. relay_port, "-k", key, "--ports", pool(1),
      "--outer-bind", "127.0.0.1", "--max-users-default", "2", "--user-idle", "1" })
    assert(net.wait_port(relay_port))
    local client = client_of(relay_port, key)
    local port = assert(client:register({ outer = "any", inner = ":" .. echo_port, name = "e" })).port
    local a, b = assert(hold(port)), assert(hold(port))
    assert.equal("a", echo_of(a, "a"))
    assert.equal("b", echo_of(b, "b"))
    local third = assert(hold(port))
    assert.is_true(closed_by_peer(third, 500), "a third user was let in")
    local t0 = uv.now()
    assert.is_true(closed_by_peer(a, 5000), "an idle user was kept")
    assert.is_true(uv.now() - t0 < 4000)
    b:close()
    local listed = assert(client:active_services())
    assert.equal(2, listed[1].max_users)
    assert.equal(1, listed[1].idle_timeout)
    client:close()
    relay:kill()
    relay:wait(5000)
  end)

  it("defaults to 256 users and a 10 minute idle timeout", function()
    local relay, key = relay_with({ ports = { pool(2) } })
    local client = client_of(relay:port(), key)
    assert(client:register({ outer = "any", inner = ":1", name = "d" }))
    assert(client:register({ outer = "any", inner = ":1", name = "mine", max_users = 1000, idle_timeout = 5 }))
    local listed = assert(client:active_services())
    assert.equal(256, listed[1].max_users)
    assert.equal(600, listed[1].idle_timeout)
    assert.equal(1000, listed[2].max_users) -- the client's own limits come first
    assert.equal(5, listed[2].idle_timeout)
    client:close()
    relay:close()
  end)
end)

describe("control plane: relay stats", function()
  it("counts reverse-tunnel users and bytes in relay:stats()", function()
    local echo, echo_port = net.echo_server()
    local relay, key = relay_with({ ports = { pool(1) } })
    local client = client_of(relay:port(), key)
    local entry = assert(client:register({ outer = "any", inner = ":" .. echo_port, name = "e" }))
    local port = entry.port
    assert.equal(0, relay:stats().reverse_users_total)
    assert.equal("hello", net.exchange(port, "hello", { want = 5 }))
    assert.equal("abc", net.exchange(port, "abc", { want = 3 }))
    assert(eventually(function() return relay:stats().reverse_users_active == 0 end, 3000))
    local st = relay:stats()
    assert.equal(2, st.reverse_users_total)
    assert.equal(8, st.reverse_bytes_up)
    assert.equal(8, st.reverse_bytes_down)
    -- a user still connected when its service ends is counted until it leaves, and after
    local held = assert(hold(port))
    assert.equal("held", echo_of(held, "held"))
    entry:cancel()
    assert.is_nil(hold(port))
    st = relay:stats()
    assert.equal(1, st.reverse_users_active)
    assert.equal(3, st.reverse_users_total)
    held:close()
    assert(eventually(function() return relay:stats().reverse_users_active == 0 end, 3000))
    st = relay:stats()
    assert.equal(3, st.reverse_users_total)
    assert.equal(12, st.reverse_bytes_up)
    assert.equal(12, st.reverse_bytes_down)
    assert.equal(st.reverse_bytes_up, relay:stats().reverse_bytes_up) -- counted once
    client:close()
    relay:close()
    echo:close()
  end)
end)
