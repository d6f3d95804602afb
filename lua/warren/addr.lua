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

-- Where a bad spec came from, for messages: "-L 1:h:2" when the caller names it, else the spec.
local function source(spec, what)
  return what and (what .. " " .. spec) or string.format("%q", spec)
end

local function port_of(text, spec, what, allow_zero)
  local p = text:match("^%d+$") and tonumber(text)
  if not p or p > 65535 or (p == 0 and not allow_zero) then
    return nil, string.format("bad port %q in %s: must be %d-65535", text, source(spec, what), allow_zero and 0 or 1)
  end
  return p
end

-- listen: an address to listen on, which is numeric (no DNS on the loop): empty, "*" (ssh's
-- "all interfaces"), "localhost" or an IP address.
local function host_of(part, spec, what, listen)
  if part.bracketed then
    if not part.text:find(":", 1, true) then
      return nil, string.format("bad host [%s] in %s: brackets are for IPv6 addresses", part.text, source(spec, what))
    end
    return part.text
  end
  if listen and part.text == "*" then return "*" end
  if part.text:find("[^%w%.%-_]") then return nil, string.format("bad host %q in %s", part.text, source(spec, what)) end
  if listen and part.text ~= "" and part.text ~= "localhost" and not M.classify(part.text) then
    return nil, string.format("bad host %q in %s: listen on an IP address, or * for all interfaces", part.text,
      source(spec, what))
  end
  return part.text
end

-- "host:port" (host may be empty: ":port", or absent: "port"). opts: allow_zero (port 0),
-- host_required, listen ("*" accepted as the host: all interfaces), what (how messages name
-- the spec, such as "-L" or "relay address"). Returns {host=, port=} or nil, err.
function M.parse(spec, opts)
  opts = opts or {}
  if type(spec) ~= "string" or spec == "" then
    return nil, (opts.what and opts.what .. ": " or "") .. "empty address"
  end
  local parts, err = split(spec)
  if not parts then return nil, err end
  if #parts == 1 and not parts[1].bracketed then parts = { { text = "" }, parts[1] } end
  if #parts ~= 2 then return nil, string.format("bad address %s (want host:port)", source(spec, opts.what)) end
  local host, herr = host_of(parts[1], spec, opts.what, opts.listen)
  if not host then return nil, herr end
  local port, perr = port_of(parts[2].text, spec, opts.what, opts.allow_zero)
  if not port then return nil, perr end
  if opts.host_required and host == "" then return nil, string.format("%s needs a host", source(spec, opts.what)) end
  return { host = host, port = port }
end

-- Carriers a relay address may name as a URL scheme (with the port each implies when the URL
-- gives none).
local carriers = { tcp = false, tls = 443, ws = 80, wss = 443, http = 80, https = 443, kcp = false }
local with_path = { ws = true, wss = true, http = true, https = true }

-- A relay address: "host:port" or "SCHEME://host[:port][/path]" with SCHEME tcp, tls, ws, wss,
-- http, https or kcp (a path only for ws, wss, http and https). Returns {carrier =, host =, port =,
-- path =} or nil, err.
function M.parse_relay(spec)
  local scheme, rest = tostring(spec or ""):match("^(%a+)://(.*)$")
  local path
  if scheme then
    scheme = scheme:lower()
    if carriers[scheme] == nil then
      return nil, string.format("relay address %s: unknown carrier %s:// (tcp, tls, ws, wss, http, https or kcp)",
        spec, scheme)
    end
    local authority, p = rest:match("^([^/]*)(/.*)$")
    if authority then
      rest = authority
      if p ~= "/" then
        if not with_path[scheme] then
          return nil, string.format("relay address %s: only ws, wss, http and https take a path", spec)
        end
        path = p
      end
    end
    if not rest:match(":%d+$") then
      if not carriers[scheme] then return nil, string.format("relay address %s needs a port", spec) end
      rest = rest .. ":" .. carriers[scheme] -- the scheme's port, as a browser would take it
    end
  end
  local a, err = M.parse(rest or spec or "", { host_required = true, what = "relay address" })
  if not a then return nil, err end
  a.carrier = scheme or "tcp"
  a.path = path
  return a
end

-- Renders {host, port} back into "host:port" ("[v6]:port" for IPv6).
function M.format(a)
  local host = a.host or ""
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(a.port)
end

-- ssh -L forms: LPORT, BIND:LPORT, LPORT:HOST:RPORT, BIND:LPORT:HOST:RPORT (IPv6 in brackets;
-- BIND "*" is all interfaces). Returns {listen = {host, port}, target = {host, port} or nil,
-- bind = BIND as written or nil}; an empty target host means the relay's own localhost, an
-- empty or absent bind address means 127.0.0.1 in listen.host (as ssh does). `what` names the
-- spec in messages ("-L").
function M.parse_forward(spec, what)
  spec = spec or ""
  local parts, err = split(spec)
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
    return nil, string.format("bad forward %s (want [BIND:]LPORT[:HOST:RPORT])", source(spec, what))
  end
  local r = { listen = {} }
  if bind then
    local h, herr = host_of(bind, spec, what, true)
    if not h then return nil, herr end
    r.listen.host = h
    r.bind = h
  end
  if not r.listen.host or r.listen.host == "" then r.listen.host = "127.0.0.1" end
  local p, perr = port_of(lport.text, spec, what, true)
  if not p then return nil, perr end
  r.listen.port = p
  if thost then
    local h, herr = host_of(thost, spec, what)
    if not h then return nil, herr end
    local tp, tperr = port_of(tport.text, spec, what)
    if not tp then return nil, tperr end
    r.target = { host = h, port = tp }
  end
  return r
end

-- ---- IP addresses: parsing and classes ----

-- A strict dotted quad: four decimal numbers 0-255 without leading zeros (which some parsers
-- read as octal). Returns its four bytes or nil.
local function parse_v4(s)
  local bytes = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #bytes ~= 4 then return nil end
  for i, text in ipairs(bytes) do
    if #text > 3 or (#text > 1 and text:sub(1, 1) == "0") or tonumber(text) > 255 then return nil end
    bytes[i] = tonumber(text)
  end
  return bytes
end

-- The 16-bit groups of one side of "::" (a dotted quad allowed last when v4_last), or nil.
local function v6_groups(text, v4_last)
  local out = {}
  if text == "" then return out end
  local fields = {}
  for field in (text .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = field end
  for i, field in ipairs(fields) do
    if v4_last and i == #fields and field:find(".", 1, true) then
      local b = parse_v4(field)
      if not b then return nil end
      out[#out + 1] = b[1] * 256 + b[2]
      out[#out + 1] = b[3] * 256 + b[4]
    elseif field:match("^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(field, 16)
    else
      return nil
    end
  end
  return out
end

-- Any RFC 4291 text form (compressed "::", a trailing dotted quad, any case; no zone). Returns
-- its eight 16-bit groups or nil.
local function parse_v6(s)
  local gap = s:find("::", 1, true)
  if not gap then
    local g = v6_groups(s, true)
    return g and #g == 8 and g or nil
  end
  local head, tail = v6_groups(s:sub(1, gap - 1), false), v6_groups(s:sub(gap + 2), true)
  if not head or not tail or s:find("::", gap + 1, true) or #head + #tail > 7 then return nil end
  local g = head
  for _ = 1, 8 - #head - #tail do g[#g + 1] = 0 end
  for _, v in ipairs(tail) do g[#g + 1] = v end
  return g
end

-- RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups as "::".
local function format_v6(g)
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    local j = i
    while j <= 8 and g[j] == 0 do j = j + 1 end
    if j - i > best_len then best, best_len = i, j - i end
    i = j + 1
  end
  local parts = {}
  for k = 1, 8 do parts[k] = string.format("%x", g[k]) end
  if not best then return table.concat(parts, ":") end
  return table.concat(parts, ":", 1, best - 1) .. "::" .. table.concat(parts, ":", best + best_len, 8)
end

local function v4_class(b)
  local a, n = b[1], b[2]
  if a == 0 then return "unspecified" end -- 0.0.0.0/8: "this host" (Linux dials its own)
  if a == 127 then return "loopback" end
  if a == 10 or (a == 172 and n >= 16 and n <= 31) or (a == 192 and n == 168)
    or (a == 100 and n >= 64 and n <= 127) then -- RFC 1918 and the CGNAT shared space
    return "private"
  end
  if a == 169 and n == 254 then return "link_local" end
  if a >= 224 and a <= 239 then return "multicast" end
  if a == 255 and n == 255 and b[3] == 255 and b[4] == 255 then return "broadcast" end
  if a >= 240 or (a == 192 and n == 0 and (b[3] == 0 or b[3] == 2)) -- future use, IETF, TEST-NET-1
    or (a == 198 and (n == 18 or n == 19)) or (a == 198 and n == 51 and b[3] == 100) -- benchmarks
    or (a == 203 and n == 0 and b[3] == 113) then -- TEST-NET-2, -3
    return "reserved"
  end
  return "global"
end

-- The IPv4 address an IPv6 one stands for: IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96,
-- IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and 6to4 2002::/16. nil for the others.
local function embedded_v4(g)
  local function v4(hi, lo) return { math.floor(hi / 256), hi % 256, math.floor(lo / 256), lo % 256 } end
  local zero5 = g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0
  if zero5 and g[5] == 0 and (g[6] == 0 or g[6] == 0xffff) then return v4(g[7], g[8]) end
  if zero5 and g[5] == 0xffff and g[6] == 0 then return v4(g[7], g[8]) end
  if g[1] == 0x64 and g[2] == 0xff9b and g[3] == 0 and g[4] == 0 and g[5] == 0 and g[6] == 0 then
    return v4(g[7], g[8])
  end
  if g[1] == 0x2002 then return v4(g[2], g[3]) end
  return nil
end

local function v6_class(g)
  local zero7 = true
  for k = 1, 7 do zero7 = zero7 and g[k] == 0 end
  if zero7 and g[8] == 0 then return "unspecified" end
  if zero7 and g[8] == 1 then return "loopback" end
  local v4 = embedded_v4(g)
  if v4 then return v4_class(v4), v4 end
  local top = g[1]
  if top >= 0xfe80 and top <= 0xfebf then return "link_local" end
  if (top >= 0xfc00 and top <= 0xfdff) or (top >= 0xfec0 and top <= 0xfeff)
    or (top == 0x64 and g[2] == 0xff9b and g[3] == 1) then -- ULA, site-local, local NAT64
    return "private"
  end
  if top >= 0xff00 then return "multicast" end
  if (top == 0x2001 and g[2] == 0xdb8) or (top == 0x100 and g[2] == 0 and g[3] == 0 and g[4] == 0) then
    return "reserved" -- documentation, discard-only
  end
  return "global"
end

-- What kind of address `ip` is, for policy hooks: "unspecified", "loopback", "private" (RFC 1918,
-- CGNAT 100.64.0.0/10, IPv6 ULA and site-local), "link_local", "multicast", "broadcast",
-- "reserved" (documentation, benchmarking, 240/4) or "global". IPv6 may be in any text form, in
-- brackets, with a zone ("fe80::1%eth0"); an IPv6 address that embeds an IPv4 one
-- (::ffff:127.0.0.1, ::7f00:1, 64:ff9b::a00:1, 2002:a00:1::) is classed as that IPv4 address,
-- since that is where a dial goes. Returns class, canonical text (the IPv4 address for those),
-- or nil, err when ip is not an IP address.
function M.classify(ip)
  if type(ip) ~= "string" then return nil, "not an IP address: " .. tostring(ip) end
  local text = ip:match("^%[(.*)%]$") or ip
  if not text:find(":", 1, true) then
    local b = parse_v4(text)
    if not b then return nil, string.format("not an IP address: %q", ip) end
    return v4_class(b), table.concat(b, ".")
  end
  local g = parse_v6(text:match("^(.-)%%[^%%]+$") or text)
  if not g then return nil, string.format("not an IP address: %q", ip) end
  local class, v4 = v6_class(g)
  return class, v4 and table.concat(v4, ".") or format_v6(g)
end

-- True unless ip is a global address (any class above but "global"); nil, err when ip is not an
-- IP address, so a policy can refuse what it cannot tell.
function M.is_internal(ip)
  local class, err = M.classify(ip)
  if not class then return nil, err end
  return class ~= "global"
end

return M
