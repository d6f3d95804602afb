-- luacheck: std +busted
-- The differential prober (spec/bench/prober.lua --quick): 1000 probes to a relay with -P URL and,
-- through socat, to the same site; no answer and no connection ending may differ.
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")

local sanitized = os.getenv("WARREN_SANITIZED") == "1"

local function installed(prog)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if uv.fs_access(dir .. "/" .. prog, "X") then return true end
  end
  return uv.fs_access("/usr/sbin/" .. prog, "X")
end

local function probe(site)
  local first = net.free_range(5)
  -- a sanitized relay answers several times slower: give each probe longer to end
  local args = { proc.warren_bin, "run", proc.source_dir .. "/spec/bench/prober.lua", "--quick", "--site", site,
    "--ports", tostring(first), "--timeout", sanitized and "3000" or "1200" }
  if not installed("socat") then
    args[#args + 1] = "--forwarder"
    args[#args + 1] = "builtin"
  end
  local t0 = uv.now()
  local r = proc.run(args, 120000)
  local summary = r.stdout:match("probes=%d+ differences=%d+[^\n]*")
  assert.is_truthy(summary, r.stdout .. r.stderr)
  assert.equal(1000, tonumber(summary:match("probes=(%d+)")), summary)
  assert.equal(0, tonumber(summary:match("differences=(%d+)")), r.stdout)
  assert.equal(0, r.code, r.stderr)
  if not sanitized then assert.is_true(uv.now() - t0 < 60000, summary) end
end

describe("the differential prober", function()
  it("finds no difference between -P URL and a plain forwarder, with warren's own site behind", function()
    probe("warren")
  end)

  local nginx_it = installed("nginx") and it or pending
  nginx_it("finds no difference with nginx behind", function()
    probe("nginx")
  end)
end)
