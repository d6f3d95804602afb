-- Renders Lua values for the REPL (tables to a bounded depth and length, cycles marked), and
-- text from peers for terminals (control characters escaped, columns measured in characters).
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

-- Text from a peer, made safe for a terminal -------------------------------------------------

-- Decodes the UTF-8 character at byte i of s: its code point and the index after it, or nil
-- for a byte that does not start a well-formed character (overlong forms, surrogates and code
-- points past U+10FFFF are not well-formed).
local function decode(s, i)
  local c = s:byte(i)
  if c < 0x80 then return c, i + 1 end
  local len, min
  if c >= 0xF0 and c <= 0xF4 then
    len, min = 4, 0x10000
  elseif c >= 0xE0 and c < 0xF0 then
    len, min = 3, 0x800
  elseif c >= 0xC2 and c < 0xE0 then
    len, min = 2, 0x80
  else
    return nil
  end
  local cp = c % (2 ^ (7 - len))
  for j = i + 1, i + len - 1 do
    local b = s:byte(j)
    if not b or b < 0x80 or b > 0xBF then return nil end
    cp = cp * 64 + b % 64
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return cp, i + len
end

local named_escapes = { [9] = "\\t", [10] = "\\n", [13] = "\\r", [27] = "\\e" }

-- C0 controls, DEL and C1 controls: what a terminal may act on instead of showing.
local function is_control(cp)
  return cp < 0x20 or (cp >= 0x7F and cp <= 0x9F)
end

-- Returns s with every control character written as an escape (\n, \t, \e, \x01, \u0085)
-- and every byte that is not well-formed UTF-8 as \xNN, and the width of the result in
-- characters (code points).
function M.escape(s)
  local out, width, i = {}, 0, 1
  while i <= #s do
    local cp, after = decode(s, i)
    local piece
    if not cp then
      piece, after = string.format("\\x%02x", s:byte(i)), i + 1
    elseif is_control(cp) then
      piece = named_escapes[cp] or string.format(cp < 0x80 and "\\x%02x" or "\\u%04x", cp)
    end
    if piece then
      out[#out + 1] = piece
      width = width + #piece
    else
      out[#out + 1] = s:sub(i, after - 1)
      width = width + 1
    end
    i = after
  end
  return table.concat(out), width
end

-- True when s is well-formed UTF-8 without control characters: it shows as written.
function M.is_printable(s)
  local i = 1
  while i <= #s do
    local cp, after = decode(s, i)
    if not cp or is_control(cp) then return false end
    i = after
  end
  return true
end

-- Lays out rows (lists of strings, the first one the header) as columns two spaces apart,
-- every cell escaped and measured in characters; returns the lines.
function M.columns(rows)
  local cells, widths = {}, {}
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, text in ipairs(row) do
      local shown, width = M.escape(text)
      cells[r][c] = { shown, width }
      widths[c] = math.max(widths[c] or 0, width)
    end
  end
  local lines = {}
  for r, row in ipairs(cells) do
    local parts = {}
    for c, cell in ipairs(row) do
      parts[c] = c == #row and cell[1] or cell[1] .. string.rep(" ", widths[c] - cell[2])
    end
    lines[r] = table.concat(parts, "  ")
  end
  return lines
end

return M
