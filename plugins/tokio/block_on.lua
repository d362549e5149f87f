-- What threads' stacks say, after the stop (from the stacks and registers
-- it copied): block_on's own future (found in its frame: pinned_futures,
-- plausible_state, upvars_equal), an idle LocalSet it runs (follow_run_until),
-- and for diagnose the guards, permits and channel ends in frame-local
-- variables (thread_holds) and the blocking pool each thread runs in or
-- shuts down (blocking_pools). It keeps nothing: each thread's frame
-- variables are cached per stop in stop.locals_of (the plugin's M.stop).

local U = require("tokio.util")
local R = require("tokio.resources")
local arc_data, EMPTY = U.arc_data, U.EMPTY
local resolve, resource_record = R.resolve, R.resource_record

local B = {}

-- A type GenFuture<T> (rustc before 1.67 wraps each async body in one:
-- U.without_generator_wrappers) as its T and T's offset in it; any other
-- type as itself (offset 0).
local function unwrap_generator(t)
  if not (td.type_name(t) or ""):find("^GenFuture<") then return t, 0 end
  local off, inner = td.try(td.offset, t, "__0")
  if not off then return t, 0 end
  return inner, off
end

-- Each thread's frame variables (td.frame_locals, located or not), once per
-- stop: block_on's futures, thread_holds and blocking_pools all read them,
-- and each call is a walk of DWARF scopes for every frame. A variable of
-- type GenFuture<T> is read as its T, as a newer compiler's build has it.
-- (stop.locals_of: { [tid] = td.frame_locals(tid, nil, true) })
local function frame_locals(stop, tid)
  local l = stop.locals_of[tid]
  if not l then
    l = td.frame_locals(tid, nil, true)
    for _, v in ipairs(l) do
      local off
      v.type, off = unwrap_generator(v.type)
      if v.addr then v.addr = v.addr + off end
    end
    stop.locals_of[tid] = l
  end
  return l
end

-- Bytes of the captured variables (a generator's Unresumed fields) of the
-- future at addr, read as if it were laid out like `copy` (same type).
local function upvars_equal(t, copy, addr)
  local payload, name = td.try(td.variant, td.value(t, copy))
  if not payload or name ~= "Unresumed" then return nil end
  local base = td.addr(payload) - copy
  local any = false
  for _, f in ipairs(td.fields(payload)) do
    local at, size = base + f.offset, f.size
    while size > 0 do
      local n = size >= 8 and 8 or size >= 4 and 4 or size >= 2 and 2 or 1
      local a, b = td.try_read(copy + at, n), td.try_read(addr + at, n)
      if a == nil or a ~= b then return false end
      at, size, any = at + n, size - n, true
    end
  end
  return any or nil
end

-- block_on's own future. It is no task, and rustc gives its pinned copy (the
-- `pin!` in tokio's CachedParkThread::block_on or CurrentThread::block_on)
-- no DWARF location. A future that has been polled is pinned, so it has not
-- moved since: it lies in the frame that declares the pinned variable,
-- between that frame's stack pointer and its CFA. Each 8-aligned place there
-- is decoded; the future is the one place whose whole chain is suspended
-- (a started async body is never Unresumed under a suspended one) and whose
-- captured variables equal those of the stale by-value copies rustc does
-- locate (the `future` arguments of the callers, left Unresumed). No such
-- place, or more than one: nothing is reported (taskdbg does not guess).
-- pinned_futures(stop, tid) returns { {frame=, address=, type=, chain=, leaf=, running=}, ... }.
local MAX_PIN_SCAN = 1 << 20
-- Whether the state of async body type t at a looks real: every reference
-- (`&T`) and NonNull in its live variant's fields (structs 4 deep, not
-- enums) points at readable memory, and there is at least one. Stack bytes
-- that only happen to hold a suspend point's discriminant rarely pass.
local function plausible_state(t, a)
  local payload = td.try(function() return td.variant(td.value(t, a)) end)
  if not payload then return false end
  local checked, budget = 0, 256
  local function sane(ptr) return ptr and ptr ~= 0 and td.try_read(ptr) ~= nil end
  local function walk(v, depth)
    local fields = td.try(td.fields, v)
    if not fields or depth > 4 then return true end
    local base = td.addr(v)
    for _, f in ipairs(fields) do
      budget = budget - 1
      if budget < 0 then return true end
      local name, at = f.type or "", base + (f.offset or 0)
      if name:sub(1, 1) == "&" or name:find("^NonNull<") then
        checked = checked + 1
        if not sane(td.try_read(at)) then return false end
      elseif f.name ~= "<variants>" and name ~= "" and not name:find("^Option<") then
        local child = td.try(function() return v[f.name] end)
        if child and not td.is_enum(child) and not walk(child, depth + 1) then return false end
      end
    end
    return true
  end
  return walk(payload, 0) and checked > 0
end

local function pinned_futures(stop, tid)
  local locals = frame_locals(stop, tid)
  local copies, polled_below = {}, {}
  -- By type path: each codegen unit has its own DIE of the same type.
  local function type_key(t) return td.qualified_name(t) or td.id(t) end
  for _, v in ipairs(locals) do
    if v.addr and (td.type_name(v.type) or ""):find("^{async_") then
      local id = type_key(v.type)
      copies[id] = copies[id] or {}
      table.insert(copies[id], v.addr)
    end
    -- An async body's resume function has `_task_context`: one is being polled
    -- (depth: the innermost inlined level that has one, per frame).
    if v.name == "_task_context" then
      polled_below[v.frame] = math.min(polled_below[v.frame] or v.depth, v.depth)
    end
  end
  -- Whether an async body is polled under variable v: in a deeper frame, or
  -- inlined deeper into v's own.
  local function polled_under(v)
    for f = 0, v.frame do
      local depth = polled_below[f]
      if depth and (f < v.frame or depth < v.depth) then return true end
    end
    return nil
  end
  -- The future at a, if its whole chain is suspended.
  local function suspended(t, a)
    local chain, leaf = td.try(td.await_chain, td.value(t, a))
    if not (chain and #chain > 0 and not chain.error) then return nil end
    for _, level in ipairs(chain) do
      if not level.state:find("^Suspend") then return nil end
    end
    return chain, leaf
  end
  local out, seen = {}, {}
  -- The async body a located Pin<&mut F> or Pin<Box<F>> variable points to:
  -- its type and address.
  local function through_pin(v)
    local t, off = td.try(function()
      local field = td.has(td.value(v.type, v.addr), "pointer") and "pointer" or "__pointer"
      return unwrap_generator(td.pointee(select(2, td.offset(v.type, field))))
    end)
    if not (t and (td.type_name(t) or ""):find("^{async_")) then return nil end
    local a = td.try_read(v.addr)
    if a and a ~= 0 then return t, a + off end
  end
  -- The future of type t at a, found through variable v, if it is suspended.
  local function add_at(v, t, a)
    if seen[a] then return end
    local chain, leaf = suspended(t, a)
    if chain then
      seen[a] = true
      out[#out + 1] = { frame = v.frame, address = a, type = t, chain = chain, leaf = leaf,
                        running = polled_under(v) }
    end
  end
  -- A located `Pin<&mut F>` of the future block_on runs leads to it
  -- directly (tokio >= 1.29 pins it in closures of block_on, whose pinned
  -- reference rustc does locate). F must be a block_on frame's own type
  -- parameter: a task polled on this thread may pin futures of its own.
  local block_on_types = {}
  for _, v in ipairs(locals) do
    local f = (v["function"] or ""):match("^block_on[%w_]*<(.*)>$")
    if f then block_on_types[U.without_generator_wrappers(f)] = true end
  end
  for _, v in ipairs(locals) do
    local tn = td.type_name(v.type) or ""
    if v.addr and tn:find("^Pin<&mut dyn ") then
      -- #[tokio::test] (tokio-macros >= 2.1) hands block_on its pinned body
      -- as a Pin<&mut dyn Future>: td.await_chain names the future through
      -- the trait object's vtable, whose data pointer is where it is pinned.
      if block_on_types[td.qualified_name(v.type)] then
        local chain = td.try(td.await_chain, td.value(v.type, v.addr))
        local t = chain and chain[1] and td.type_by_id(chain[1].type)
        local a = t and td.try_read(v.addr)
        if a and a ~= 0 then add_at(v, t, a) end
      end
    elseif v.addr and tn:find("^Pin<&mut ") then
      local t, a = through_pin(v)
      local q = t and td.qualified_name(t)
      if q and (block_on_types[q] or block_on_types["core::pin::Pin<&mut " .. q .. ">"]) then add_at(v, t, a) end
    end
  end
  -- The pinned copy pin! makes in a block_on frame: located, or found by
  -- scanning the frame. When rustc keeps no variable for it at all (a
  -- hyper Server awaited in block_on on tokio 1.24), any variable of the
  -- future's type in a block_on frame (the moved-from argument) leads to
  -- the frame to scan: the second pass.
  local any_pin, lowest_sp = false, math.maxinteger
  for _, v in ipairs(locals) do
    if v.sp and v.sp < lowest_sp then lowest_sp = v.sp end
    if (v.decl_file or ""):find("pin%.rs$") and (v["function"] or ""):find("^block_on") then any_pin = true end
  end
  for pass = 1, any_pin and 1 or 2 do for _, v in ipairs(locals) do
    local id = td.id(v.type)
    local key = v.frame .. ":" .. id
    if pass == 2 and #out > 0 then break end
    if not seen[key] and (pass == 2 or (v.decl_file or ""):find("pin%.rs$")) and (v["function"] or ""):find("^block_on")
       and (td.type_name(v.type) or ""):find("^{async_") then
      local found, count, candidates = nil, 0, {}
      if v.addr and pass == 1 then
        -- Located (current_thread's pin! often is): it is the pinned future.
        local chain, leaf = suspended(v.type, v.addr)
        if chain then
          seen[key] = true
          count, found = 1, { frame = v.frame, address = v.addr, type = v.type, chain = chain, leaf = leaf }
        end
      elseif v.sp and v.cfa and v.cfa - v.sp <= MAX_PIN_SCAN and td.size(v.type) > 0 then
        seen[key] = true
        for a = v.sp + (-v.sp) % 8, v.cfa - td.size(v.type), 8 do
          local chain, leaf = suspended(v.type, a)
          local verdict = nil   -- no copy, or none with captured variables: no say
          for _, copy in ipairs(chain and copies[type_key(v.type)] or EMPTY) do
            local same = upvars_equal(v.type, copy, a)
            if same then verdict = true; break end
            if same == false then verdict = false end
          end
          if chain and verdict ~= false then
            count = count + 1
            found = { frame = v.frame, address = a, type = v.type, chain = chain, leaf = leaf }
            candidates[#candidates + 1] = found
          end
        end
        if count > 1 then
          -- The pinned future is live, and so are the frame's located
          -- variables (block_on's waker and Context): bytes that overlap
          -- one of them are something else that decodes alike.
          local size, kept = td.size(v.type), {}
          for _, c in ipairs(candidates) do
            local clash = false
            for _, o in ipairs(locals) do
              if o.frame == v.frame and o.addr and o.addr >= v.sp and o.addr < v.cfa and td.id(o.type) ~= id then
                local osize = td.size(o.type) or 0
                if osize > 0 and o.addr < c.address + size and c.address < o.addr + osize then clash = true; break end
              end
            end
            if not clash then kept[#kept + 1] = c end
          end
          if #kept >= 1 then candidates, count, found = kept, #kept, kept[1] end
        end
        if count > 1 then
          -- Stack bytes that happen to decode as a suspended state too (a
          -- body with one suspend point and no captures: nothing else tells
          -- them apart). block_on keeps a pointer to the pinned future to
          -- poll it again (its Pin<&mut F>), in this frame or saved by a
          -- callee below it: the one candidate some stack word points to.
          local pointed = {}
          for _, c in ipairs(candidates) do pointed[c.address] = c end
          local hits, hit = 0, nil
          -- (from a little below the innermost frame with variables: the
          -- system call's frames keep none, and may have saved it)
          for w = math.max(lowest_sp - 4096, v.cfa - MAX_PIN_SCAN), v.cfa - 8, 8 do
            local c = pointed[td.try_read(w) or 0]
            if c and c ~= hit then hits, hit = hits + 1, c; pointed[c.address] = nil end
          end
          if hits == 1 then
            count, found = 1, hit
          else
            -- No pointer to it in memory (kept in a register): the one whose
            -- references and NonNulls all lead to readable memory.
            local real = {}
            for _, c in ipairs(candidates) do
              if plausible_state(c.type, c.address) then real[#real + 1] = c end
            end
            if #real == 1 then count, found = 1, real[1] end
          end
        end
      end
      if count == 1 and not seen[found.address] then
        seen[found.address] = true
        found.running = polled_under(v)
        out[#out + 1] = found
      end
    end
  end end
  -- A boxed future (block_on(Box::pin(f)), and tokio >= 1.39 boxes futures
  -- over 16 KiB itself) does not move when its box does: any located copy of
  -- the box (a caller's `future` argument) leads to it.
  for _, v in ipairs(locals) do
    if v.addr and (v["function"] or ""):find("^block_on")
       and (td.type_name(v.type) or ""):find("^Pin<alloc::boxed::Box<") then
      local t, a = through_pin(v)
      if t then add_at(v, t, a) end
    end
  end
  return out
end

-- A LocalSet's block_on runs `run_until`, which awaits a RunUntil: the
-- future it runs (whose chain continues the block_on future's) and the
-- LocalSet, whose tasks are walked here if nothing else led to them (an idle
-- LocalSet: no thread polls it, so task::local::CURRENT is unset). This walk
-- happens after the stop: the LocalSet's thread is parked in block_on.
-- late: the walk's (stop.late).
local function follow_run_until(p, tid, late)
  -- run_until's own state awaits the RunUntil (td.await_chain has gone on
  -- through it into the future it runs: a wrapper holding an async body).
  local first = p.chain[1]
  local t = first and first.awaiting and td.type_by_id(first.awaiting)
  if not t or not (td.type_name(t) or ""):find("^RunUntil<") then return end
  local ru = td.try(function() return td.variant(td.value(p.type, p.address)).__awaitee end)
  if not ru then return end
  local owned, key = td.try(function()
    local ctx = td.deref(td.deref(ru.local_set).context.ptr.pointer).value
    local shared = arc_data(ctx.shared)
    return td.has(shared, "local_state") and shared.local_state.owned or ctx.owned, td.addr(shared)
  end)
  if owned and late and not late.by_handle[key] then
    local rt = late.new_runtime("local_set", owned, key)
    rt.workers[1] = tid
    local walked, why = pcall(late.walk_runtime, rt)
    if not walked then rt.error, rt.lists = tostring(why), {} end
    rt.joined, rt.owned = nil, nil
  end
end

-- diagnose only, after finish(): what each thread's stack frames hold
-- (guards, permits, channel ends in local variables, found through DWARF
-- locations and the registers the unwinder recovered; taskdbg reads them from
-- the stacks copied during the stop). { [tid] = { {resource=, name=,
-- function=, frame=}, ... } }, one entry per resource key.
function B.thread_holds(stop)
  local result, now_ms = stop.result, stop.now_ms
  local out = {}
  -- What block_on's own future holds, in its suspended states (from finish).
  local seen_by = {}
  for _, rt in ipairs(result and result.runtimes or EMPTY) do
    for _, b in ipairs(rt.block_on or EMPTY) do
      seen_by[b.thread] = seen_by[b.thread] or {}
      for _, h in ipairs(b.holds or EMPTY) do
        local r = h.resource
        if r and r.key and r.kind and not seen_by[b.thread][r.key] then
          seen_by[b.thread][r.key] = true
          out[b.thread] = out[b.thread] or setmetatable({}, { __array = true })
          local aw = b.backtrace[h.level + 1]
          table.insert(out[b.thread], { resource = r, name = h.name, ["function"] = aw and aw.name,
                                        block_on = true, at = aw and aw.file ~= td.null
                                          and string.format("%s:%s", aw.file, tostring(aw.line)) or nil })
        end
      end
    end
  end
  for _, t in ipairs(td.threads()) do
    local seen = seen_by[t.tid] or {}
    for _, v in ipairs(frame_locals(stop, t.tid)) do
      local ok, res = false, nil
      if v.addr then ok, res = pcall(resolve, td.id(v.type), v.addr) end   -- C types, pointers: no name
      if ok and res and res.key and res.kind and not seen[res.key] then
        seen[res.key] = true
        out[t.tid] = out[t.tid] or setmetatable({}, { __array = true })
        table.insert(out[t.tid], { resource = resource_record(res, nil, now_ms), name = v.name,
                                   ["function"] = v["function"], frame = v.frame })
      end
    end
  end
  return out
end

-- diagnose only, after finish(): the blocking pool each thread runs in (a
-- pool thread's blocking::pool::Inner::run, whose `self` is the pool) or
-- shuts down (BlockingPool::shutdown, whose `shared` guard locks the pool's
-- Inner.shared; or the Runtime being dropped, whose blocking_pool leads to
-- it). { [tid] = { runs = Inner address, shuts = Inner address } }: a
-- shutdown waits only for the threads of its own pool.
local function pointer_to(v, pattern, depth)
  local tn = td.type_name(v) or ""
  if tn:find("^&") or tn:find("^%*") then
    local pointee = td.pointee(td.type_of(v))
    if (td.type_name(pointee) or ""):find(pattern) then return td.pointer(v), pointee end
    return nil
  end
  if (depth or 0) >= 4 then return nil end
  for _, f in ipairs(td.fields(v)) do
    if f.size > 0 and f.type ~= "<variants>" then
      local a, t = pointer_to(v[f.name], pattern, (depth or 0) + 1)
      if a then return a, t end
    end
  end
  return nil
end

function B.blocking_pools(stop)
  local out = {}
  local inner_t = td.find_type("tokio::runtime::blocking::pool::Inner")
  if not inner_t then return out end
  local shared_off = td.offset(inner_t, "shared")
  for _, t in ipairs(td.threads()) do
    local rec = {}
    for _, v in ipairs(frame_locals(stop, t.tid)) do
      local fn, tn = v["function"] or "", td.type_name(v.type) or ""
      if v.addr then
        local ok, kind, addr = pcall(function()
          local val = td.value(v.type, v.addr)
          if fn == "run" and v.name == "self" and tn == "&tokio::runtime::blocking::pool::Inner" then
            return "runs", td.pointer(val)
          elseif fn == "shutdown" and v.name == "shared"
                 and tn:find("^MutexGuard<tokio::runtime::blocking::pool::Shared>") then
            local m = pointer_to(val, "^Mutex<")
            return "shuts", m and m - shared_off
          elseif (tn == "Runtime" or tn == "LocalRuntime") and fn:find("^drop") then
            return "shuts", td.addr(arc_data(val.blocking_pool.spawner.inner))
          end
        end)
        if ok and kind and addr and addr ~= 0 then rec[kind] = rec[kind] or addr end
      end
    end
    out[t.tid] = next(rec) and rec or nil
  end
  return out
end

B.pinned_futures, B.follow_run_until = pinned_futures, follow_run_until

return B
