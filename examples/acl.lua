-- Destination policy for a relay: where clients' -L and -D connections may go. The relay
-- resolves the name first and passes the addresses it will dial, so a name cannot point
-- somewhere else between the check and the connect.
--   warren serve 0.0.0.0:8100 --key-file relay.key --hooks examples/acl.lua
-- Without a dial hook a relay dials anywhere its own network reaches.
local addr = require("warren.addr")

local hooks = {}

local allowed_ports = { [22] = true, [80] = true, [443] = true }

-- dial(host, port, info): info = {addresses = {...}, peer = client address, session = handle}
function hooks.dial(host, port, info)
  if not allowed_ports[port] then return false, "port " .. port .. " is not allowed" end
  for _, ip in ipairs(info.addresses) do
    -- every text form counts: ::ffff:127.0.0.1 is 127.0.0.1, :: is this host
    local class, canonical = addr.classify(ip)
    if class ~= "global" then
      return false, string.format("%s is not a public address (%s: %s)", host, canonical or ip, class or "unknown")
    end
  end
  return true
end

return hooks
