-- Address strings of the command line and scripts: "host:port", "[v6]:port", ":port", "port",
-- and ssh's -L forms.
local M = {}

-- Splits on ':' outside brackets; brackets are kept out of the parts.
local function split(spec)
  local parts, i, n = {}, 1, #spec
  while i <= n + 1 do
    if spec:sub(i, i) == "[" then
      local close = spec:find("]", i, true)
      if not close then return nil, "unclosed [ in " .. spec end
      local after = spec:sub(close + 1, close + 1)
      if after ~= ":" and after ~= "" then return nil, "expected : after ] in " .. spec end
      parts[#parts + 1] = { text = spec:sub(i + 1, close - 1), bracketed = true }
      i = close + 2
    else
      local colon = spec:find(":", i, true) or (n + 1)
      parts[#parts + 1] = { text = spec:sub(i, colon - 1) }
      i = colon + 1
    end
  end
  return parts
end

local function port_of(text, what, allow_zero)
  local p = text:match("^%d+$") and tonumber(text)
  if not p or p > 65535 or (p == 0 and not allow_zero) then
    return nil, string.format("bad %s port %q", what, text)
  end
  return p
end

local function host_of(part)
  if part.bracketed then
    if not part.text:find(":", 1, true) then return nil, "brackets are for IPv6 addresses: [" .. part.text .. "]" end
    return part.text
  end
  if part.text:find("[^%w%.%-_]") then return nil, string.format("bad host %q", part.text) end
  return part.text
end

-- "host:port" (host may be empty: ":port", or absent: "port"). Returns {host=, port=} or nil, err.
function M.parse(spec, opts)
  opts = opts or {}
  if type(spec) ~= "string" or spec == "" then return nil, "empty address" end
  local parts, err = split(spec)
  if not parts then return nil, err end
  if #parts == 1 and not parts[1].bracketed then parts = { { text = "" }, parts[1] } end
  if #parts ~= 2 then return nil, string.format("bad address %q (want host:port)", spec) end
  local host, herr = host_of(parts[1])
  if not host then return nil, herr end
  local port, perr = port_of(parts[2].text, "the", opts.allow_zero)
  if not port then return nil, perr end
  if opts.host_required and host == "" then return nil, string.format("address %q needs a host", spec) end
  return { host = host, port = port }
end

-- Renders {host, port} back into "host:port" ("[v6]:port" for IPv6).
function M.format(a)
  local host = a.host or ""
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(a.port)
end

-- ssh -L forms: LPORT, BIND:LPORT, LPORT:HOST:RPORT, BIND:LPORT:HOST:RPORT (IPv6 in brackets).
-- Returns {listen = {host, port}, target = {host, port} or nil, bind = BIND as written or nil};
-- an empty target host means the relay's own localhost, an empty or absent bind address means
-- 127.0.0.1 in listen.host (as ssh does).
function M.parse_forward(spec)
  local parts, err = split(spec or "")
  if not parts then return nil, err end
  local bind, lport, thost, tport
  if #parts == 1 then
    lport = parts[1]
  elseif #parts == 2 then
    bind, lport = parts[1], parts[2]
  elseif #parts == 3 then
    lport, thost, tport = parts[1], parts[2], parts[3]
  elseif #parts == 4 then
    bind, lport, thost, tport = parts[1], parts[2], parts[3], parts[4]
  else
    return nil, string.format("bad forward %q (want [BIND:]LPORT[:HOST:RPORT])", spec)
  end
  local r = { listen = {} }
  if bind then
    local h, herr = host_of(bind)
    if not h then return nil, herr end
    r.listen.host = h
    r.bind = h
  end
  if not r.listen.host or r.listen.host == "" then r.listen.host = "127.0.0.1" end
  local p, perr = port_of(lport.text, "listen", true)
  if not p then return nil, perr end
  r.listen.port = p
  if thost then
    local h, herr = host_of(thost)
    if not h then return nil, herr end
    local tp, tperr = port_of(tport.text, "target")
    if not tp then return nil, tperr end
    r.target = { host = h, port = tp }
  end
  return r
end

return M
