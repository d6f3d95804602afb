-- luacheck: std +busted
-- Reverse tunnels: a client registers inner services onto a relay's outer ports. Relay and
-- client run in this process or as child processes; users are real sockets and curl.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local eventually = require("helpers.wait").eventually
local keys = require("warren.keys")

-- A pool of n consecutive ports that were free a moment ago.
local free_range = net.free_range

-- A server that speaks first: a banner on connect, then echo.
local function banner_server(banner)
  return assert(net.serve(function(peer)
    peer:write(banner)
    peer:read_start(function(_, data)
      if data then peer:write(data) else peer:close() end
    end)
  end))
end

-- Opens a connection (from the local address `from`, if given) and keeps it: returns the handle
-- once connected (or nil).
local function hold(port, from)
  local c = uv.new_tcp()
  if from then assert(c:bind(from, 0)) end
  local ok = warren.await(function(resolve)
    c:connect("127.0.0.1", port, function(e) resolve(not e) end)
  end, 3000)
  if not ok then c:close() return nil end
  return c
end

-- Reads from a connection until `want` bytes or EOF; "" on EOF with nothing.
local function read_some(c, want, timeout)
  local parts, got = {}, 0
  local r = warren.await(function(resolve)
    c:read_start(function(e, chunk)
      if e or not chunk then return resolve(table.concat(parts)) end
      parts[#parts + 1] = chunk
      got = got + #chunk
      if got >= want then resolve(table.concat(parts)) end
    end)
  end, timeout or 3000)
  c:read_stop()
  return r
end

local function setup_pair(relay_opts, client_opts)
  local key = keys.generate()
  relay_opts.listen = "127.0.0.1:0"
  relay_opts.key = key
  relay_opts.outer_bind = "127.0.0.1" -- tests stay on loopback
  local relay = assert(warren.relay(relay_opts))
  client_opts = client_opts or {}
  client_opts.server = "127.0.0.1:" .. relay:port()
  client_opts.key = key
  local client = assert(warren.client(client_opts))
  assert(client:connect())
  return relay, client, key
end

describe("reverse tunnels", function()
  local http, http_port
  setup(function() http, http_port = net.http_server("hello from the inner service") end)
  teardown(function() http:close() end)

  it("refuses a hook table with a name it does not know, or a hook that is not a function", function()
    local relay, err = warren.relay({ listen = "127.0.0.1:0", key = keys.generate(),
      hooks = { dail = function() end } })
    assert.is_nil(relay)
    assert.matches('unknown hook "dail"', err)
    relay, err = warren.relay({ listen = "127.0.0.1:0", key = keys.generate(), hooks = { auth = true } })
    assert.is_nil(relay)
    assert.matches("hook auth must be a function", err)
  end)

  -- The messages logged from now on, and the function that stops collecting them.
  local function capture_log()
    local records = {}
    local sink = function(record) records[#records + 1] = record.msg end
    require("warren.log").add_sink(sink)
    return records, function() require("warren.log").remove_sink(sink) end
  end

  it("logs a failing hook with its traceback, and denies", function()
    local records, stop_capture = capture_log()
    local from, to = free_range(2)
    local relay, client = setup_pair({ ports = { from .. "-" .. to },
      hooks = { register = function() error("no such table") end } })
    local entry, err = client:register({ outer = "any", inner = ":" .. http_port, name = "web" })
    assert.is_nil(entry)
    assert.matches("hook failed", err)
    local logged = table.concat(records, "\n")
    assert.matches("register hook failed %(denied%).*no such table.*stack traceback", logged)
    stop_capture()
    client:close()
    relay:close()
  end)

  -- LuaJIT's count hook does not fire in compiled loops: a guarded hook runs interpreted, under a
  -- budget of instructions per call (warren.guard).
  it("denies and logs a hook that loops, and keeps serving", function()
    local records, stop_capture = capture_log()
    local from, to = free_range(2)
    local relay, client = setup_pair({ ports = { from .. "-" .. to },
      hooks = { register = function(svc)
        local n = 0
        if svc.name == "spin" then while true do n = n + 1 end end
        return true
      end } })
    local entry, err = client:register({ outer = "any", inner = ":" .. http_port, name = "spin" })
    assert.is_nil(entry)
    assert.matches("hook failed", err)
    assert.matches("register hook failed %(denied%).*ran past its budget", table.concat(records, "\n"))
    -- the loop is over: the relay serves the next registration, and the hook is still guarded
    assert.is_truthy(client:register({ outer = "any", inner = ":" .. http_port, name = "web" }))
    entry = client:register({ outer = "any", inner = ":" .. http_port, name = "spin" })
    assert.is_nil(entry)
    stop_capture()
    client:close()
    relay:close()
  end)

  it("lets one address hold only its share of an outer port, so others still get in", function()
    local records, stop_capture = capture_log()
    local from, to = free_range(2)
    local relay, client = setup_pair({ ports = { from .. "-" .. to }, max_users_per_address = 5 })
    local entry = assert(client:register({ outer = "any", inner = ":" .. http_port, name = "web" }))
    local held = {}
    for _ = 1, 8 do -- a slowloris source: connects and sends nothing
      held[#held + 1] = hold(entry.port, "127.0.0.4")
    end
    assert(eventually(function() return relay:stats().reverse_users_refused >= 3 end, 5000))
    assert.equal(3, relay:stats().reverse_users_refused)
    -- said once (per 10 s), with the address and the limit, not once per refusal
    stop_capture()
    local refusals = {}
    for _, msg in ipairs(records) do
      if msg:find("max_users_per_address", 1, true) then refusals[#refusals + 1] = msg end
    end
    assert.equal(1, #refusals, table.concat(records, "\n"))
    assert.matches("^port %d+: 127%.0%.0%.4 holds its 5 users already", refusals[1])
    local r = proc.run({ "curl", "-s", "-m", "5", "http://127.0.0.1:" .. entry.port .. "/" })
    assert.equal("hello from the inner service", r.stdout)
    for _, c in ipairs(held) do c:close() end
    client:close()
    relay:close()
  end)

  it("frees an address's share when a user has finished sending, before the service closes", function()
    -- a service that never closes: the tunnels of users who sent their EOF stay open
    local peers, eofs = {}, 0
    local service, service_port = assert(net.serve(function(peer)
      peers[#peers + 1] = peer
      peer:read_start(function(_, data) if not data then eofs = eofs + 1 end end)
    end))
    local from, to = free_range(1)
    local relay, client = setup_pair({ ports = { from .. "-" .. to }, max_users_per_address = 2 })
    local entry = assert(client:register({ outer = from, inner = "127.0.0.1:" .. service_port, name = "quiet" }))
    local users = {}
    local function user()
      local c = hold(entry.port, "127.0.0.4")
      users[#users + 1] = c
      return c
    end
    for _ = 1, 2 do user():shutdown() end
    assert(eventually(function() return eofs == 2 end, 5000))
    -- two users done sending, their tunnels still open: two more from the address get in
    user()
    user()
    assert(eventually(function() return #peers == 4 end, 5000))
    assert.equal(0, relay:stats().reverse_users_refused)
    -- and the share still holds for users that are sending
    user()
    assert(eventually(function() return relay:stats().reverse_users_refused == 1 end, 5000))
    assert.equal(4, #peers)
    for _, c in ipairs(users) do c:close() end
    for _, p in ipairs(peers) do p:close() end
    service:close()
    client:close()
    relay:close()
  end)

  it("registers, is discovered, and serves curl through the outer port", function()
    local from, to = free_range(4)
    local relay, client, key = setup_pair({ ports = { from .. "-" .. to } })
    local entry, err = client:register({ outer = "any", inner = ":" .. http_port, name = "web",
      message = "a web page" })
    assert.is_truthy(entry, err)
    assert.is_true(entry.port >= from and entry.port <= to)
    assert.equal("active", entry.state)
    assert.equal(entry, client:entry("web"))
    assert.equal(entry, client:entry(entry.port))

    local services = assert(client:active_services())
    assert.equal(1, #services)
    assert.equal("web", services[1].name)
    assert.equal("a web page", services[1].message)
    assert.equal(entry.port, services[1].port)
    local free = assert(client:available_ports())
    assert.equal(3, #free)
    -- discovery from a separate one-shot client, and only with the key
    local listed = assert(warren.services("127.0.0.1:" .. relay:port(), key))
    assert.equal("web", listed[1].name)
    local wrong = warren.free_ports("127.0.0.1:" .. relay:port(), keys.generate())
    assert.is_nil(wrong)

    local r = proc.run({ "curl", "-s", "--max-time", "5", "http://127.0.0.1:" .. entry.port .. "/" }, 10000)
    assert.equal(0, r.code, r.stderr)
    assert.equal("hello from the inner service", r.stdout)
    services = assert(client:active_services())
    assert.equal(1, services[1].users_served)

    assert.is_true(entry:cancel())
    assert.equal("done", entry.state)
    assert.equal(0, #assert(client:active_services()))
    assert.is_nil(hold(entry.port))
    client:close()
    relay:close()
  end)

  it("carries a server that speaks first", function()
    local banner, banner_port = banner_server("SSH-2.0-banner\r\n")
    local from, to = free_range(1)
    local relay, client = setup_pair({ ports = { from .. "-" .. to } })
    local entry = assert(client:register({ outer = from, inner = "127.0.0.1:" .. banner_port, name = "speaker" }))
    assert.equal(from, entry.port)
    local c = assert(hold(entry.port))
    assert.equal("SSH-2.0-banner\r\n", read_some(c, 16))
    c:close()
    banner:close()
    client:close()
    relay:close()
  end)

  it("refuses users over max_users while the port stays bound, and ends after max_total", function()
    local echo, echo_port = net.echo_server()
    local from, to = free_range(1)
    local relay, client = setup_pair({ ports = { from .. "-" .. to } })
    local entry = assert(client:register({ outer = from, inner = ":" .. echo_port, name = "e", max_users = 2,
      max_total = 4 }))
    local deadline
    local a, b = assert(hold(from)), assert(hold(from))
    a:write("a"); b:write("b")
    assert.equal("a", read_some(a, 1))
    assert.equal("b", read_some(b, 1))
    local c = assert(hold(from), "port unbound while busy")
    assert.equal("", read_some(c, 1)) -- refused: closed at once
    c:close()
    a:close()
    deadline = uv.now() + 3000
    while uv.now() < deadline and assert(client:active_services())[1].users_online > 1 do warren.sleep(20) end
    local d = assert(hold(from))
    d:write("d")
    assert.equal("d", read_some(d, 1))
    d:close(); b:close()
    deadline = uv.now() + 3000
    while uv.now() < deadline and assert(client:active_services())[1].users_online > 0 do warren.sleep(20) end
    -- users served so far: a, b, d (c was refused); one more, then the service ends
    local e = assert(hold(from))
    e:write("e")
    assert.equal("e", read_some(e, 1))
    e:close()
    assert.equal("served its 4 users", entry:wait(5000))
    assert.equal("done", entry.state)
    assert.is_nil(hold(from))
    echo:close()
    client:close()
    relay:close()
  end)

  it("ends a service when its lifetime is over", function()
    local from, to = free_range(1)
    local relay, client = setup_pair({ ports = { from .. "-" .. to } })
    local states = {}
    local entry = assert(client:register({ outer = from, inner = ":" .. http_port, name = "brief", ttl = 1,
      on_state = function(state) states[#states + 1] = state end }))
    local t0 = uv.now()
    assert.equal("lifetime over", entry:wait(5000))
    assert.is_true(uv.now() - t0 >= 900)
    assert.same({ "active", "done" }, states)
    client:close()
    relay:close()
  end)

  it("answers each refusal with its reason", function()
    local from, to = free_range(2)
    local relay, client, key = setup_pair({
      ports = { from .. "-" .. to },
      hooks = {
        register = function(svc) if svc.name == "forbidden" then return false, "not this one" end return true end,
      },
    })
    local _, err, code = client:register({ outer = to + 1, inner = ":1", name = "x" })
    assert.equal("not_in_pool", code, err)
    _, err, code = client:register({ outer = from, inner = ":1", name = "forbidden" })
    assert.equal("denied", code)
    assert.equal("not this one", err)
    assert.is_truthy(client:register({ outer = from, inner = ":1", name = "first" }))
    -- a second client races for the same port and the same name
    local other = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = key, client_id = "other" }))
    assert(other:connect())
    _, err, code = other:register({ outer = from, inner = ":1", name = "second" })
    assert.equal("port_taken", code, err)
    _, err, code = other:register({ outer = to, inner = ":1", name = "first" })
    assert.equal("name_taken", code, err)
    -- bad fields get a clear error and the relay keeps serving
    local reply, rerr, rcode = client:_request({ op = "register", id = 99, name = 12, outer = "x" })
    assert.is_nil(reply)
    assert.equal("bad_request", rcode)
    assert.matches("name", rerr)
    _, _, code = client:_request({ op = "launch" })
    assert.equal("bad_request", code)
    assert.is_truthy(other:register({ outer = to, inner = ":1", name = "second" }))
    other:close()
    client:close()
    relay:close()
  end)

  it("runs the relay's hooks: auth, user connect and close, taps, up and down", function()
    local from, to = free_range(2) -- one port stays free, and discover hides it
    local events, tapped = {}, { up = "", down = "" }
    local key = keys.generate()
    local relay = assert(warren.relay({
      listen = "127.0.0.1:0", key = key, ports = { from .. "-" .. to }, outer_bind = "127.0.0.1",
      hooks = {
        auth = function(client)
          if client.client_id == "intruder" then return false, "who are you?" end
          return true
        end,
        user_connect = function(svc)
          svc.store.users = (svc.store.users or 0) + 1
          if svc.store.users == 2 then return false, "second user turned away" end
          return true
        end,
        user_close = function(_, info) events[#events + 1] = "close " .. info.bytes_up .. "/" .. info.bytes_down end,
        up = function(svc) events[#events + 1] = "up " .. svc.name end,
        down = function(_, reason) events[#events + 1] = "down " .. reason end,
        tap = function(_, _, direction, bytes) tapped[direction] = tapped[direction] .. bytes end,
        tap_bytes = 4,
        discover = function(list, _, what)
          if what == "ports" then return {} end -- free ports are nobody's business here
          return list
        end,
      },
    }))
    local server = "127.0.0.1:" .. relay:port()
    local intruder = assert(warren.client({ server = server, key = key, client_id = "intruder" }))
    assert(intruder:connect())
    local _, err, code = intruder:register({ outer = from, inner = ":" .. http_port, name = "x" })
    assert.equal("denied", code)
    assert.equal("who are you?", err)
    intruder:close()

    local client = assert(warren.client({ server = server, key = key }))
    assert(client:connect())
    local entry = assert(client:register({ outer = from, inner = ":" .. http_port, name = "web" }))
    assert.same({}, assert(client:available_ports()))
    assert.equal("web", assert(client:active_services())[1].name)
    local r = proc.run({ "curl", "-s", "--max-time", "5", "http://127.0.0.1:" .. from .. "/" }, 10000)
    assert.equal("hello from the inner service", r.stdout)
    r = proc.run({ "curl", "-s", "--max-time", "5", "http://127.0.0.1:" .. from .. "/" }, 10000)
    assert.equal("", r.stdout) -- the second user was turned away
    eventually(function() return #events >= 2 end) -- the first user's close
    entry:cancel()
    eventually(function() return #events >= 3 end)
    assert.equal("up web", events[1])
    assert.matches("^close %d+/%d+$", events[2])
    assert.equal("down cancelled by the client", events[3])
    assert.equal("GET ", tapped.up)
    assert.equal("HTTP", tapped.down)
    client:close()
    relay:close()
  end)

  it("lets two clients race for one port: exactly one wins", function()
    local from, to = free_range(1)
    local key = keys.generate()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = key, ports = { from .. "-" .. to },
      outer_bind = "127.0.0.1" }))
    local results = {}
    local tasks = {}
    for i = 1, 2 do
      tasks[i] = warren.spawn(function()
        local c = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = key, client_id = "racer" .. i }))
        assert(c:connect())
        local e, _, code = c:register({ outer = from, inner = ":" .. http_port, name = "race" .. i })
        results[i] = e and "ok" or code
        return c
      end)
    end
    local c1 = select(2, tasks[1]:join(10000))
    local c2 = select(2, tasks[2]:join(10000))
    table.sort(results)
    assert.same({ "ok", "port_taken" }, results)
    c1:close(); c2:close()
    relay:close()
  end)

  it("keeps a dropped client's port through the lease and gives it back", function()
    local from, to = free_range(2)
    local relay, client = setup_pair({ ports = { from .. "-" .. to }, lease = 30 }, { keepalive = 1 })
    local entry = assert(client:register({ outer = "any", inner = ":" .. http_port, name = "kept" }))
    local port = entry.port
    local states = {}
    entry:on_state(function(state) states[#states + 1] = state end)
    client.session:close() -- drop the session; the client reconnects by itself
    local deadline = uv.now() + 10000
    while uv.now() < deadline and not (entry.state == "active" and #states >= 2) do warren.sleep(50) end
    assert.same({ "lost", "active" }, states)
    assert.equal(port, entry.port)
    local r = proc.run({ "curl", "-s", "--max-time", "5", "http://127.0.0.1:" .. port .. "/" }, 10000)
    assert.equal("hello from the inner service", r.stdout)
    client:close()
    relay:close()
  end)
end)

-- The command line: warren serve --ports and warren -R as separate processes.
describe("warren -R and warren serve --ports", function()
  local function start(args)
    local spec = { proc.warren_bin }
    for _, a in ipairs(args) do spec[#spec + 1] = a end
    return proc.start(spec)
  end

  local function services(relay_port, k)
    return proc.warren({ "services", "127.0.0.1:" .. relay_port, "-k", k }, { timeout = 15000 })
  end

  it("publishes sshd with -R and ssh logs in through the outer port", function()
    local sshd, why = require("helpers.sshd").start()
    if not sshd then return pending(why) end
    local from, to = free_range(2)
    local k, relay_port = keys.generate(), net.free_port()
    local relay = start({ "serve", "127.0.0.1:" .. relay_port, "-k", k, "--ports", from .. "-" .. to,
      "--outer-bind", "127.0.0.1" })
    assert(net.wait_port(relay_port))
    local client = start({ "-R", "0:127.0.0.1:" .. sshd.port, "--name", "ssh", "--message", "ssh login",
      "127.0.0.1:" .. relay_port, "-k", k })
    assert(eventually(function() return client:output():find("ssh: relay port") end, 10000), "no port printed")
    local port = tonumber(client:output():match("ssh: relay port (%d+)"))
    assert.is_true(port >= from and port <= to)
    local r = sshd.ssh(port, "echo through a reverse tunnel")
    assert.equal(0, r.code, r.stderr)
    assert.equal("through a reverse tunnel\n", r.stdout)
    -- the relay may learn of the user's close a moment after ssh exits
    local listed
    assert(eventually(function()
      listed = services(relay_port, k)
      return listed.stdout:find(port .. "%s+ssh%s+up%s+0%s+1%s+.*ssh login")
    end, 5000), listed.stdout .. listed.stderr)
    assert.equal(0, listed.code, listed.stderr)
    assert.matches("PORT%s+NAME%s+STATE%s+ONLINE%s+SERVED", listed.stdout)
    local ports = proc.warren({ "ports", "127.0.0.1:" .. relay_port, "-k", k }, { timeout = 15000 })
    assert.equal((port == from and to or from) .. "\n", ports.stdout)
    client:kill(); relay:kill()
    client:wait(5000); relay:wait(5000)
    sshd.stop()
  end)

  it("brings every client back after a relay restart, and frees a killed client's ports after the lease", function()
    local from, to = free_range(3)
    local k, relay_port = keys.generate(), net.free_port()
    local relay_args = { "serve", "127.0.0.1:" .. relay_port, "-k", k, "--ports", from .. "-" .. to, "--lease", "2",
      "--outer-bind", "127.0.0.1" }
    local relay = start(relay_args)
    assert(net.wait_port(relay_port))
    local http, http_port = net.http_server("behind nat")
    local clients = {}
    for i = 1, 3 do
      clients[i] = start({ "-R", (from + i - 1) .. "::" .. http_port, "--name", "svc" .. i, "--client-id", "c" .. i,
        "--keepalive", "1", "127.0.0.1:" .. relay_port, "-k", k })
    end
    assert(eventually(function() return select(2, services(relay_port, k).stdout:gsub("\n", "")) == 4 end, 10000))

    relay:kill()
    relay:wait(5000)
    local t0 = uv.now()
    relay = start(relay_args)
    assert(net.wait_port(relay_port))
    local back = eventually(function()
      for p = from, to do
        local r = proc.run({ "curl", "-s", "--max-time", "2", "http://127.0.0.1:" .. p .. "/" }, 5000)
        if r.stdout ~= "behind nat" then return false end
      end
      return true
    end, 10000)
    assert.is_true(back, "clients not back within 10 s")
    assert.is_true(uv.now() - t0 < 10000)

    -- kill one client: its port stays bound for the 2 s lease, then returns to the pool
    clients[1]:kill("sigkill")
    clients[1]:wait(5000)
    assert(eventually(function() return services(relay_port, k).stdout:find("svc1%s+leased") end, 5000))
    assert(eventually(function()
      return proc.warren({ "ports", "127.0.0.1:" .. relay_port, "-k", k }, { timeout = 15000 }).stdout == from .. "\n"
    end, 8000), "port not freed after the lease")
    -- a restarted client with the same id takes its port back at once, even inside a lease
    clients[2]:kill("sigkill")
    clients[2]:wait(5000)
    clients[2] = start({ "-R", (from + 1) .. "::" .. http_port, "--name", "svc2", "--client-id", "c2",
      "127.0.0.1:" .. relay_port, "-k", k })
    assert(eventually(function() return clients[2]:output():find("svc2: relay port " .. (from + 1)) end, 10000))
    for i = 2, 3 do clients[i]:kill() end
    relay:kill()
    for i = 2, 3 do clients[i]:wait(5000) end
    relay:wait(5000)
    http:close()
  end)

  it("refuses bad -R specs and bad port ranges with a clear error", function()
    local r = proc.warren({ "-R", "9000", "127.0.0.1:1", "-k", "x" })
    assert.equal(2, r.code)
    assert.matches("needs an inner address", r.stderr)
    r = proc.warren({ "serve", "127.0.0.1:0", "-k", "x", "--ports", "9939-9930" })
    assert.equal(2, r.code) -- a usage error, like every bad flag
    assert.matches("runs backwards", r.stderr)
    r = proc.warren({ "serve", "127.0.0.1:0", "-k", "x", "--ports", "70000-70001" })
    assert.equal(2, r.code)
    assert.matches("outside 1%-65535", r.stderr)
  end)
end)
