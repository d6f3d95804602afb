-- Publishes a list of local services on a relay's outer ports (like one warren -R each):
--   warren --control ~/.warren/client.sock run scripts/client.lua RELAY SERVICES_FILE
-- The key is WARREN_KEY, or the file WARREN_KEY_FILE names. Each line of the services file:
--   NAME  OUTER  HOST:PORT  [MESSAGE...]        (OUTER 0: any free port of the relay's pool)
--   ssh   9931   127.0.0.1:22  ssh on the build box
-- # starts a comment. The file is watched: add, change or drop a line and the client reloads;
-- services whose line did not change stay registered, and their users stay connected.
local server, services_file = ...
assert(services_file, "usage: warren run scripts/client.lua RELAY SERVICES_FILE")

local tunnels = {}
local f = assert(io.open(services_file))
local n = 0
for line in f:lines() do
  n = n + 1
  line = line:gsub("#.*$", "")
  if line:match("%S") then
    local name, outer, inner, message = line:match("^%s*(%S+)%s+(%d+)%s+(%S+)%s*(.-)%s*$")
    assert(name, string.format("%s:%d: want NAME OUTER HOST:PORT [MESSAGE]", services_file, n))
    assert(not tunnels[name], string.format("%s:%d: %s is listed twice", services_file, n, name))
    tunnels[name] = { R = outer .. ":" .. inner, message = message ~= "" and message or nil }
  end
end
f:close()

return {
  server = server,
  key_file = os.getenv("WARREN_KEY_FILE"),
  tunnels = tunnels,
  watch = { services_file },
}
