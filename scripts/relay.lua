-- A relay for reverse tunnels whose outer ports, and who may use them, come from a file:
--   warren --control /run/warren/relay.sock run scripts/relay.lua 0.0.0.0:8100 /etc/warren/ports
-- The key is WARREN_KEY, or the file WARREN_KEY_FILE names. Each line of the ports file is a
-- range, open to every client, or followed by the client ids (warren -R ... --client-id ID) that
-- alone may register there; # starts a comment:
--   9930-9939
--   9940-9949  alice bob
-- The file is watched: edit it and the relay reloads. New ranges join the pool at once; who may
-- register where applies to the next registration (services already up stay up).
local log = require("warren.log")
local registry = require("warren.registry")

local listen, ports_file = ...
assert(ports_file, "usage: warren run scripts/relay.lua LISTEN PORTS_FILE")

local ranges, open = {}, true -- open: no range is kept for some clients
local f = assert(io.open(ports_file))
for line in f:lines() do
  line = line:gsub("#.*$", "")
  local range, ids = line:match("^%s*(%S+)%s*(.-)%s*$")
  if range then
    local from, to = registry.parse_range(range)
    assert(from, ports_file .. ": " .. tostring(to))
    local only
    for id in ids:gmatch("%S+") do
      only = only or {}
      only[id] = true
    end
    open = open and only == nil
    ranges[#ranges + 1] = { text = range, from = from, to = to, only = only }
  end
end
f:close()

local function range_of(port)
  for _, r in ipairs(ranges) do
    if port >= r.from and port <= r.to then return r end
  end
end

local texts = {}
for i, r in ipairs(ranges) do texts[i] = r.text end

return {
  serve = listen,
  key_file = os.getenv("WARREN_KEY_FILE"),
  ports = texts,
  watch = { ports_file },
  hooks = {
    register = function(svc, client)
      if svc.port == 0 then
        -- "any free port" could land in a range kept for someone else
        return open, "name an outer port: the ranges here belong to clients"
      end
      local r = range_of(svc.port)
      if not r then return false, "port " .. svc.port .. " is not in the pool" end
      if r.only and not r.only[client.client_id] then
        return false, string.format("ports %s are not for client %s", r.text, tostring(client.client_id))
      end
      return true
    end,
    up = function(svc) log.info("service %s is up on port %d", svc.name, svc.port) end,
    user_close = function(svc, info)
      log.info("%s left %s: %d bytes up, %d down", info.peer, svc.name, info.bytes_up, info.bytes_down)
    end,
  },
}
