-- Leveled logging with pluggable sinks. A record is {time, level, msg, fields}; sinks are
-- functions of a record. The default sink writes human text to stderr.
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4, trace = 5 }
local threshold = LEVELS.info
local sinks = {}
local on_level_change

local function clock()
  local ok, uv = pcall(require, "luv")
  if ok and uv.gettimeofday then
    local sec, usec = uv.gettimeofday()
    return sec + usec / 1e6
  end
  return os.time()
end

local function iso8601(t)
  local ms = math.floor((t % 1) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", ms)
end

local json_escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return json_escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json_value(v)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.14g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif v == nil then
    return "null"
  end
  return json_string(tostring(v))
end

local function sorted_keys(fields)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

function M.format_text(record)
  local parts = { iso8601(record.time), string.format("%-5s", record.level), record.msg }
  if record.fields then
    for _, k in ipairs(sorted_keys(record.fields)) do
      local v = tostring(record.fields[k])
      if v:find("[%s=\"]") then v = string.format("%q", v) end
      parts[#parts + 1] = k .. "=" .. v
    end
  end
  return table.concat(parts, " ")
end

function M.format_json(record)
  local parts = {
    '"time":' .. json_string(iso8601(record.time)),
    '"level":' .. json_string(record.level),
    '"msg":' .. json_string(record.msg),
  }
  if record.fields then
    for _, k in ipairs(sorted_keys(record.fields)) do
      if k ~= "time" and k ~= "level" and k ~= "msg" then
        parts[#parts + 1] = json_string(k) .. ":" .. json_value(record.fields[k])
      end
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A sink that writes formatted lines to a file handle (stderr by default).
function M.stream_sink(format, stream)
  format = format or M.format_text
  stream = stream or io.stderr
  return function(record)
    stream:write(format(record), "\n")
    stream:flush()
  end
end

function M.set_sinks(list)
  sinks = list
end

function M.add_sink(sink)
  sinks[#sinks + 1] = sink
  return sink
end

function M.remove_sink(sink)
  for i = #sinks, 1, -1 do
    if sinks[i] == sink then table.remove(sinks, i) end
  end
end

function M.set_level(name)
  local n = LEVELS[name]
  if not n then error("log level must be one of error, warn, info, debug, trace: " .. tostring(name), 2) end
  threshold = n
  if on_level_change then on_level_change(name) end
end

function M.level()
  for name, n in pairs(LEVELS) do
    if n == threshold then return name end
  end
end

function M.enabled(level)
  return (LEVELS[level] or 0) <= threshold
end

-- Called when the level changes (the host uses it to skip formatting in C).
function M.on_level_change(fn)
  on_level_change = fn
end

-- log.emit(level, msg, fields): the structured form; sink errors never propagate.
function M.emit(level, msg, fields)
  if not M.enabled(level) then return end
  local record = { time = clock(), level = level, msg = tostring(msg), fields = fields }
  for _, sink in ipairs(sinks) do
    local ok, err = pcall(sink, record)
    if not ok then io.stderr:write("warren: log sink failed: ", tostring(err), "\n") end
  end
end

-- log.info(fmt, ...) formats like string.format; a trailing table is taken as fields.
for name in pairs(LEVELS) do
  M[name] = function(fmt, ...)
    if not M.enabled(name) then return end
    local n = select("#", ...)
    local fields
    if n > 0 and type(select(n, ...)) == "table" then
      fields = select(n, ...)
      n = n - 1
    end
    local msg = fmt
    if n > 0 then msg = string.format(fmt, ...) end
    M.emit(name, msg, fields)
  end
end

sinks = { M.stream_sink(M.format_text, io.stderr) }

return M
