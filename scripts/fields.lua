-- The fields of a thread-local (or of a path through it), to explore a binary.
--   taskdbg run scripts/fields.lua PID|CORE TLS_PATH [FIELD...]
--   taskdbg run scripts/fields.lua PID tokio::runtime::context::CONTEXT value
local path = assert(args[1], "usage: fields.lua TLS_PATH [FIELD...]")
local tid = td.threads()[1].tid
local v, why = td.tls(path, tid)
if not v then error(why) end
for i = 2, #args do v = v[args[i]] end
return { type = td.type_name(v), fields = td.fields(v) }
