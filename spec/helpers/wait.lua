-- Waiting on conditions in specs: poll instead of sleeping a fixed time, so a loaded machine
-- (sanitizer builds, tests in parallel) gives slow steps the time they need.
local warren = require("warren")
local uv = require("luv")

local M = {}

-- Polls pred() every 20 ms until it returns a true value (returned) or timeout_ms passes (false).
function M.eventually(pred, timeout_ms)
  local deadline = uv.now() + (timeout_ms or 5000)
  while true do
    local v = pred()
    if v then return v end
    if uv.now() > deadline then return false end
    warren.sleep(20)
  end
end

-- Waits until a child process (helpers.proc) has printed `text` on stdout.
function M.output(child, text, timeout_ms)
  return M.eventually(function() return child:output():find(text, 1, true) end, timeout_ms)
end

return M
