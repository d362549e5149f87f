-- The td.* error rule (docs/plugins.md, "Errors"), against the C fixture
-- tests/fixtures/c/lists.c, live or on a core:
--   taskdbg run tests/lua/td_errors.lua TARGET BROKEN CYCLE LONELY MOTTO live|core
-- BROKEN, CYCLE, LONELY and MOTTO are the addresses the fixture prints. Returns
-- {passed = N, failures = {...}}: every check that failed, with what it got.
local BROKEN, CYCLE, LONELY = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
local MOTTO = tonumber(args[4])
local LIVE = args[5] == "live"
local WHERE = LIVE and "process" or "core"
local HOLE = 0x1000   -- below mmap_min_addr: never readable

local passed, failures = 0, {}
local function check(name, got, want)
  if got == want then
    passed = passed + 1
  else
    failures[#failures + 1] = string.format("%s: got %s, want %s", name, tostring(got), tostring(want))
  end
end
-- An error value: a td.error of this kind, message and address.
local function check_error(name, err, kind, message, address)
  check(name .. " is a td.error", td.is_error(err), true)
  if not td.is_error(err) then return end
  check(name .. " kind", err.kind, kind)
  check(name .. " is_error(kind)", td.is_error(err, kind), true)
  check(name .. " message", err.message, message)
  check(name .. " tostring", tostring(err), message)
  check(name .. " concatenates", "x: " .. err, "x: " .. message)
  check(name .. " address", err.address, address)
end
-- The error f raises (nil if it raises none).
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  return err
end
local function cannot_read(n, at) return string.format("cannot read %d bytes at 0x%x: not mapped in the %s", n, at, WHERE) end

local node_t = assert(td.find_type("node"))
local tid = td.threads()[1].tid

-- Faults: reads and navigation raise kind "fault" with the address.
check_error("read", raised(td.read, HOLE), "fault", cannot_read(8, HOLE), HOLE)
check_error("read 4", raised(td.read, HOLE + 4, 4), "fault", cannot_read(4, HOLE + 4), HOLE + 4)
local hole_node = td.value(node_t, HOLE)
check("navigating does not read", td.addr(hole_node.value), HOLE + 8)
check_error("uint", raised(td.uint, hole_node.value), "fault", cannot_read(8, HOLE + 8), HOLE + 8)
check_error("deref", raised(td.deref, hole_node.next), "fault", cannot_read(8, HOLE), HOLE)
check_error("pointer", raised(td.pointer, hole_node.next), "fault", cannot_read(8, HOLE), HOLE)
check("deref", td.addr(td.deref(td.value(node_t, BROKEN).next)), BROKEN + 16)
check_error("deref of null", raised(td.deref, td.value(node_t, LONELY).next), "fault", "null pointer to node", 0)
-- A raised error says where the call was made (the plugin failure text starts with it).
local err = raised(function() return td.read(HOLE) end)
check("where", err and err.where and err.where:match("^td_errors%.lua:%d+: $") ~= nil, true)

-- Missing fields raise kind "not_found".
check_error("v.field", raised(function() return hole_node.nosuch end), "not_found", "node has no field nosuch")
check_error("td.offset", raised(td.offset, node_t, "nosuch"), "not_found", "node has no field nosuch")
check_error("td.variant", raised(td.variant, hole_node), "not_found", "node is not an enum")
check("td.offset", td.offset(node_t, "value"), 8)

-- Lookups return nil and a not_found error.
local v, e = td.find_type("no::Such")
check("find_type nil", v, nil)
check_error("find_type", e, "not_found", "no type no::Such")
v, e = td.tls("no_such_tls", tid)
check("tls nil", v, nil)
check_error("tls", e, "not_found", "no thread-local no_such_tls")
check("tls found", td.uint(td.tls("tls_counter", tid)), 7)
v, e = td.tls("tls_counter", 999999)
check_error("tls of no thread", e, "not_found", "no thread 999999 in the snapshot")
v, e = td.function_at(HOLE)
check("function_at nil", v, nil)
check_error("function_at", e, "not_found", "no function at 0x1000")
v, e = td.template(node_t, "T")
check_error("template", e, "not_found", "node has no template parameter T")
v, e = td.target_clock_ms()
if LIVE then
  check("target_clock_ms", math.type(v), "float")
else
  check_error("target_clock_ms", e, "not_found", "a core file records no clock of the target")
end
v, e = td.frame_locals(999999)
check("frame_locals of no thread", #v, 0)
check_error("frame_locals of no thread", e, "not_found", "no thread 999999 in the snapshot")

-- The non-raising reads: nil and the fault.
v, e = td.try_read(HOLE)
check("try_read nil", v, nil)
check_error("try_read", e, "fault", cannot_read(8, HOLE), HOLE)
check("try_read", td.try_read(BROKEN + 8), 1)
-- .rodata: in no segment of a gcore core, read from the executable itself.
check("read_bytes of .rodata", td.read_bytes(MOTTO, 18), "read from the file")
v, e = td.read_bytes(HOLE, 4)
check_error("read_bytes", e, "fault", cannot_read(4, HOLE), HOLE)

-- td.follow: nil and a fault (address 0 at a null pointer).
check("follow", td.follow(BROKEN, { -1, -1, -1 }), HOLE)
v, e = td.follow(BROKEN, { -1, -1, -1, -1 })
check("follow nil", v, nil)
check_error("follow", e, "fault", cannot_read(8, HOLE), HOLE)
v, e = td.follow(LONELY, { -1 })
check_error("follow null", e, "fault", string.format("null pointer at 0x%x (step 1)", LONELY), 0)
-- td.follow_many: what it reached, and the first unreadable pointer (a null one is no error).
v, e = td.follow_many({ a = BROKEN, b = LONELY, c = HOLE }, { -1 })
check("follow_many a", v.a, BROKEN + 16)
check("follow_many b", v.b, nil)
check("follow_many c", v.c, nil)
check_error("follow_many", e, "fault", cannot_read(8, HOLE), HOLE)
v, e = td.follow_many({ a = BROKEN, b = LONELY }, { -1 })
check("follow_many without fault", e, nil)

-- td.walk_list: the columns so far and a fault.
local cols, why = td.walk_list{ first = BROKEN, next = { at = 0 }, fields = { value = { at = 8 } } }
check("walk_list nodes", table.concat(cols.node, ","),
      table.concat({ BROKEN, BROKEN + 16, BROKEN + 32, HOLE }, ","))
check("walk_list values", table.concat(cols.value, ","), "1,2,3,0")
check_error("walk_list", why, "fault", cannot_read(8, HOLE + 8), HOLE + 8)
cols, why = td.walk_list{ first = CYCLE, next = { at = 0 }, fields = { value = { at = 8 } } }
check("walk_list cycle values", table.concat(cols.value, ","), "10,20")
check_error("walk_list cycle", why, "fault", string.format("the list loops back to 0x%x", CYCLE), CYCLE)
cols, why = td.walk_list{ first = LONELY, next = { at = 0 }, fields = { value = { at = 8 } } }
check("walk_list to a null next", table.concat(cols.value, ","), "5")
check("walk_list to a null next: no error", why, nil)

-- Bad arguments raise kind "usage".
check_error("usage: read", raised(function() return td.read("x") end), "usage",
            "bad argument #1 to 'read' (number expected, got string)")
check_error("usage: read size", raised(function() return td.read(BROKEN, 3) end), "usage",
            "bad argument #2 to 'read' (size 1, 2, 4 or 8 expected, got 3)")
check_error("usage: uint", raised(function() return td.uint(5) end), "usage",
            "bad argument #1 to 'uint' (Value expected, got number)")
check_error("usage: read_bytes", raised(function() return td.read_bytes(BROKEN, -1) end), "usage",
            "bad argument #2 to 'read_bytes' (0 to 4096 bytes expected, got -1)")
check_error("usage: fields={{at=0}}", raised(td.walk_list, { first = 0, next = { at = 0 }, fields = { { at = 0 } } }),
            "usage", "td.walk_list: fields are named: fields = {name = {at = N}, ...}")
check_error("usage: walk_list next", raised(td.walk_list, { first = BROKEN }), "usage",
            "td.walk_list: next = {at = N} (or {via =, via_field =, at =}) is needed")
check_error("usage: td.error kind", raised(function() return td.error("nope", "x") end), "usage",
            "bad argument #1 to 'error' (no error kind nope)")

-- td.try: faults and not_found become nil, err; other errors go on up unchanged.
local a, b, c = td.try(function(x) return x, x + 1, x + 2 end, 1)
check("try results", table.concat({ a, b, c }, ","), "1,2,3")
v, e = td.try(td.read, HOLE)
check("try fault nil", v, nil)
check_error("try fault", e, "fault", cannot_read(8, HOLE), HOLE)
v, e = td.try(td.offset, node_t, "nosuch")
check_error("try not_found", e, "not_found", "node has no field nosuch")
check_error("try re-raises usage", raised(td.try, td.read, "x"), "usage",
            "bad argument #1 to '?' (number expected, got string)")
check("try re-raises strings", raised(td.try, error, "plain", 0), "plain")
check("try re-raises strings with their position", raised(td.try, function() error("boom") end):match("^td_errors%.lua:%d+: boom$") ~= nil, true)
local made = td.error("usage", "made up")
check("try re-raises a usage td.error as it is", raised(td.try, error, made), made)
v, e = td.try(error, td.error("not_found", "made up"))
check_error("try of a plugin's own not_found", e, "not_found", "made up")
check_error("td.error", td.error("fault", "made up", 16), "fault", "made up", 16)
check("is_error of a string", td.is_error("cannot read"), false)
check("is_error of a table", td.is_error({ kind = "fault", message = "x" }), false)

return { passed = passed, failures = setmetatable(failures, { __array = true }) }
