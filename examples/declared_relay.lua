-- A relay declared by a script: what
--   warren serve 127.0.0.1:8100 --key-file /etc/warren/key --ports 9930-9939 --hooks examples/hooks.lua
-- runs, but live-reloadable: edit this file or hooks.lua (it is listed in `watch`), or run
-- `warren reload --control /tmp/relay.sock`, and the new version takes over without dropping
-- anyone; a version with a mistake is refused and the running one stays.
--   WARREN_KEY_FILE=/etc/warren/key warren --control /tmp/relay.sock run examples/declared_relay.lua
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

return {
  serve = os.getenv("LISTEN") or "127.0.0.1:8100",
  key_file = os.getenv("WARREN_KEY_FILE"),            -- nil: WARREN_KEY is the key
  ports = { os.getenv("PORTS") or "9930-9939" },
  hooks = dofile(here .. "hooks.lua"),               -- a hook file is a plain Lua table
  watch = { here .. "hooks.lua" },
}
