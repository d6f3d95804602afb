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

-- An evaluator: the prompt's lines in, the text to show out. feed(line) runs the chunk as a task
-- (awaiting it) once the line completes one, and returns the text to show (nil: nothing) and
-- the next prompt ("> ", or ">> " while a chunk is incomplete). cancel() cancels the running
-- chunk; reset() drops an incomplete one. The local prompt and `warren repl --attach` share it.
function M.evaluator(env)
  local ev = {}
  local buffer, running
  function ev.feed(line)
    buffer = buffer and (buffer .. "\n" .. line) or line
    local fn, compile_err, incomplete = M.compile(buffer, env)
    if not fn then
      if incomplete then return nil, ">> " end
      buffer = nil
      return "error: " .. compile_err .. "\n", "> "
    end
    buffer = nil
    running = warren.spawn(function()
      return pack(xpcall(fn, debug.traceback))
    end)
    local done, outcome = running:join()
    running = nil
    if not done then return "cancelled\n", "> " end
    if not outcome[1] then return "error: " .. tostring(outcome[2]) .. "\n", "> " end
    local text = M.format_results(pack(unpack(outcome, 2, outcome.n)))
    return text and (text .. "\n"), "> "
  end
  function ev.cancel()
    if not running then return false end
    running:cancel()
    return true
  end
  function ev.reset() buffer = nil end
  return ev
end

-- Where lines come from: libedit on a terminal (unless terminal = false), else stdin as a
-- stream. Returns reader, interactive; or nil, err when terminal = true and there is none.
function M.reader(terminal)
  if terminal ~= false and uv.guess_handle(0) == "tty" then
    local reader, err = terminal_reader()
    if reader then return reader, true end
    if terminal then return nil, err end
  elseif terminal then
    return nil, "stdin is not a terminal"
  end
  return stream_reader(), false
end

-- repl.run{env = table, terminal = bool}: runs until end of input (Ctrl-D).
function M.run(opts)
  opts = opts or {}
  local env = opts.env or setmetatable({ warren = warren, uv = uv }, { __index = _G })
  local reader, interactive = M.reader(opts.terminal)
  if not reader then return nil, interactive end
  local ev = M.evaluator(env)

  local previous_sigint = warren.on_signal("sigint", function()
    if ev.cancel() then return end
    if interactive then
      reader.interrupt()
    else
      warren.exit(130)
    end
  end)

  local prompt = "> "
  while true do
    local line, read_err = reader.read(prompt)
    if line == nil and read_err ~= "interrupted" then break end
    if line == nil then
      ev.reset()
      prompt = "> "
    else
      local text
      text, prompt = ev.feed(line)
      if text then
        io.stdout:write(text)
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
