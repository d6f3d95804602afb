-- A relay for -L and -D clients that dials only what an ACL file allows:
--   warren --control /run/warren/fwd.sock run scripts/forwarder.lua 0.0.0.0:8100 /etc/warren/acl
-- The key is WARREN_KEY, or the file WARREN_KEY_FILE names. Each line of the ACL allows an IPv4
-- network or address (CIDR), or any IP address, and the ports there; # starts a comment:
--   10.0.0.0/8       22,443
--   192.0.2.7        80-89
--   2001:db8::5      443
-- Everything else is denied. The relay checks the addresses it will dial (after resolving the
-- name), in canonical form, so ::ffff:10.0.0.1 is 10.0.0.1. The file is watched: the new ACL
-- applies to the next connection; those already open go on.
local addr = require("warren.addr")
local bit = require("bit")
local log = require("warren.log")

local listen, acl_file = ...
assert(acl_file, "usage: warren run scripts/forwarder.lua LISTEN ACL_FILE")

local function ipv4_number(ip)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function parse_ports(text, where)
  local ports = {}
  for part in text:gmatch("[^,]+") do
    local from, to = part:match("^(%d+)%-(%d+)$")
    from = tonumber(from or part)
    to = tonumber(to) or from
    assert(from and to and from >= 1 and to <= 65535 and from <= to, where .. ": bad ports " .. part)
    ports[#ports + 1] = { from, to }
  end
  return ports
end

local rules = {}
local f = assert(io.open(acl_file))
local n = 0
for line in f:lines() do
  n = n + 1
  line = line:gsub("#.*$", "")
  local net, ports = line:match("^%s*(%S+)%s+(%S+)%s*$")
  local where = string.format("%s:%d", acl_file, n)
  if net then
    local ip, prefix = net:match("^([^/]+)/(%d+)$")
    ip = ip or net
    local class, canonical = addr.classify(ip)
    assert(class, where .. ": not an IP address: " .. ip)
    local rule = { ports = parse_ports(ports, where), text = net }
    local v4 = ipv4_number(canonical)
    if v4 then
      local bits = tonumber(prefix or 32)
      assert(bits <= 32, where .. ": bad prefix /" .. bits)
      rule.mask = bits == 0 and 0 or bit.lshift(-1, 32 - bits)
      rule.net = bit.band(v4, rule.mask)
    else
      assert(not prefix, where .. ": IPv6 networks are not supported, list addresses")
      rule.ip = canonical
    end
    rules[#rules + 1] = rule
  elseif line:match("%S") then
    error(where .. ": want ADDRESS[/PREFIX] PORTS")
  end
end
f:close()

local function allowed(ip, port)
  local _, canonical = addr.classify(ip)
  if not canonical then return false end
  local v4 = ipv4_number(canonical)
  for _, r in ipairs(rules) do
    local match
    if r.mask then
      match = v4 and bit.band(v4, r.mask) == r.net
    else
      match = canonical == r.ip
    end
    if match then
      for _, p in ipairs(r.ports) do
        if port >= p[1] and port <= p[2] then return true end
      end
    end
  end
  return false
end

return {
  serve = listen,
  key_file = os.getenv("WARREN_KEY_FILE"),
  watch = { acl_file },
  hooks = {
    dial = function(host, port, info)
      for _, ip in ipairs(info.addresses) do
        if not allowed(ip, port) then
          log.info("denied %s:%d (%s) to %s", host, port, ip, info.peer)
          return false, string.format("%s:%d is not allowed here", host, port)
        end
      end
      return true
    end,
  },
}
