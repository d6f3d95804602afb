-- luacheck: std +busted
-- Users: a relay holding several keys, one per user, each with its own outer port ranges and
-- limits; hooks and `warren status` see the user; a reload that removes a user (or changes its
-- key) ends that user's sessions and no one else's. Real processes on loopback.
local uv = require("luv")
local proc = require("helpers.proc")
require("helpers.reaper").per_test(before_each, after_each)
local net = require("helpers.net")
local wait = require("helpers.wait")

local dir = os.tmpname()
os.remove(dir)
assert(uv.fs_mkdir(dir, tonumber("700", 8)))

local function write(path, text)
  local f = assert(io.open(path .. ".new", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".new", path))
end

local function key_file(name)
  local path = dir .. "/" .. name .. ".key"
  write(path, proc.key() .. "\n")
  return path
end

local alice_key, bob_key, stranger_key = key_file("alice"), key_file("bob"), key_file("stranger")

local function echoes(port)
  local payload = "ping " .. port
  return net.exchange(port, payload, { want = #payload, timeout = 3000 }) == payload
end

-- `warren -R SPEC RELAY --client-id ID --key-file KEY`: the child once it registered or failed.
local function register(relay_port, spec, client_id, key)
  local child = proc.start({ proc.warren_bin, "-R", spec, "--name", client_id .. " " .. spec, "--client-id", client_id,
    "127.0.0.1:" .. relay_port, "--key-file", key })
  local ok = wait.eventually(function() return child.code ~= nil or child:output():find("relay port", 1, true) end,
    20000)
  assert(ok, "-R neither registered nor failed")
  return child
end

-- Waits until a child has logged `text` (stderr).
local function logged(child, text, timeout_ms)
  return wait.eventually(function() return select(2, child:output()):find(text, 1, true) end, timeout_ms)
end

local sockets = 0
-- `warren --control SOCK run SCRIPT` for a relay script that `make(port)` writes; returns the child,
-- its port and the control socket.
local function run_relay(path, make)
  for _ = 1, 4 do
    local port = net.free_port()
    write(path, make(port))
    sockets = sockets + 1
    local sock = string.format("%s/control%d.sock", dir, sockets)
    local child = proc.start({ proc.warren_bin, "--control", sock, "run", path })
    local up = wait.eventually(function()
      return child.code ~= nil or select(2, child:output()):find("relay listening on", 1, true)
    end, 15000)
    if up and child.code == nil then return child, port, sock end
    child:wait(5000)
  end
  error("the relay script did not start")
end

local function status(sock)
  local r = proc.warren({ "status", "--control", sock })
  assert.equal(0, r.code, r.stderr)
  return r.stdout
end

-- The relay script: `users` is Lua source for the body of its users table. The auth hook lets
-- a client in only when its client id is its user's name, so what the hook sees is tested.
local function relay_script(port, users)
  return string.format([[
return {
  serve = "127.0.0.1:%d",
  users = { %s },
  hooks = {
    auth = function(client)
      if client.client_id ~= client.user then
        return false, "client id " .. client.client_id .. " is not user " .. tostring(client.user)
      end
      return true
    end,
  },
}
]], port, users)
end

local function user(name, key, from, extra)
  return string.format("%s = { key_file = %q, ports = { \"%d-%d\" }%s },", name, key, from, from + 1, extra or "")
end

describe("users", function()
  local echo, echo_port

  setup(function() echo, echo_port = net.echo_server() end)
  teardown(function() echo:close() end)

  it("keeps each user to its own ports, shows the user to hooks and status, refuses other keys", function()
    local a, b = net.free_range(2), net.free_range(2)
    local relay, relay_port, sock = run_relay(dir .. "/two.lua", function(port)
      return relay_script(port, user("alice", alice_key, a) .. user("bob", bob_key, b))
    end)
    local alice = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", a, echo_port), "alice", alice_key)
    assert.is_nil(alice.code, select(2, alice:output()))
    assert.is_true(echoes(a))
    -- outside its ranges: refused with the reason
    local r = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", b, echo_port), "alice", alice_key)
      :wait(10000)
    assert.equal(1, r.code)
    assert.matches("port " .. b .. " is not among the ports of user alice %(" .. a .. "%-" .. a + 1 .. "%)", r.stderr)
    -- "any port" picks one of the user's own
    local any = register(relay_port, "0:127.0.0.1:" .. echo_port, "bob", bob_key)
    assert.is_nil(any.code, select(2, any:output()))
    assert.matches("relay port " .. b, any:output())
    assert.is_true(echoes(b))
    -- the auth hook sees which key the client holds
    r = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", b + 1, echo_port), "alice", bob_key)
      :wait(10000)
    assert.equal(1, r.code)
    assert.matches("client id alice is not user bob", r.stderr)
    -- a key no user holds gets what a wrong key always got
    r = proc.warren({ "-R", "0:127.0.0.1:" .. echo_port, "127.0.0.1:" .. relay_port, "--key-file", stranger_key },
      { timeout = 30000 })
    assert.equal(1, r.code)
    assert.matches("wrong key", r.stderr)
    local text = status(sock)
    assert.matches("user alice, up", text)
    assert.matches("user bob, up", text)
    for _, child in ipairs({ alice, any, relay }) do
      child:kill()
      child:wait(5000)
    end
  end)

  it("ends a removed user's sessions on reload, and only that user's", function()
    local a, b = net.free_range(2), net.free_range(2)
    local path = dir .. "/reload.lua"
    local relay, relay_port, sock = run_relay(path, function(port)
      return relay_script(port, user("alice", alice_key, a) .. user("bob", bob_key, b))
    end)
    local alice = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", a, echo_port), "alice", alice_key)
    local bob = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", b, echo_port), "bob", bob_key)
    assert.is_nil(alice.code, select(2, alice:output()))
    assert.is_nil(bob.code, select(2, bob:output()))
    assert.is_true(echoes(a) and echoes(b))
    -- a held connection of alice's user goes on through the reload
    local held = assert(uv.new_tcp())
    local got = {}
    held:connect("127.0.0.1", a, function(err)
      assert(not err, err)
      held:read_start(function(_, data) if data then got[#got + 1] = data end end)
      held:write("before")
    end)
    assert.is_true(wait.eventually(function() return table.concat(got) == "before" end, 5000))

    write(path, relay_script(relay_port, user("alice", alice_key, a)))
    local r = proc.warren({ "reload", "--control", sock }, { timeout = 30000 })
    assert.equal(0, r.code, r.stderr)
    assert.truthy(logged(relay, "user bob was removed or given another key: 1 of its sessions end", 5000),
      select(2, relay:output()))
    -- bob's client lost its session and cannot come back with that key
    local text
    assert.truthy(wait.eventually(function()
      text = status(sock)
      return not text:find("user bob", 1, true) and text:find("user alice, up", 1, true)
    end, 10000), text)
    held:write("after")
    assert.is_true(wait.eventually(function() return table.concat(got) == "beforeafter" end, 5000))
    assert.is_true(echoes(a))
    held:close()
    for _, child in ipairs({ alice, bob, relay }) do
      child:kill()
      child:wait(5000)
    end
  end)

  it("handshakes with the last of 100 users, and caps a user's sessions", function()
    local lines = {}
    for i = 1, 99 do lines[i] = string.format("user%d %s", i, key_file("u" .. i)) end
    local last = key_file("last")
    lines[100] = "last " .. last .. " max_sessions=1"
    local users = dir .. "/users"
    write(users, "# name key-file [ranges] [max_sessions=N]\n" .. table.concat(lines, "\n") .. "\n")
    local relay, relay_port = proc.serve({ "--users", users })
    local function forward(port)
      return proc.start({ proc.warren_bin, "-L", string.format("127.0.0.1:%d:127.0.0.1:%d", port, echo_port),
        "127.0.0.1:" .. relay_port, "--key-file", last })
    end
    local p1 = net.free_port()
    local first = forward(p1)
    assert.is_true(wait.eventually(function() return echoes(p1) end, 10000), select(2, first:output()))
    -- a second session of the same user is closed as soon as it is up
    local p2 = net.free_port()
    local second = forward(p2)
    assert.truthy(logged(relay, "user last has its 1 sessions already", 10000), select(2, relay:output()))
    -- and the client is told why, not just cut
    assert.truthy(logged(second, "peer ended the session: user last has its 1 sessions at once already "
      .. "(max_sessions)", 10000), select(2, second:output()))
    assert.is_true(echoes(p1))
    for _, child in ipairs({ first, second, relay }) do
      child:kill()
      child:wait(5000)
    end
  end)

  it("finds the user on every carrier: raw, WebSocket, HTTP requests and KCP", function()
    local users = dir .. "/carriers"
    write(users, string.format("alice %s\nbob %s\n", alice_key, bob_key))
    local access_log = dir .. "/carriers.access"
    local relay, relay_port = proc.serve({ "--users", users, "-K", "--access-log", access_log })
    local children = { relay }
    for _, carrier in ipairs({ {}, { "-w" }, { "--http" }, { "-K" } }) do
      local port = net.free_port()
      local args = { proc.warren_bin, "-L", string.format("127.0.0.1:%d:127.0.0.1:%d", port, echo_port),
        "127.0.0.1:" .. relay_port, "--key-file", bob_key }
      for _, a in ipairs(carrier) do args[#args + 1] = a end
      local client = proc.start(args)
      children[#children + 1] = client
      assert.is_true(wait.eventually(function() return echoes(port) end, 10000),
        table.concat(carrier, " ") .. ": " .. select(2, client:output()))
    end
    -- the relay's access log names the user of every connection, whatever the carrier
    local records = wait.eventually(function()
      local f = io.open(access_log)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      local n = 0
      for _ in text:gmatch("[^\n]+") do n = n + 1 end
      return n >= 4 and text
    end, 5000)
    assert.truthy(records, "fewer than 4 access records")
    for line in records:gmatch("[^\n]+") do assert.matches(" user=bob ", line) end
    -- a key no user holds gets the fallback's answer on the HTTP carrier, as a wrong key always did
    local r = proc.warren({ "--http", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. relay_port, "--key-file",
      stranger_key }, { timeout = 30000 })
    assert.equal(1, r.code)
    assert.matches("wrong key", r.stderr)
    for _, child in ipairs(children) do
      child:kill()
      child:wait(5000)
    end
  end)

  it("refuses a users table or file it does not understand, saying where", function()
    local path = dir .. "/typo.lua"
    write(path, string.format("return { serve = \"127.0.0.1:0\", users = { alice = { key_file = %q, port = 9 } } }\n",
      alice_key))
    local r = proc.warren({ "run", path })
    assert.equal(1, r.code)
    assert.matches('users.alice: unknown key "port" %(keys: key, key_file, max_sessions, max_streams, password, '
      .. 'ports%)', r.stderr)
    write(path, "return { serve = \"127.0.0.1:0\", users = { alice = { password = \"x\", ports = { \"9-1\" } } } }\n")
    r = proc.warren({ "run", path })
    assert.equal(1, r.code)
    assert.matches("users.alice: ports: port range 9%-1 runs backwards", r.stderr)
    local users = dir .. "/bad-users"
    write(users, "alice " .. alice_key .. "\nbob\n")
    r = proc.warren({ "serve", "127.0.0.1:0", "--users", users })
    assert.equal(1, r.code)
    assert.matches("bad%-users:2: want NAME KEY_FILE", r.stderr)
  end)

  it("scripts/relay.lua reads its users from a file, and follows its edits", function()
    local a, c = net.free_range(2), net.free_range(2)
    local ports, users = dir .. "/relay-ports", dir .. "/relay-users"
    write(ports, string.format("%d-%d\n", c, c + 1))
    write(users, string.format("alice %s %d-%d\nbob %s\n", alice_key, a, a + 1, bob_key))
    local relay, relay_port
    for _ = 1, 4 do
      relay_port = net.free_port()
      relay = proc.start({ proc.warren_bin, "run", proc.source_dir .. "/scripts/relay.lua", "127.0.0.1:" .. relay_port,
        ports, users, env = { WARREN_KEY_FILE = "" } })
      if wait.eventually(function()
        return relay.code ~= nil or select(2, relay:output()):find("relay listening on", 1, true)
      end, 10000) and relay.code == nil then break end
      relay:wait(5000)
    end
    assert.is_nil(relay.code, select(2, relay:output()))
    local alice = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", a, echo_port), "alice", alice_key)
    assert.is_nil(alice.code, select(2, alice:output()))
    local r = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", c, echo_port), "alice2", alice_key)
      :wait(10000)
    assert.equal(1, r.code)
    assert.matches("not among the ports of user alice", r.stderr)
    local bob = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", c, echo_port), "bob", bob_key)
    assert.is_nil(bob.code, select(2, bob:output()))
    assert.is_true(echoes(a) and echoes(c))
    write(users, string.format("alice %s %d-%d\n", alice_key, a, a + 1)) -- bob leaves
    assert.truthy(logged(relay, "user bob was removed or given another key: 1 of its sessions end", 10000),
      select(2, relay:output()))
    assert.is_true(echoes(a))
    for _, child in ipairs({ alice, bob, relay }) do
      child:kill()
      child:wait(5000)
    end
  end)

  it("caps a user's streams over its sessions (max_streams)", function()
    local users = dir .. "/streams-users"
    write(users, string.format("alice %s max_streams=1\nbob %s\n", alice_key, bob_key))
    local relay, relay_port = proc.serve({ "--users", users })
    local port = net.free_port()
    local client = proc.start({ proc.warren_bin, "-v", "-L", string.format("127.0.0.1:%d:127.0.0.1:%d", port,
      echo_port), "127.0.0.1:" .. relay_port, "--key-file", alice_key })
    assert.is_true(wait.eventually(function() return echoes(port) end, 10000), select(2, client:output()))
    -- one held stream (once the stream of the check above is done at the relay too): the next is
    -- refused while it lasts
    local held, got
    assert.is_true(wait.eventually(function()
      if held then held:close() end
      held, got = assert(uv.new_tcp()), {}
      held:connect("127.0.0.1", port, function(err)
        if err then return end
        held:read_start(function(_, data) if data then got[#got + 1] = data end end)
        held:write("held")
      end)
      return wait.eventually(function() return table.concat(got) == "held" end, 1000)
    end, 10000))
    assert.is_false(echoes(port))
    assert.truthy(logged(client, "user alice has its 1 streams open already", 5000), select(2, client:output()))
    held:close()
    assert.is_true(wait.eventually(function() return echoes(port) end, 5000))
    for _, child in ipairs({ client, relay }) do
      child:kill()
      child:wait(5000)
    end
  end)
end)
