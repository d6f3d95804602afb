-- A relay for reverse tunnels whose outer ports, and who may use them, come from a file, and
-- whose users (one key each, with port ranges of their own) from another:
--   warren --control /run/warren/relay.sock run scripts/relay.lua 0.0.0.0:8100 /etc/warren/ports \
--     [/etc/warren/users]
-- The relay's own key is the file WARREN_KEY_FILE names, or else (without a users file)
-- WARREN_KEY; with a users file it is optional, and is the user "default". Each line of the
-- ports file is a range, open to every client of a user without ranges of its own, or followed
-- by the client ids (warren -R ... --client-id ID) that alone may register there; # starts a
-- comment:
--   9930-9939
--   9940-9949  alice bob
-- Each line of the users file is NAME KEY_FILE [FROM-TO ...] [max_sessions=N] [max_streams=N]
-- (as warren serve --users reads it): that user's key, the only ranges it may register in, and
-- its limits.
--   carol  keys/carol.key  9950-9959  max_sessions=4
-- Both files are watched: edit one and the relay reloads. New ranges join the pool at once; who
-- may register where applies to the next registration (services already up stay up); a user
-- removed from the users file, or given another key, has its sessions ended.
local keys = require("warren.keys")
local log = require("warren.log")
local registry = require("warren.registry")

local listen, ports_file, users_file = ...
assert(ports_file, "usage: warren run scripts/relay.lua LISTEN PORTS_FILE [USERS_FILE]")

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

local users
if users_file then users = assert(keys.read_users(users_file)) end
local key_file = os.getenv("WARREN_KEY_FILE")
if key_file == "" then key_file = nil end

return {
  serve = listen,
  key_file = key_file,
  users = users,
  ports = texts,
  watch = { ports_file, users_file },
  hooks = {
    register = function(svc, client)
      if users and users[client.user] and users[client.user].ports then
        return true -- a user with ranges of its own: the relay keeps it to them
      end
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
