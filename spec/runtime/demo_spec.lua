-- luacheck: std +busted
-- The README's first command runs scripts/demo.lua: it must work as written.
local proc = require("helpers.proc")

describe("scripts/demo.lua", function()
  it("runs a relay, a client and a tunnel, and reports traffic through it", function()
    local r = proc.warren({ "run", proc.source_dir .. "/scripts/demo.lua", "3" }, { timeout = 20000 })
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(4, #lines, r.stdout)
    for i = 1, 3 do
      assert.matches("^message " .. i .. " through the tunnel%s+round trip%s+[%d.]+ us$", lines[i])
    end
    assert.matches("^relay: 1 session%(s%), 1 stream%(s%), 84 bytes up, 84 bytes down$", lines[4])
    assert.matches("relay listening on 127%.0%.0%.1:%d+", r.stderr)
  end)
end)
