-- The interactive prompt. Each chunk runs as a task, so it may await; the loop keeps running
-- while the prompt waits. On a terminal, libedit edits lines and keeps a history; otherwise lines
-- are read from stdin and results printed, so a script can drive it.
local warren = require("warren")
local core = require("warren.core")
local pretty = require("warren.pretty")
local uv = require("luv")

local M = {}

-- Compiles a chunk, trying it first as an expression. Returns fn, or nil, err, incomplete.
function M.compile(source, env)
  local fn, err = loadstring("return " .. source, "=repl")
  if not fn then fn, err = loadstring(source, "=repl") end
  if not fn then
    return nil, err, err:sub(-7) == "'<eof>'"
  end
  if env then setfenv(fn, env) end
  return fn
end

-- Formats the outcome of a chunk: ok, values... -> text or nil when there is nothing to show.
function M.format_results(results)
  if results.n == 0 then return nil end
  local parts = {}
  for i = 1, results.n do parts[i] = pretty.format(results[i]) end
  return table.concat(parts, "\t")
end

local function pack(...)
  return { n = select("#", ...), ... }
end

local function history_path()
  local explicit = os.getenv("WARREN_HISTORY")
  if explicit then return explicit ~= "" and explicit or nil end
  local home = os.getenv("HOME")
  return home and (home .. "/.warren_history") or nil
end

local function terminal_reader()
  local editor, err = core.editline(history_path())
  if not editor then return nil, err end
  return {
    read = function(prompt) return editor:read(prompt) end,
    interrupt = function() editor:interrupt() end,
    close = function() editor:close() end,
  }
end

-- Lines from a pipe (read on the loop) or a file (read at once).
local function stream_reader()
  local lines, partial, finished, waiter = {}, "", false, nil
  local pipe

  local function take(data)
    partial = partial .. data
    for line in partial:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    partial = partial:match("[^\n]*$")
  end
  local function finish()
    if partial ~= "" then lines[#lines + 1] = partial end
    partial, finished = "", true
  end

  if uv.guess_handle(0) == "file" then
    take(io.stdin:read("*a") or "")
    finish()
  else
    pipe = uv.new_pipe(false)
    pipe:open(0)
    pipe:read_start(function(_, data)
      if data then take(data) else
        finish()
        pipe:read_stop()
      end
      if waiter and (#lines > 0 or finished) then
        local resolve = waiter
        waiter = nil
        resolve()
      end
    end)
  end

  return {
    read = function()
      if #lines == 0 and not finished then
        warren.await(function(resolve) waiter = resolve end)
      end
      if #lines > 0 then return table.remove(lines, 1) end
      return nil
    end,
    close = function()
      if pipe and not pipe:is_closing() then pipe:close() end
    end,
  }
end

-- repl.run{env = table, terminal = bool}: runs until end of input (Ctrl-D).
function M.run(opts)
  opts = opts or {}
  local env = opts.env or setmetatable({ warren = warren, uv = uv }, { __index = _G })
  local reader, err
  if opts.terminal ~= false and uv.guess_handle(0) == "tty" then
    reader, err = terminal_reader()
  end
  local interactive = reader ~= nil
  if not reader then
    if opts.terminal then return nil, err end
    reader = stream_reader()
  end

  local running -- the task of the chunk being evaluated
  local previous_sigint = warren.on_signal("sigint", function()
    if running then
      running:cancel()
    elseif interactive then
      reader.interrupt()
    else
      warren.exit(130)
    end
  end)

  local buffer
  while true do
    local line, read_err = reader.read(buffer and ">> " or "> ")
    if line == nil and read_err ~= "interrupted" then break end
    if line == nil then
      buffer = nil
    else
      buffer = buffer and (buffer .. "\n" .. line) or line
      local fn, compile_err, incomplete = M.compile(buffer, env)
      if fn then
        buffer = nil
        running = warren.spawn(function()
          return pack(xpcall(fn, debug.traceback))
        end)
        local done, outcome = running:join()
        running = nil
        if not done then
          io.stdout:write("cancelled\n")
        elseif outcome[1] then
          local text = M.format_results(pack(unpack(outcome, 2, outcome.n)))
          if text then io.stdout:write(text, "\n") end
        else
          io.stdout:write("error: ", tostring(outcome[2]), "\n")
        end
        io.stdout:flush()
      elseif not incomplete then
        buffer = nil
        io.stdout:write("error: ", compile_err, "\n")
        io.stdout:flush()
      end
    end
  end
  if interactive then io.stdout:write("\n") end
  reader.close()
  warren.on_signal("sigint", previous_sigint)
  return true
end

return M
