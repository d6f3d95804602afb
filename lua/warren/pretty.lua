-- Renders Lua values for the REPL: tables to a bounded depth and length, cycles marked.
local M = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local render

local function render_table(t, opts, depth, seen)
  if seen[t] then return "<cycle>" end
  if depth >= opts.depth then return "{...}" end
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__tostring then return tostring(t) end
  seen[t] = true
  local parts, count = {}, 0
  local n = #t
  for i = 1, n do
    count = count + 1
    if count > opts.items then break end
    parts[#parts + 1] = render(t[i], opts, depth + 1, seen)
  end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  for _, k in ipairs(keys) do
    count = count + 1
    if count > opts.items then break end
    local label = is_identifier(k) and k or "[" .. render(k, opts, opts.depth, seen) .. "]"
    parts[#parts + 1] = label .. " = " .. render(t[k], opts, depth + 1, seen)
  end
  if count > opts.items then parts[#parts + 1] = "..." end
  seen[t] = nil
  if #parts == 0 then return "{}" end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

render = function(v, opts, depth, seen)
  local t = type(v)
  if t == "string" then
    return string.format("%q", v):gsub("\\\n", "\\n")
  elseif t == "table" then
    return render_table(v, opts, depth, seen)
  end
  return tostring(v)
end

-- pretty.format(value, {depth = 3, items = 50})
function M.format(value, opts)
  opts = opts or {}
  local o = { depth = opts.depth or 3, items = opts.items or 50 }
  return (render(value, o, 0, {}))
end

return M
