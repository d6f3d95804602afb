-- register_many.lua: registers many reverse-tunnel services on one relay and times it; driven by
-- reverse.sh, which measures the relay's memory while this script holds the services.
--
--   warren run spec/bench/register_many.lua SERVER KEY [--count N] [--concurrency C]
--       [--clients K] [--hold SECONDS] [--inner HOST:PORT] [--outer FROM]
--
-- K clients connect first (not timed); then C tasks share the N registrations (names reg-1..reg-N,
-- spread over the clients in turn; outer = "any", or with --outer the ports FROM..FROM+N-1, which
-- spares the relay its search for a free port) and the wall clock from the first request
-- to the last answer is the registration time. The script then asks the relay for its service
-- list (timed too, to check the count), prints one line of key=value results and "ready", and
-- holds every service until --hold runs out or SIGINT/SIGTERM arrives. Exit status 1 if any
-- registration failed or the relay does not list them all (0 after a signal).
local warren = require("warren")
local uv = require("luv")

local function usage(msg)
  io.stderr:write("register_many.lua: ", msg, "\n",
    "usage: warren run register_many.lua SERVER KEY [--count N] [--concurrency C] [--clients K]",
    " [--hold SECONDS] [--inner HOST:PORT] [--outer FROM]\n")
  warren.exit(2)
end

local args = { ... }
local server, key = args[1], args[2]
local opts = { count = 1000, concurrency = 1, clients = 1, hold = 60, inner = "127.0.0.1:9", outer = "any" }
local i = 3
while args[i] do
  local flag, value = args[i], args[i + 1]
  local name = flag:match("^%-%-(%a+)$")
  if not name or opts[name] == nil or value == nil then return usage("bad argument " .. flag) end
  opts[name] = name == "inner" and value or tonumber(value)
  if opts[name] == nil or (name ~= "inner" and opts[name] < (name == "hold" and 0 or 1)) then
    return usage("bad value for " .. flag)
  end
  i = i + 2
end
if not server or not key then return usage("SERVER and KEY are required") end
if opts.outer ~= "any" and opts.outer + opts.count - 1 > 65535 then return usage("--outer: ports beyond 65535") end

local function ms_since(t0) return (uv.hrtime() - t0) / 1e6 end

local clients = {}
local t_connect = uv.hrtime()
for c = 1, opts.clients do
  -- Distinct client ids: each client has its own quota (default 1024 services).
  local client, err = warren.client({ server = server, key = key, client_id = "register-many-" .. c })
  if not client then return usage(err) end
  local ok, cerr = client:connect()
  if not ok then
    io.stderr:write("register_many.lua: cannot connect to ", server, ": ", tostring(cerr), "\n")
    return warren.exit(1)
  end
  clients[c] = client
end
local connect_ms = ms_since(t_connect)
-- A signal ends the hold early. The handler only wakes the script: warren.exit inside a
-- shutdown handler aborts the process (the shutdown's grace timer is created after the
-- teardown and closed twice at exit).
local wake_hold
warren.on_shutdown(function()
  if wake_hold then wake_hold("signal") end
end)

local next_index, failed, first_error = 0, 0, nil
local ports = {}
local function worker()
  while next_index < opts.count do
    next_index = next_index + 1
    local n = next_index
    local client = clients[(n - 1) % #clients + 1]
    local outer = opts.outer == "any" and "any" or opts.outer + n - 1
    local entry, err, code = client:register({ outer = outer, inner = opts.inner, name = "reg-" .. n })
    if entry then
      ports[#ports + 1] = entry.port
    else
      failed = failed + 1
      first_error = first_error or string.format("reg-%d: %s (%s)", n, tostring(err), tostring(code))
    end
  end
end

local t0 = uv.hrtime()
local tasks = {}
for w = 1, math.min(opts.concurrency, opts.count) do tasks[w] = warren.spawn(worker) end
for _, task in ipairs(tasks) do
  local ok, err = task:join()
  if not ok then
    failed = failed + 1
    first_error = first_error or tostring(err)
  end
end
local register_ms = ms_since(t0)

local t1 = uv.hrtime()
local listed, lerr = clients[1]:active_services()
local list_ms = ms_since(t1)
table.sort(ports)

io.stdout:write(string.format(
  "registered=%d failed=%d ms=%.1f per_s=%.0f concurrency=%d clients=%d connect_ms=%.1f "
    .. "listed=%s list_ms=%.1f first_port=%s last_port=%s\n",
  #ports, failed, register_ms, #ports / (register_ms / 1000), #tasks, #clients, connect_ms,
  listed and tostring(#listed) or "NA", list_ms, tostring(ports[1]), tostring(ports[#ports])))
if first_error then io.stdout:write("first_error: ", first_error, "\n") end
if not listed then io.stdout:write("list_error: ", tostring(lerr), "\n") end
io.stdout:write("ready\n")
io.stdout:flush()

local status = (failed == 0 and listed and #listed >= opts.count) and 0 or 1
local woken
if opts.hold > 0 then -- (a zero timeout would mean none)
  woken = warren.await(function(resolve) wake_hold = resolve end, opts.hold * 1000)
end
for _, client in ipairs(clients) do client:close() end
if woken ~= "signal" then warren.exit(status) end
