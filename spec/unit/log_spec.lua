-- luacheck: std +busted
-- warren.log is pure Lua: levels, text and JSON formats, sinks.
local log = require("warren.log")

describe("warren.log", function()
  local records, sink
  before_each(function()
    records = {}
    sink = function(r) records[#records + 1] = r end
    log.set_sinks({ sink })
    log.set_level("info")
  end)

  it("filters by level", function()
    log.debug("hidden")
    log.info("shown")
    log.error("also shown")
    assert.equal(2, #records)
    log.set_level("trace")
    log.trace("now shown")
    assert.equal(3, #records)
    assert.equal("trace", records[3].level)
  end)

  it("formats like string.format and takes trailing fields", function()
    log.warn("port %d in use by %s", 8080, "nginx", { retry = true })
    assert.equal("port 8080 in use by nginx", records[1].msg)
    assert.same({ retry = true }, records[1].fields)
    log.info("literal %d without args")
    assert.equal("literal %d without args", records[2].msg)
  end)

  it("renders text lines with sorted, quoted fields", function()
    local line = log.format_text({ time = 0, level = "info", msg = "up", fields = { b = "x y", a = 1 } })
    assert.equal('1970-01-01T00:00:00.000Z info  up a=1 b="x y"', line)
  end)

  it("renders JSON lines with escapes", function()
    local line = log.format_json({ time = 1.5, level = "error", msg = 'bad "quote"\n', fields = { n = 2, ok = false } })
    assert.equal('{"time":"1970-01-01T00:00:01.500Z","level":"error",'
      .. '"msg":"bad \\"quote\\"\\n","n":2,"ok":false}', line)
  end)

  it("rejects an unknown level", function()
    assert.has_error(function() log.set_level("loud") end)
  end)

  it("survives a failing sink", function()
    log.add_sink(function() error("sink broke") end)
    log.info("still delivered")
    assert.equal("still delivered", records[1].msg)
  end)
end)
