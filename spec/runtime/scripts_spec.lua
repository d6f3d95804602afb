-- luacheck: std +busted
-- The ready scripts in scripts/: a relay whose port ranges (and who may use them) come from a
-- file, a client publishing a list of services, a forwarder with a destination ACL. Each reads
-- a file that it watches: editing the file reloads it.
local uv = require("luv")
local proc = require("helpers.proc")
require("helpers.reaper").per_test(before_each, after_each)
local net = require("helpers.net")
local wait = require("helpers.wait")

local scripts = proc.source_dir .. "/scripts/"
local dir = os.tmpname()
os.remove(dir)
assert(uv.fs_mkdir(dir, tonumber("700", 8)))

local function write(path, text)
  local f = assert(io.open(path .. ".new", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".new", path))
end

local key_file = dir .. "/key"
write(key_file, proc.key() .. "\n")
local env = { WARREN_KEY_FILE = key_file }

-- Starts `warren run SCRIPT LISTEN FILE` for a relay script on a free port; returns child, port.
local function start_relay(script, file)
  for _ = 1, 4 do
    local port = net.free_port()
    local child = proc.start({ proc.warren_bin, "run", scripts .. script, "127.0.0.1:" .. port, file, env = env })
    local up = wait.eventually(function()
      return child.code ~= nil or select(2, child:output()):find("relay listening on", 1, true)
    end, 10000)
    if up and child.code == nil then return child, port end
    child:wait(5000)
  end
  error(script .. " did not start")
end

local function register(relay_port, spec, client_id, name)
  local child = proc.start({ proc.warren_bin, "-R", spec, "--name", name or (client_id .. " " .. spec), "--client-id",
    client_id,
    "127.0.0.1:" .. relay_port, "--key-file", key_file })
  local ok = wait.eventually(function() return child.code ~= nil or child:output():find("relay port", 1, true) end,
    10000)
  assert(ok, "-R neither registered nor failed")
  return child
end

local function echoes(port)
  local payload = "hello " .. port
  return net.exchange(port, payload, { want = #payload, timeout = 3000 }) == payload
end

describe("scripts/relay.lua", function()
  it("lets clients register only in their own ranges, and reloads when the ports file changes", function()
    local a, b, c = net.free_range(2), net.free_range(2), net.free_range(2)
    local ports = dir .. "/ports"
    write(ports, string.format("# open to all\n%d-%d\n%d-%d  alice   # kept for alice\n", a, a + 1, b, b + 1))
    local relay, relay_port = start_relay("relay.lua", ports)
    local echo, echo_port = net.echo_server()

    local bob = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", b, echo_port), "bob")
    local r = bob:wait(5000)
    assert.equal(1, r.code)
    assert.matches("ports " .. b .. "%-" .. b + 1 .. " are not for client bob", r.stderr)
    local alice = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", b, echo_port), "alice")
    assert.is_nil(alice.code, select(2, alice:output()))
    assert.is_true(echoes(b))
    bob = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", a, echo_port), "bob")
    assert.is_nil(bob.code, select(2, bob:output()))
    assert.is_true(echoes(a))
    local any = register(relay_port, "0:127.0.0.1:" .. echo_port, "carol")
    r = any:wait(5000)
    assert.equal(1, r.code)
    assert.matches("name an outer port", r.stderr)

    -- a new range, open to all: the relay reloads by itself
    write(ports, string.format("%d-%d\n%d-%d alice\n%d-%d\n", a, a + 1, b, b + 1, c, c + 1))
    assert.is_true(wait.eventually(function()
      return select(2, relay:output()):find("reload by %-%-watch") ~= nil
    end, 5000))
    local carol = register(relay_port, string.format("127.0.0.1:%d:127.0.0.1:%d", c, echo_port), "carol")
    assert.is_nil(carol.code, select(2, carol:output()))
    assert.is_true(echoes(c))
    assert.is_true(echoes(a) and echoes(b)) -- the services already up are still up
    for _, child in ipairs({ alice, bob, carol, relay }) do
      child:kill()
      child:wait(5000)
    end
    echo:close()
  end)
end)

describe("scripts/client.lua", function()
  it("publishes the services listed in a file, and follows its edits", function()
    local from = net.free_range(4)
    local relay, relay_port = proc.serve({ "--key-file", key_file, "--ports", from .. "-" .. from + 3 })
    local echo, echo_port = net.echo_server()
    local services = dir .. "/services"
    write(services, string.format("# name outer target message\none %d 127.0.0.1:%d the first one\n", from, echo_port))
    local client = proc.start({ proc.warren_bin, "run", scripts .. "client.lua", "127.0.0.1:" .. relay_port, services,
      env = env })
    assert.truthy(wait.output(client, "one: relay port " .. from, 10000), select(2, client:output()))
    assert.is_true(echoes(from))
    write(services, string.format("one %d 127.0.0.1:%d the first one\ntwo 0 127.0.0.1:%d\n", from, echo_port,
      echo_port))
    assert.is_true(wait.eventually(function() return echoes(from + 1) end, 5000)) -- "any": the next free
    write(services, string.format("two 0 127.0.0.1:%d\n", echo_port))
    assert.is_true(wait.eventually(function() return not echoes(from) end, 5000))
    assert.is_true(echoes(from + 1))
    assert.matches("1 added, 0 changed, 0 removed, 1 unchanged", select(2, client:output()))
    assert.matches("0 added, 0 changed, 1 removed, 1 unchanged", select(2, client:output()))
    client:kill()
    assert.equal(0, client:wait(5000).code)
    relay:kill()
    relay:wait(5000)
    echo:close()
  end)
end)

describe("scripts/forwarder.lua", function()
  it("dials only what the ACL allows, and reloads it when it changes", function()
    local echo, echo_port = net.echo_server()
    local other, other_port = net.echo_server()
    local acl = dir .. "/acl"
    write(acl, string.format("127.0.0.0/8  %d\n10.0.0.0/8 22,443\n", echo_port))
    local relay, relay_port = start_relay("forwarder.lua", acl)
    local a, b = net.free_port(), net.free_port()
    local client = proc.start({ proc.warren_bin, "-L", string.format("%d:127.0.0.1:%d", a, echo_port),
      "-L", string.format("%d:127.0.0.1:%d", b, other_port), "127.0.0.1:" .. relay_port, "--key-file", key_file })
    assert.is_true(net.wait_port(a) and net.wait_port(b), select(2, client:output()))
    assert.is_true(echoes(a))
    assert.is_false(echoes(b))
    assert.matches("denied 127%.0%.0%.1:" .. other_port, select(2, relay:output()))
    write(acl, string.format("127.0.0.1 %d,%d\n", echo_port, other_port))
    assert.is_true(wait.eventually(function() return echoes(b) end, 5000))
    assert.is_true(echoes(a))
    -- a broken ACL is refused, and the one in force stays
    write(acl, "127.0.0.1 nonsense\n")
    assert.is_true(wait.eventually(function()
      return select(2, relay:output()):find("bad ports nonsense") ~= nil
    end, 5000))
    assert.is_true(echoes(a) and echoes(b))
    client:kill()
    client:wait(5000)
    relay:kill()
    relay:wait(5000)
    echo:close()
    other:close()
  end)
end)

describe("examples/declared_relay.lua", function()
  teardown(function() proc.run({ "rm", "-rf", dir }) end) -- the last block of this file: its files go
  it("runs the relay of examples/hooks.lua, and reloads when asked", function()
    local from = net.free_range(2)
    local sock = dir .. "/declared.sock"
    local relay, port
    for _ = 1, 4 do
      port = net.free_port()
      relay = proc.start({ proc.warren_bin, "--control", sock, "run", proc.source_dir .. "/examples/declared_relay.lua",
        env = { WARREN_KEY_FILE = key_file, LISTEN = "127.0.0.1:" .. port, PORTS = from .. "-" .. from + 1 } })
      local up = wait.eventually(function()
        return relay.code ~= nil or select(2, relay:output()):find("control socket on", 1, true)
      end, 10000)
      if up and relay.code == nil then break end
      relay:wait(5000)
    end
    assert.is_nil(relay.code, select(2, relay:output()))
    -- examples/hooks.lua admits only its known client ids
    local stranger = register(port, "0:127.0.0.1:9", "stranger", "web")
    local r = stranger:wait(5000)
    assert.equal(1, r.code)
    local known = register(port, "0:127.0.0.1:9", "build-box", "web")
    assert.is_nil(known.code, select(2, known:output()))
    r = proc.warren({ "reload", "--control", sock })
    assert.equal(0, r.code, r.stderr)
    assert.matches("generation 2", r.stdout)
    known:kill()
    known:wait(5000)
    relay:kill()
    assert.equal(0, relay:wait(5000).code)
  end)
end)
