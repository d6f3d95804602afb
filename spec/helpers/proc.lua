-- Runs child processes from specs (inside warren) and awaits their end, with a deadline.
local warren = require("warren")
local uv = require("luv")

local M = {}

M.warren_bin = os.getenv("WARREN_BIN") or "warren"
-- Children not yet exited: a spec that fails midway leaves its relays and clients running, and
-- the runner kills them at the end so they hold no ports into the next suite.
local live = {}
M.source_dir = os.getenv("WARREN_SOURCE_DIR") or "."

local function collect(pipe, sink)
  pipe:read_start(function(_, data)
    if data then sink[#sink + 1] = data else pipe:close() end
  end)
end

-- proc.start{cmd, args..., stdin = "text" | nil, env = {K=V}} -> child
-- child:wait([timeout_ms]) -> {code=, signal=, stdout=, stderr=} or nil, "timeout"
-- child:kill([signal])
function M.start(spec)
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local out, err = {}, {}
  local child = { stdout_parts = out, stderr_parts = err }
  local env
  if spec.env then
    env = {}
    for k, v in pairs(spec.env) do env[#env + 1] = k .. "=" .. v end
    for _, k in ipairs({ "PATH", "HOME", "WARREN_LUA_DIR" }) do
      if os.getenv(k) and not spec.env[k] then env[#env + 1] = k .. "=" .. os.getenv(k) end
    end
  end
  local args = {}
  for i = 2, #spec do args[#args + 1] = spec[i] end
  local handle, pid = uv.spawn(spec[1], {
    args = args,
    stdio = { stdin, stdout, stderr },
    env = env,
    cwd = spec.cwd,
  }, function(code, signal)
    live[child] = nil
    child.code, child.signal = code, signal
    if child.on_exit then child.on_exit() end
  end)
  if not handle then
    stdin:close(); stdout:close(); stderr:close()
    error("cannot start " .. spec[1] .. ": " .. tostring(pid))
  end
  child.handle, child.pid = handle, pid
  live[child] = true
  collect(stdout, out)
  collect(stderr, err)
  if spec.stdin then stdin:write(spec.stdin) end
  if not spec.keep_stdin_open then stdin:shutdown(function() stdin:close() end) end
  child.stdin = stdin

  function child:kill(signal)
    if not self.code and not handle:is_closing() then handle:kill(signal or "sigterm") end
  end

  function child.output() -- also called as child:output()
    return table.concat(out), table.concat(err)
  end

  -- Waits for the process to exit and its output pipes to drain.
  function child:wait(timeout_ms)
    if not self.code then
      local ok = warren.await(function(resolve) self.on_exit = resolve end, timeout_ms or 10000)
      if ok == nil and not self.code then return nil, "timeout" end
    end
    for _ = 1, 100 do
      if stdout:is_closing() and stderr:is_closing() then break end
      warren.sleep(5)
    end
    if not handle:is_closing() then handle:close() end
    if not stdin:is_closing() then stdin:close() end
    local o, e = self:output()
    return { code = self.code, signal = self.signal, stdout = o, stderr = e }
  end
  return child
end

-- Kills every child still running (the runner calls it once the specs are done).
function M.kill_all()
  -- By pid: the process handle may be closing already while the process still runs.
  for child in pairs(live) do
    if not child.code then uv.kill(child.pid, "sigkill") end
  end
end

-- proc.run{...}: start and wait; raises if it does not finish in time.
function M.run(spec, timeout_ms)
  local child = M.start(spec)
  local result, err = child:wait(timeout_ms)
  if not result then
    child:kill("sigkill")
    child:wait(2000)
    error(spec[1] .. " did not finish: " .. err, 2)
  end
  return result
end

-- Runs the warren binary with the given arguments.
function M.warren(args, opts)
  opts = opts or {}
  local spec = { M.warren_bin, stdin = opts.stdin, env = opts.env }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  return M.run(spec, opts.timeout)
end

-- Starts `warren serve 127.0.0.1:PORT` plus args (env adds to the environment) on a free port,
-- and waits for the relay's own "listening" line, not merely for something to accept on the
-- port: a suite running beside this one may have taken the port between the check and the bind,
-- and then the relay exits and another port is tried. Returns the child and its port.
function M.serve(args, env)
  local net = require("helpers.net")
  local wait = require("helpers.wait")
  for _ = 1, 5 do
    local port = net.free_port()
    local spec = { M.warren_bin, "serve", "127.0.0.1:" .. port, env = env }
    for _, a in ipairs(args) do spec[#spec + 1] = a end
    local child = M.start(spec)
    local up = wait.eventually(function()
      return child.code ~= nil or select(2, child:output()):find("relay listening on", 1, true)
    end, 10000)
    if up and child.code == nil then return child, port end
    child:wait(5000)
  end
  error("warren serve did not start on any of five free ports")
end

-- A fresh `warren keygen` key.
function M.key()
  return M.warren({ "keygen" }).stdout:match("%S+")
end

-- Starts `warren serve` and `warren -L` (local port -> relay -> 127.0.0.1:target_port) and waits
-- until the forward accepts connections. Returns {relay, client, port, relay_port, key, stop()}.
function M.tunnel(target_port, extra_relay, extra_client, k)
  local net = require("helpers.net")
  k = k or M.key()
  local relay_port, local_port = net.free_port(), net.free_port()
  local relay_args = { M.warren_bin, "serve", "127.0.0.1:" .. relay_port, "-k", k }
  for _, a in ipairs(extra_relay or {}) do relay_args[#relay_args + 1] = a end
  local relay = M.start(relay_args)
  assert(net.wait_port(relay_port), "relay did not start")
  local client_args = { M.warren_bin, "-L", string.format("127.0.0.1:%d:127.0.0.1:%d", local_port, target_port),
    "127.0.0.1:" .. relay_port, "-k", k }
  for _, a in ipairs(extra_client or {}) do client_args[#client_args + 1] = a end
  local client = M.start(client_args)
  assert(net.wait_port(local_port), "forward did not start")
  return {
    relay = relay, client = client, port = local_port, relay_port = relay_port, key = k,
    stop = function()
      client:kill(); relay:kill()
      local c, r = client:wait(5000), relay:wait(5000)
      return c, r
    end,
  }
end

return M
