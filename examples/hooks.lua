-- Relay hooks for reverse tunnels: which clients may register what, who may use a service, and
-- a log line with the byte counts when a user leaves.
--   warren serve 0.0.0.0:8100 --key-file /etc/warren/key --ports 9930-9939 --hooks examples/hooks.lua
-- Returns the hook table (the relay calls these; see lua/warren/registry.lua for every hook).
local log = require("warren.log")

local allowed_clients = { ["build-box"] = true, ["nas"] = true }
local blocked_users = { ["203.0.113.7"] = true }

local hooks = {}

-- Only known client ids may register (the key proves membership; the id says which member).
function hooks.auth(client)
  if allowed_clients[client.client_id] then return true end
  return false, "unknown client " .. client.client_id
end

-- Names are lowercase words; ports below 9935 are kept for the nas.
function hooks.register(svc, client)
  if not svc.name:match("^[a-z][a-z0-9-]*$") then return false, "name must be a lowercase word" end
  if svc.port ~= 0 and svc.port < 9935 and client.client_id ~= "nas" then
    return false, "ports below 9935 belong to the nas"
  end
  return true
end

function hooks.user_connect(svc, user)
  local ip = user.peer:match("^%[?(.-)%]?:%d+$")
  if blocked_users[ip] then return false, "blocked" end
  svc.store.connects = (svc.store.connects or 0) + 1
  return true
end

function hooks.user_close(svc, info)
  log.info("%s: %s left after %d ms, %d bytes in, %d out (user %d of this service)", svc.name,
    info.peer, info.duration_ms, info.bytes_up, info.bytes_down, svc.store.connects or 0)
end

function hooks.down(svc, reason)
  log.info("%s: port %d closed (%s)", svc.name, svc.port, reason)
end

-- Show each client only its own services.
function hooks.discover(list, client, what)
  if what == "ports" then return list end
  local mine = {}
  for _, s in ipairs(list) do
    if s.client_id == nil or s.client_id == client.client_id then mine[#mine + 1] = s end
  end
  return mine
end

return hooks
