-- The `warren` module: tasks, timers, logging and the process lifecycle, over warren.core (C)
-- and luv (sharing one loop).
local core = require("warren.core")
local uv = require("luv")
local log = require("warren.log")

local M = {}

M.version = core.versions.warren
M.versions = core.versions
M.log = log

-- Tasks: coroutines driven by the loop. Awaiting outside a task raises.
M.spawn = core.spawn        -- warren.spawn(fn, ...) -> task (task:join([ms]), task:cancel(), task:status())
M.sleep = core.sleep        -- warren.sleep(ms)
M.await = core.await        -- warren.await(function(resolve) ... end [, timeout_ms])
M.running = core.running    -- the current task, or nil
M.timer = core.timer        -- warren.timer() -> timer:start(ms, repeat_ms, fn), :stop(), :close()

log.on_level_change(core.set_log_level)
core.set_log_handler(function(level, msg)
  log.emit(level, msg)
end)

-- Every luv handle is recorded so that shutdown can close them before Lua is closed (closing
-- Lua first leaves luv's close callbacks pointing at freed memory).
local luv_handles = setmetatable({}, { __mode = "k" })
-- A handle whose close has completed refuses every method, is_closing included.
local function is_open(handle)
  local ok, closing = pcall(handle.is_closing, handle)
  return ok and not closing
end
local function track(handle, ...)
  if type(handle) == "userdata" then luv_handles[handle] = true end
  return handle, ...
end
for name, fn in pairs(uv) do
  if type(fn) == "function" and (name:match("^new_") or name == "spawn") then
    uv[name] = function(...) return track(fn(...)) end
  end
end
-- luv's own walk visits C-owned handles too and would crash on them: walk only luv's.
uv.walk = function(callback)
  for handle in pairs(luv_handles) do
    if is_open(handle) then callback(handle) end
  end
end

core.set_teardown(function()
  for handle in pairs(luv_handles) do
    if is_open(handle) then handle:close() end
  end
end)

-- Tunnels (lua/warren/tunnel.lua): loaded on first use.
function M.relay(opts) return require("warren.tunnel").relay(opts) end
function M.client(opts) return require("warren.tunnel").client(opts) end
-- Discovery without keeping a client: a list, or nil, err.
function M.free_ports(server, key) return require("warren.reverse").free_ports(server, key) end
function M.services(server, key) return require("warren.reverse").services(server, key) end

-- Process lifecycle -------------------------------------------------------------------------

local shutdown_handlers = {}
local shutting_down = false

-- Registers fn() to run when a graceful shutdown starts (stop accepting, send go-away...).
function M.on_shutdown(fn)
  shutdown_handlers[#shutdown_handlers + 1] = fn
end

-- Closes every handle now; the process exits with `code` once the loop has drained.
function M.exit(code)
  core.exit(code or 0)
end

function M.exiting()
  return core.exiting()
end

-- Graceful shutdown: runs the shutdown handlers (each in its own task), then exits when the
-- loop has nothing left to do, or forcibly after `grace_ms` (default 5000).
function M.shutdown(grace_ms, code)
  if shutting_down then return end
  shutting_down = true
  log.info("shutting down")
  for _, fn in ipairs(shutdown_handlers) do M.spawn(fn) end
  if core.exiting() then return end -- a handler exited at once: nothing left to wait for
  local force = core.timer()
  force:start(grace_ms or 5000, 0, function()
    log.warn("grace period over, closing what is left")
    M.exit(code or 0)
  end)
  force:unref()
end

-- Signals: one handler per signal; the defaults shut down on SIGINT/SIGTERM (a second one
-- forces the exit) and reload on SIGHUP.
local signal_handles = {}
local signal_handlers = {}

function M.on_signal(signame, fn)
  local previous = signal_handlers[signame]
  signal_handlers[signame] = fn
  if not signal_handles[signame] then
    local handle = uv.new_signal()
    handle:start(signame, function()
      local handler = signal_handlers[signame]
      if handler then M.spawn(handler, signame) end
    end)
    handle:unref() -- a signal watcher alone does not keep the process alive
    signal_handles[signame] = handle
  end
  return previous
end

local reload_handler
-- Sets what SIGHUP (and later `warren reload`) runs; returns the previous handler.
function M.on_reload(fn)
  local previous = reload_handler
  reload_handler = fn
  return previous
end

function M.reload()
  if not reload_handler then
    log.info("reload requested, but nothing is loaded that can reload")
    return nil, "nothing to reload"
  end
  return reload_handler()
end

local function stop_on_signal(signame)
  if shutting_down then
    log.warn("%s again: exiting now", signame)
    M.exit(signame == "sigint" and 130 or 143)
  else
    log.info("%s received", signame)
    M.shutdown()
  end
end

function M.install_default_signals()
  M.on_signal("sigint", stop_on_signal)
  M.on_signal("sigterm", stop_on_signal)
  M.on_signal("sighup", function() M.reload() end)
end

return M
