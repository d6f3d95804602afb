-- luacheck: std +busted
-- Control values from Lua: what core.ctl_encode writes, core.ctl_decode reads back, and what
-- each refuses (the C codec itself is covered by spec/c/test_ctl.c and fuzz_ctl).
local core = require("warren.core")

describe("control messages from Lua", function()
  it("round-trips the values the registry exchanges", function()
    local v = {
      op = "register", seq = 7, id = 4294967295, name = "ssh", message = "é\0bytes",
      ratio = 0.25, neg = -3, big = 2 ^ 53, yes = true, no = false,
      services = { { port = 9931, name = "a" }, { port = 9932, name = "b", limits = {} } },
    }
    local back = assert(core.ctl_decode(core.ctl_encode(v)))
    assert.same(v, back)
  end)

  it("writes the length prefix and the shortest forms", function()
    assert.equal("\0\0\0\1\133", core.ctl_encode(5))
    assert.equal("\0\0\0\2\8\0", core.ctl_encode(""))
    assert.equal("\0\0\0\2\16\0", core.ctl_encode({}))
    assert.equal("\0\0\0\4\12\2\129\130", core.ctl_encode({ 1, 2 }))
  end)

  it("raises on values it cannot encode", function()
    local cyclic = {}
    cyclic.self = cyclic
    local bads = { print, cyclic, { [1] = 1, x = 2 }, { [true] = 1 }, 0 / 0, { [string.rep("k", 256)] = 1 } }
    for _, bad in ipairs(bads) do
      assert.has_error(function() core.ctl_encode(bad) end)
    end
    local deep = {}
    for _ = 1, 17 do deep = { deep } end
    assert.has_error(function() core.ctl_encode(deep) end)
  end)

  it("refuses malformed messages with a reason", function()
    for _, bad in ipairs({
      "", "\0\0\0", "\0\0\0\0", "\0\0\0\2\133", "\0\0\0\1\133\0", "\0\0\0\1\255\255",
      "\0\0\0\1\9", "\0\0\0\3\12\200\0", "\255\255\255\255",
    }) do
      local v, err = core.ctl_decode(bad)
      assert.is_nil(v)
      assert.is_string(err)
    end
    -- a map that repeats a key
    local v, err = core.ctl_decode("\0\0\0\8\16\2\1a\128\1a\129")
    assert.is_nil(v)
    assert.matches("key", err)
  end)
end)

describe("control channels", function()
  it("deliver what was sent right before close, both ways", function()
    local warren = require("warren")
    local k = string.rep("c", 32)
    local relay_got
    local relay = assert(core.relay_server({ host = "127.0.0.1", port = 0, key = k,
      on_channel = function(ch)
        warren.spawn(function()
          relay_got = ch:recv()
          ch:send({ op = "ended", reason = "bye" })
          ch:close() -- at once: the message must still arrive
        end)
      end }))
    local session = assert(core.session_connect({ host = "127.0.0.1", port = relay:port(), key = k }))
    local ch = assert(session:open_channel())
    ch:send({ op = "hello" })
    local answer, err = ch:recv()
    assert.same({ op = "ended", reason = "bye" }, answer, err)
    assert.same({ op = "hello" }, relay_got)
    assert.same({ nil, "closed" }, { ch:recv() })
    session:close()
    relay:close()
  end)
end)
