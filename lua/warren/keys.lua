-- Turns the key options of a script or the command line into a 32-byte key.
--   {key = "..."}       a `warren keygen` key, or else a password (the same rule on both ends)
--   {password = "..."}  always a password, stretched with PBKDF2
--   {key_file = path}   the first line of the file, by the `key` rule
local core = require("warren.core")

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

return M
