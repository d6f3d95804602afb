-- The command line. Flags build the same objects a script would, so there is one code path.
local warren = require("warren")
local log = require("warren.log")

local M = {}

M.usage = [[
usage: warren [OPTIONS] COMMAND [ARGS...]

Commands:
  run SCRIPT [ARGS...]    run a Lua script as a task (it sees `arg` and `...`)
  repl                    interactive Lua prompt on the live loop (Ctrl-C cancels, Ctrl-D exits)
  version                 print the versions of warren, LuaJIT, libuv, luv and mbedTLS
  help                    print this text

Options:
  -e CODE                 run CODE before the command (repeatable); may be used alone
  -v                      more logging: -v debug, -v -v trace
  -q                      log errors only
  --log-format FORMAT     text (default) or json, one record per line on stderr
  -h, --help              print this text

Signals: SIGINT/SIGTERM shut down gracefully (twice: at once); SIGHUP reloads.
Environment: WARREN_LUA_DIR overrides where the Lua library is loaded from;
             WARREN_HISTORY sets the REPL history file (default ~/.warren_history).
]]

local function usage_error(msg)
  io.stderr:write("warren: ", msg, "\n\n", M.usage)
  return nil, 2
end

-- Parses argv into {command=, args=, chunks=, verbosity=, quiet=, log_format=}.
-- Returns the options, or nil and an exit code after printing the problem.
function M.parse(argv)
  local opts = { chunks = {}, verbosity = 0, log_format = "text", args = {} }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-e" then
      if not argv[i + 1] then return usage_error("-e needs a chunk of Lua code") end
      opts.chunks[#opts.chunks + 1] = argv[i + 1]
      i = i + 1
    elseif a == "-v" then
      opts.verbosity = opts.verbosity + 1
    elseif a == "-q" then
      opts.quiet = true
    elseif a == "--log-format" then
      local f = argv[i + 1]
      if f ~= "text" and f ~= "json" then return usage_error("--log-format takes text or json") end
      opts.log_format = f
      i = i + 1
    elseif a == "-h" or a == "--help" then
      opts.command = "help"
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage_error("unknown option " .. a)
    else
      opts.command = a
      for j = i + 1, #argv do opts.args[#opts.args + 1] = argv[j] end
      break
    end
    i = i + 1
  end
  if not opts.command and #opts.chunks == 0 then return usage_error("no command given") end
  return opts
end

local function configure_logging(opts)
  if opts.quiet then
    log.set_level("error")
  elseif opts.verbosity == 1 then
    log.set_level("debug")
  elseif opts.verbosity >= 2 then
    log.set_level("trace")
  end
  if opts.log_format == "json" then
    log.set_sinks({ log.stream_sink(log.format_json, io.stderr) })
  end
end

local function run_chunk(fn, ...)
  return fn(...)
end

local commands = {}

function commands.help()
  io.stdout:write(M.usage)
  return 0
end

function commands.version()
  local v = warren.versions
  io.stdout:write(string.format("warren %s\n%s\nlibuv %s\nluv %s\nmbedTLS %s\n",
    v.warren, v.luajit, v.libuv, v.luv, v.mbedtls))
  return 0
end

function commands.run(args)
  local script = args[1]
  if not script then
    usage_error("run needs a script")
    return 2
  end
  local fn, err = loadfile(script)
  if not fn then
    io.stderr:write("warren: ", err, "\n")
    return 1
  end
  local script_args = { [0] = script }
  for i = 2, #args do script_args[i - 1] = args[i] end
  _G.arg = script_args
  run_chunk(fn, unpack(script_args))
end

function commands.repl(args)
  if #args > 0 then
    usage_error("repl takes no arguments")
    return 2
  end
  local ok, err = require("warren.repl").run()
  if not ok then
    io.stderr:write("warren: ", err, "\n")
    return 1
  end
  warren.exit(0)
  return 0
end

function M.main(...)
  local opts, code = M.parse({ ... })
  if not opts then return code end
  configure_logging(opts)
  warren.install_default_signals()
  for _, chunk in ipairs(opts.chunks) do
    local fn, err = loadstring(chunk, "=(command line)")
    if not fn then
      io.stderr:write("warren: ", err, "\n")
      return 1
    end
    run_chunk(fn)
  end
  if not opts.command then return 0 end
  local command = commands[opts.command]
  if not command then
    usage_error("unknown command " .. opts.command)
    return 2
  end
  return command(opts.args)
end

return M
