-- Kills, after each test, the processes the test started and left running, whether it passed or
-- failed: a failed assertion must not leave a relay holding ports that later tests draw.
--   require("helpers.reaper").per_test(before_each, after_each)   -- at the top of a spec file
-- Processes started in setup() live until the suite ends (the runner kills them).
local proc = require("helpers.proc")

local M = {}

function M.per_test(before_each, after_each)
  local started, in_test = {}, false
  local start = proc.start
  proc.start = function(spec)
    local child = start(spec)
    if in_test then started[#started + 1] = child end
    return child
  end
  before_each(function() in_test = true end)
  after_each(function()
    in_test = false
    for _, child in ipairs(started) do
      if not child.code then
        child:kill("sigkill")
        child:wait(5000)
      end
    end
    started = {}
  end)
end

return M
