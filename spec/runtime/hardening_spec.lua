-- luacheck: std +busted
-- The hardening commands of spec/bench in their --quick versions: attack.sh (probes, replays,
-- floods, slowloris), chaos.sh (kills, stops, a relay restart under -R clients, ulimit -n 256) and
-- soak.sh (many streams through one tunnel). Each starts real relays, clients and load on
-- loopback, prints its figures and exits 0 only when every criterion holds; WARREN_SANITIZED=1
-- makes them smaller still. Their full versions are run by hand (spec/bench/RELIABILITY.md).
local proc = require("helpers.proc")

-- Runs one command with --quick and asserts it passed; its report is the failure message.
local function passes_quick(script, budget_s)
  local r = proc.run({ "bash", proc.source_dir .. "/spec/bench/" .. script, "--quick" }, budget_s * 1000)
  local report = r.stdout .. r.stderr
  assert.equal(0, r.code, script .. " --quick failed:\n" .. report)
  assert.is_nil(r.stdout:match("\nFAIL "), report)
  assert.is_not_nil(r.stdout:match(": PASS\n$"), report)
end

describe("hardening commands (--quick)", function()
  it("attack.sh: probes and replays get 0 bytes, real users get through floods and slowloris", function()
    passes_quick("attack.sh", 180)
  end)

  it("chaos.sh: faults never corrupt silently, tunnels come back, -R clients re-register calmly", function()
    passes_quick("chaos.sh", 180)
  end)

  it("soak.sh: many streams with no error, fds back to baseline, RSS flat", function()
    passes_quick("soak.sh", 120)
  end)
end)
