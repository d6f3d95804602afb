-- Destination policy for a relay: where clients' -L and -D connections may go. The relay
-- resolves the name first and passes the addresses it will dial, so a name cannot point
-- somewhere else between the check and the connect.
--   warren serve 0.0.0.0:8100 -k KEY --hooks examples/acl.lua
-- Without a dial hook a relay dials anywhere its own network reaches.
local hooks = {}

local allowed_ports = { [22] = true, [80] = true, [443] = true }

-- True when an IPv4 or IPv6 address is private, loopback or link-local.
local function internal(ip)
  if ip:find(":", 1, true) then
    ip = ip:lower()
    return ip == "::1" or ip:match("^fe[89ab]") ~= nil or ip:match("^f[cd]") ~= nil
  end
  local a, b = ip:match("^(%d+)%.(%d+)%.")
  a, b = tonumber(a), tonumber(b)
  return a == 10 or a == 127 or (a == 172 and b >= 16 and b <= 31) or (a == 192 and b == 168)
    or (a == 169 and b == 254) or a == 0
end

-- dial(host, port, info): info = {addresses = {...}, peer = client address, session = handle}
function hooks.dial(host, port, info)
  if not allowed_ports[port] then return false, "port " .. port .. " is not allowed" end
  for _, ip in ipairs(info.addresses) do
    if internal(ip) then return false, host .. " is an internal address" end
  end
  return true
end

return hooks
