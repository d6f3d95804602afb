-- Runs busted inside the warren binary. The whole run is one task, so specs may await
-- (warren.sleep, child processes, sockets) directly.
package.path = (os.getenv("WARREN_SOURCE_DIR") or ".") .. "/spec/?.lua;" .. package.path
-- Loaded before busted runs the file, so the file's require gets this same table: busted unloads
-- only the modules a file loads itself, and kill_all must see the children the specs started.
local proc = require("helpers.proc")
-- On failures busted ends with error() under Lua 5.1 to get a non-zero status: make it an exit.
local ok = pcall(require("busted.runner"), { standalone = false })
proc.kill_all()
if not ok then os.exit(1) end
