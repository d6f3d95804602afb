-- luacheck settings for the Lua library, scripts, examples and specs (run by .ci/test).
std = "luajit"
max_line_length = 120
-- Spec files also say `-- luacheck: std +busted` themselves, so they check clean without this file.
files["spec"] = { std = "+busted" }
