-- luacheck: std +busted
-- An idle HTTP carrier client costs the relay at most one request per 20 s once settled. Apart
-- from http_carrier_spec because it has to wait: 23 s of doing nothing, per downstream mode.
-- The session's own keepalive (a PING after --keepalive seconds without a frame) is traffic like
-- any other, one POST each: the carrier alone is measured with a keepalive of 60 s on both ends,
-- and the defaults (30 s on this carrier, where the user sets none) too.
local warren = require("warren")
local proc = require("helpers.proc")
local net = require("helpers.net")
local children = require("helpers.children")

local fault_js = proc.source_dir .. "/spec/helpers/fault_proxy.js"

local kids = children.new()
teardown(kids.stop_all)
local spawn = kids.spawn

describe("an idle HTTP carrier client", function()
  local k, relay, echo, echo_port
  setup(function()
    k = proc.key()
    relay = assert(warren.relay({ listen = "127.0.0.1:0", key = k, keepalive = 60 }))
    echo, echo_port = net.echo_server()
  end)
  teardown(function()
    relay:close()
    echo:close()
  end)

  -- Starts a client through `server` (a URL) with --keepalive (default 60), moves a little data,
  -- lets it settle, then counts the requests relay `on` (default the one above) gets over 23 s: the
  -- window ends 2 s before the client's default 30 s keepalive is due (its PING is a POST), which
  -- a window ending at 30 s caught or missed by the scheduler's whim.
  local function idle_requests(server, keepalive, on)
    on = on or relay
    local lport = net.free_port()
    local args = { proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. echo_port, server, "-k", k, "-v" }
    if keepalive ~= false then
      args[#args + 1] = "--keepalive"
      args[#args + 1] = tostring(keepalive or 60)
    end
    local client = spawn(args)
    assert(net.wait_port(lport, 10000), select(2, client:output()))
    assert.equal("settle", net.exchange(lport, "settle", { want = 6 }))
    warren.sleep(5000)
    local before = on:stats().http_requests
    warren.sleep(23000)
    local requests = on:stats().http_requests - before
    -- and it still carries
    local echoed, err = net.exchange(lport, "still there", { want = 11 })
    assert.equal("still there", echoed, tostring(err) .. "\n" .. select(2, client:output()))
    client:kill()
    local r = client:wait(5000)
    assert.equal(0, r.code, r.stderr)
    return requests, r.stderr
  end

  -- the buffering proxy, and the URL that goes through it
  local function buffering_proxy()
    local proxy, port = kids.port_server({ "node", fault_js, tostring(relay:port()), "1", "buffer" },
      "the buffering proxy")
    return proxy, "http://127.0.0.1:" .. port
  end

  it("makes at most one request per 20 s while its answers stream", function()
    local requests, log = idle_requests("http://127.0.0.1:" .. relay:port())
    assert.is_nil(log:find("long polls from now on", 1, true), log)
    assert.is_true(requests <= 1, requests .. " requests in 23 s")
  end)

  it("makes at most one request per 20 s in long polls, behind a proxy that buffers answers", function()
    local proxy, url = buffering_proxy()
    local requests, log = idle_requests(url)
    proxy:kill()
    assert.matches("long polls from now on", log)
    assert.is_true(requests <= 2, requests .. " requests in 23 s")
  end)

  -- Both ends at their defaults: the carrier asks its sessions to ping no more often than every
  -- 30 s, since each PING is a POST (and its PONG ends a long poll). Before, 5 to 20 requests. The
  -- relay waits 45 s, so the client's PING comes first and no two PINGs cross (two POSTs).
  it("makes at most one request per 20 s with the default keepalive", function()
    local plain = assert(warren.relay({ listen = "127.0.0.1:0", key = k }))
    local requests = idle_requests("http://127.0.0.1:" .. plain:port(), false, plain)
    plain:close()
    assert.is_true(requests <= 1, requests .. " requests in 23 s")
  end)
end)
