-- luacheck: std +busted
-- Memory under stalled streams: users keep sending to a target that never reads. What the
-- process holds in buffers stays within its budget, and goes back to the system afterwards.
local warren = require("warren")
local core = require("warren.core")
local uv = require("luv")
local net = require("helpers.net")
local wait = require("helpers.wait")

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

-- A server that accepts and never reads.
local function deaf_server()
  local held = {}
  local server, port = net.serve(function(peer) held[#held + 1] = peer end)
  return server, port, held
end

-- n users of port, each writing 64 KiB blocks while its own write queue is short.
local function pushers(port, n)
  local block = string.rep("x", 65536)
  local conns = {}
  for i = 1, n do
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function() end)
    conns[i] = c
  end
  local timer = uv.new_timer()
  timer:start(5, 5, function()
    for _, c in ipairs(conns) do
      if c:is_writable() and c:get_write_queue_size() < 256 * 1024 then c:write(block) end
    end
  end)
  return function()
    timer:close()
    for _, c in ipairs(conns) do c:close() end
  end
end

describe("buffers under stalled streams", function()
  local saved
  before_each(function() saved = core.buffers().budget end)
  after_each(function() core.buffers(saved) end)

  it("stay within the process budget, and their memory goes back afterwards", function()
    local budget = 8 * 1024 * 1024
    core.buffers(budget)
    local baseline = rss_kib()
    local sink, sink_port, held = deaf_server()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = "memory-test" }))
    local client = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = "memory-test" }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. sink_port }))
    local stop = pushers(fwd:port(), 40)
    local peak = 0
    local deadline = uv.now() + 3000
    while uv.now() < deadline do
      peak = math.max(peak, core.buffers().held)
      warren.sleep(20)
    end
    local rss_loaded = rss_kib()
    -- Past the budget no relay reads new data, but what is already on its way still lands: per
    -- stream, a read in flight (64 KiB) and the credit its receiver granted (a 256 KiB window).
    assert.is_true(peak <= budget + 40 * (65536 + 262144), "held " .. peak .. " bytes")
    assert.is_true(peak >= budget / 2, "the streams never filled the buffers: " .. peak)
    stop()
    for _, peer in ipairs(held) do peer:close() end
    sink:close()
    wait.eventually(function() return core.buffers().held < 1024 * 1024 end, 10000)
    if os.getenv("WARREN_SANITIZED") == "1" then -- ASan's allocator keeps freed memory itself
      client:close()
      relay:close()
      return
    end
    -- The trim timer gives the freed chunks back within a few seconds.
    local back = wait.eventually(function() return rss_kib() - baseline < (rss_loaded - baseline) / 2 end, 10000)
    assert.is_true(back, string.format("RSS %d KiB, loaded %d KiB, baseline %d KiB", rss_kib(), rss_loaded,
      baseline))
    client:close()
    relay:close()
  end)
end)
