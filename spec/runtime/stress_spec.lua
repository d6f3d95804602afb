-- luacheck: std +busted
-- wr_loadgen stress (spec/bench) through warren serve + warren -L, and the failures it must catch:
-- a flipped byte, a target that dies, a target that never answers.
local warren = require("warren")
local uv = require("luv")
local bit = require("bit")
local proc = require("helpers.proc")
local net = require("helpers.net")

local loadgen = os.getenv("WR_LOADGEN")
-- The issue's target, in every build: under ASan the tunnel moves ~6,000 messages/s instead of
-- ~25,000, still dozens of round trips per connection, each far below the 10 s timeout.
local conns, seconds = 500, 3

-- Runs wr_loadgen with `args` and returns its result plus the SUMMARY fields.
local function stress(args, timeout_ms)
  assert(loadgen, "WR_LOADGEN is not set (ctest sets it to the wr_loadgen build target)")
  local spec = { loadgen, "stress" }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  local r = proc.run(spec, timeout_ms or 30000)
  local line = r.stdout:match("SUMMARY:[^\n]*")
  assert(line, "no SUMMARY line; stdout: " .. r.stdout .. "\nstderr: " .. r.stderr)
  local s = { line = line, verdict = line:match("(%u+)$") }
  for k, v in line:gmatch("(%S+)=(%S+)") do s[k] = tonumber(v) or v end
  return r, s
end

local tunnel = proc.tunnel

-- An echo server that flips the lowest bit of byte `at` of one connection's stream: the first
-- connection to get that far.
local function flipping_echo_server(at)
  local flipped = false
  return assert(net.serve(function(peer)
    local offset = 0
    peer:read_start(function(_, data)
      if not data then return peer:close() end
      if not flipped and offset + #data > at then
        local i = at - offset + 1
        data = data:sub(1, i - 1) .. string.char(bit.bxor(data:byte(i), 1)) .. data:sub(i + 1)
        flipped = true
      end
      offset = offset + #data
      peer:write(data)
    end)
  end))
end

describe("wr_loadgen stress", function()
  it(string.format("carries %d connections of 8 KiB messages through warren -L for %d s, every byte verified",
    conns, seconds), function()
    local echo_port = net.free_port()
    local t = tunnel(echo_port)
    -- The echo server runs inside wr_loadgen (-l), so its SERVER: lines are the target's view.
    local r, s = stress({ "-t", "127.0.0.1:" .. t.port, "-l", "127.0.0.1:" .. echo_port, "-c", tostring(conns),
      "-s", "8192", "-d", tostring(seconds), "-i", "1" }, (seconds + 40) * 1000)
    local c, rl = t.stop()
    assert.equal(0, r.code, s.line .. "\n" .. r.stderr)
    assert.equal("OK", s.verdict)
    assert.equal(0, s.errors)
    assert.equal(0, s.corrupt)
    assert.equal(conns, s.conns)
    assert.equal(8192, s.size)
    assert.is_true(s.msgs >= conns, s.line) -- at least one verified echo per connection
    assert.is_true(s.msgs_per_s > 0)
    assert.is_true(s.p50_us > 0 and s.p50_us <= s.p99_us and s.p99_us <= s.max_us, s.line)
    -- every interval has both lines; the totals show every connection reached the echo server
    local intervals = select(2, r.stdout:gsub("\nCLIENT: t=", ""))
    assert.is_true(intervals >= seconds - 1, r.stdout)
    assert.equal(intervals, select(2, r.stdout:gsub("\nSERVER: t=", "")))
    -- (>=: the port came from net.free_port, and any process on the host may dial it)
    local accepted, failed = r.stdout:match("SERVER: total conns=%d+/(%d+) ok=%d+ failed=(%d+)")
    assert.is_true(tonumber(accepted) >= conns, r.stdout)
    assert.equal("0", failed)
    assert.is_not_nil(r.stdout:match("CLIENT: total conns=0/" .. conns .. " ok=" .. conns .. " failed=0 "), r.stdout)
    assert.equal(0, c.code)
    assert.equal(0, rl.code)
  end)

  it("fails and says corrupt when one echoed byte is flipped", function()
    local server, port = flipping_echo_server(20000) -- message 3, offset 20000 - 2 * 8192
    local r, s = stress({ "-t", "127.0.0.1:" .. port, "-c", "4", "-n", "50", "-s", "8192", "-i", "0", "-q" })
    server:close()
    assert.equal(1, r.code)
    assert.equal("FAIL", s.verdict)
    assert.equal(1, s.corrupt)
    assert.equal(1, s.errors)
    assert.equal(3 * 50 + 2, s.msgs) -- three connections complete, the corrupted one had two
    assert.matches("conn %d+ msg 3: corrupt byte at offset 3616", r.stderr)
  end)

  it("fails with every connection counted when the target dies mid-run", function()
    local port = net.free_port()
    local echo = proc.start({ loadgen, "echo-server", "-l", "127.0.0.1:" .. port, "-d", "60" })
    assert(net.wait_port(port), "echo server did not start")
    local t0 = uv.now()
    local run = proc.start({ loadgen, "stress", "-t", "127.0.0.1:" .. port, "-c", "50", "-s", "8192",
      "-d", "20", "-i", "0", "-q" })
    warren.sleep(1000)
    echo:kill("sigkill")
    echo:wait(5000)
    local r = assert(run:wait(30000))
    local line = r.stdout:match("SUMMARY:[^\n]*") or ""
    assert.equal(1, r.code, r.stdout)
    assert.matches("errors=50 ", line) -- one per connection: each ends at its first error
    assert.matches("reset=50 ", line)
    assert.is_true(tonumber(line:match(" msgs=(%d+)")) > 0, line)
    assert.is_true(uv.now() - t0 < 10000, "a run whose connections all failed should end early")
  end)

  it("fails when the target behind warren -L dies mid-run", function()
    local port = net.free_port()
    local echo = proc.start({ loadgen, "echo-server", "-l", "127.0.0.1:" .. port, "-d", "60" })
    assert(net.wait_port(port), "echo server did not start")
    local t = tunnel(port)
    local run = proc.start({ loadgen, "stress", "-t", "127.0.0.1:" .. t.port, "-c", "50", "-s", "8192",
      "-d", "10", "-timeout", "3", "-i", "0", "-q" })
    warren.sleep(1500)
    echo:kill("sigkill")
    echo:wait(5000)
    local r = assert(run:wait(30000))
    t.stop()
    local line = r.stdout:match("SUMMARY:[^\n]*") or ""
    assert.equal(1, r.code, r.stdout)
    assert.is_true(tonumber(line:match(" errors=(%d+)")) > 0, line)
    assert.is_true(tonumber(line:match(" msgs=(%d+)")) > 0, line)
  end)

  it("fails when the target accepts but never echoes", function()
    local held = {}
    local server, port = assert(net.serve(function(peer) held[#held + 1] = peer end))
    local r, s = stress({ "-t", "127.0.0.1:" .. port, "-c", "3", "-d", "1", "-i", "0" })
    for _, p in ipairs(held) do p:close() end
    server:close()
    assert.equal(1, r.code)
    assert.equal(3, s.unfinished)
    assert.equal(0, s.msgs)
  end)
end)
