-- Turns the key options of a script or the command line into a 32-byte key.
--   {key = "..."}       a `warren keygen` key, or else a password (the same rule on both ends)
--   {password = "..."}  always a password, stretched with PBKDF2
--   {key_file = path}   the first line of the file, by the `key` rule
local core = require("warren.core")
local registry = require("warren.registry")

local M = {}

M.generate = core.keygen

-- Returns key, source ("key" or "password"), or nil, err.
function M.resolve(opts)
  local given = {}
  for _, name in ipairs({ "key", "password", "key_file" }) do
    if opts[name] ~= nil then given[#given + 1] = name end
  end
  if #given == 0 then return nil, "a key is required (-k KEY, -p PASSWORD or --key-file FILE)" end
  if #given > 1 then return nil, "give only one of key, password and key_file" end
  local key, src
  if opts.key then
    key, src = core.key_from_text(opts.key, false)
  elseif opts.password then
    key, src = core.key_from_text(opts.password, true)
  else
    key, src = core.key_from_file(opts.key_file)
    if not key then return nil, opts.key_file .. ": " .. src end
  end
  if not key then return nil, src end
  return key, src
end

-- ---- users: several keys on one relay, one per user ----

M.USER_NAME_MAX = 63
local user_keys = { key = true, key_file = true, password = true, ports = true, max_sessions = true,
  max_streams = true }

local function sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- Checks a users table {NAME = {key | key_file | password, ports = {"9930-9934", ...},
-- max_sessions = N, max_streams = N}, ...} and turns it into a list sorted by name: {name, key
-- (32 bytes), ports (the range texts, or nil: the relay's shared ports), max_sessions (sessions at
-- once), max_streams (-L/-D streams at once over its sessions); 0 = no limit}. `default`,
-- when given, is the key of the relay's single key: the user "default". nil, err for anything
-- malformed (an unknown field included: a misspelt limit would silently not apply).
function M.resolve_users(users, default)
  if type(users) ~= "table" then return nil, "users must be a table such as { alice = { key_file = FILE } }" end
  local list = {}
  if default then list[1] = { name = "default", key = default, max_sessions = 0, max_streams = 0 } end
  for _, name in ipairs(sorted(users)) do
    local u = users[name]
    local where = "users." .. tostring(name)
    if type(name) ~= "string" or not name:match("^[%w_.@%-]+$") or #name > M.USER_NAME_MAX then
      return nil, string.format("users: bad name %q (1-%d letters, digits, _ . @ -)", tostring(name), M.USER_NAME_MAX)
    end
    if default and name == "default" then
      return nil, "users.default: the relay's own key is the user default already"
    end
    if type(u) ~= "table" then return nil, where .. " must be a table such as { key_file = FILE }" end
    for k in pairs(u) do
      if not user_keys[k] then
        return nil, string.format("%s: unknown key %q (keys: %s)", where, tostring(k),
          table.concat(sorted(user_keys), ", "))
      end
    end
    local key, kerr = M.resolve(u)
    if not key then return nil, where .. ": " .. kerr end
    if u.ports ~= nil and type(u.ports) ~= "table" then
      return nil, where .. ": ports must be a list such as { \"9930-9939\" }"
    end
    for _, range in ipairs(u.ports or {}) do
      local from, rerr = registry.parse_range(range)
      if not from then return nil, where .. ": ports: " .. rerr end
    end
    for _, limit in ipairs({ "max_sessions", "max_streams" }) do
      local max = u[limit]
      if max ~= nil and (type(max) ~= "number" or max < 0 or max ~= math.floor(max) or max >= 2 ^ 32) then
        return nil, where .. ": " .. limit .. " must be an integer >= 0"
      end
    end
    list[#list + 1] = { name = name, key = key, ports = u.ports, max_sessions = u.max_sessions or 0,
      max_streams = u.max_streams or 0 }
  end
  if #list == 0 then return nil, "users: give at least one user" end
  return list
end

-- Reads a users file: one user a line, `NAME KEY_FILE [FROM-TO ...] [max_sessions=N]
-- [max_streams=N]`; # starts a
-- comment; a relative KEY_FILE is next to the users file. Returns a users table (as a script's
-- `users`) or nil, err naming the line.
function M.read_users(path)
  local f, ferr = io.open(path)
  if not f then return nil, ferr end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local users, n = {}, 0
  for line in f:lines() do
    n = n + 1
    local words = {}
    for w in line:gsub("#.*$", ""):gmatch("%S+") do words[#words + 1] = w end
    if #words > 0 then
      local name, key_file = words[1], words[2]
      if not key_file then
        f:close()
        return nil, string.format("%s:%d: want NAME KEY_FILE [FROM-TO ...] [max_sessions=N] [max_streams=N]",
          path, n)
      end
      if users[name] then
        f:close()
        return nil, string.format("%s:%d: user %s is already listed", path, n, name)
      end
      local u = { key_file = key_file:sub(1, 1) == "/" and key_file or (dir .. "/" .. key_file) }
      for i = 3, #words do
        local limit, max = words[i]:match("^(max_s%a+)=(%d+)$")
        if limit == "max_sessions" or limit == "max_streams" then
          u[limit] = tonumber(max)
        else
          u.ports = u.ports or {}
          u.ports[#u.ports + 1] = words[i]
        end
      end
      users[name] = u
    end
  end
  f:close()
  return users
end

return M
