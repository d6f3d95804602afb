-- The processes one spec file starts, and the helpers that start, stop and read them. A file
-- registers stop_all as its teardown, so a failing test leaves nothing running into the next
-- file (busted loads helpers anew for each file, out of reach of the runner's own clean-up).
local proc = require("helpers.proc")
local wait = require("helpers.wait")

local M = {}

-- What the child has written to stderr so far.
function M.stderr_of(child)
  return select(2, child:output())
end

-- Stops children (SIGTERM) and returns their results in order.
function M.stop(...)
  local results = {}
  for i, child in ipairs({ ... }) do
    child:kill()
    results[i] = child:wait(5000)
  end
  return unpack(results)
end

function M.new()
  local set, started = {}, {}

  -- SIGTERM to all first (nginx's master then takes its workers down with it), SIGKILL to
  -- whatever is still there 3 s later.
  function set.stop_all()
    for _, child in ipairs(started) do child:kill() end
    for _, child in ipairs(started) do
      if not child:wait(3000) then child:kill("sigkill") end
    end
  end

  -- proc.start, remembered.
  function set.spawn(spec)
    local child = proc.start(spec)
    started[#started + 1] = child
    return child
  end

  -- The warren binary with args; env adds to the environment.
  function set.start(args, env)
    local spec = { proc.warren_bin, env = env }
    for _, a in ipairs(args) do spec[#spec + 1] = a end
    return set.spawn(spec)
  end

  -- proc.serve, remembered.
  function set.serve(args, env)
    local child, port = proc.serve(args, env)
    started[#started + 1] = child
    return child, port
  end

  -- A helper that prints "port N" once it listens (what names it in the error); returns the
  -- child and the port.
  function set.port_server(spec, what)
    local child = set.spawn(spec)
    local port = wait.eventually(function() return child:output():match("port (%d+)") end, 10000)
    assert(port, what .. " did not start: " .. M.stderr_of(child))
    return child, tonumber(port)
  end

  return set
end

return M
