-- taskdbg runtime plugin for tokio.
--
-- Finds every runtime through each thread's tokio CONTEXT thread-local, walks
-- each runtime's list of owned tasks, and decodes every task: id, state bits,
-- future type, the thread polling it, and the chain of .awaits it is suspended
-- at. It probes field names, never versions; the facts it relies on are in
-- docs/tokio-layout-notes.md. Everything it reads is bounded.

local M = { name = "tokio" }

-- What taskdbg's C side and the detectors need to know of tokio, declared
-- (docs/plugins.md, "What a plugin declares").
-- Frames, by function-name beginning: the thread roles (worker loop,
-- blocking pool, a runtime driven by block_on), a task's poll and what runs
-- it (an async task, or a blocking closure: also how tokio runs a worker),
-- where a runtime shuts down, and where it parks in its driver.
M.frames = {
  worker = { "tokio::runtime::scheduler::multi_thread::worker::run", "tokio::runtime::thread_pool::worker::run" },
  blocking = { "tokio::runtime::blocking::pool::Inner::run" },
  drives = { "tokio::runtime::scheduler::current_thread::CoreGuard::block_on" },
  -- raw::poll is a tail jump into Harness::poll: either may be innermost.
  poll = { "tokio::runtime::task::harness::Harness<T,S>::poll", "tokio::runtime::task::raw::RawTask::poll",
           "tokio::runtime::task::raw::poll" },
  poll_async = { "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
                 "tokio::runtime::task::LocalNotified", "tokio::runtime::scheduler::current_thread::",
                 "tokio::task::local::" },
  poll_blocking = { "tokio::runtime::blocking::pool::Task::run" },
  -- A blocking-pool task's future (spawn_blocking): its poll is no async code.
  blocking_task = { "tokio::runtime::blocking::task::BlockingTask" },
  -- Shutting a runtime (its blocking pool) down, and waiting for that.
  shutdown = { "tokio::runtime::blocking::pool::BlockingPool::shutdown",
               "tokio::runtime::blocking::shutdown::Receiver::wait",
               "tokio::runtime::runtime::Runtime::shutdown_timeout",
               "tokio::runtime::scheduler::multi_thread::worker::Shared::close" },
  -- Parked in the driver, where tokio fires timers and reads socket readiness.
  driver_park = { "tokio::runtime::time::Driver::park", "tokio::runtime::io::driver::Driver::turn",
                  "tokio::runtime::driver::Driver::park",
                  "tokio::runtime::scheduler::multi_thread::park::Inner::park_driver",
                  "tokio::time::driver::Driver", "tokio::io::driver::Driver::turn" },
}
-- The classes of the resources tasks wait on and hold (their `kind`, as
-- shown): what the detectors reason with.
M.resources = {
  ["tokio::sync::Mutex"] = "mutex", ["tokio::sync::RwLock"] = "rwlock",
  ["tokio::sync::Semaphore"] = "semaphore", ["tokio::sync::batch_semaphore::Semaphore"] = "semaphore",
  ["tokio::sync::mpsc"] = "channel", ["tokio::sync::oneshot"] = "oneshot",
  ["tokio::sync::watch"] = "watch", ["tokio::sync::broadcast"] = "broadcast",
  ["tokio::sync::Notify"] = "notify", ["tokio::task::JoinHandle"] = "join",
  ["tokio::task::JoinSet"] = "join_set", ["tokio::time::Sleep"] = "timer",
  ["tokio::process::Child"] = "process", ["tokio::signal::unix::Signal"] = "signal",
  socket = "socket", ["std::sync::Mutex"] = "blocking_mutex", pthread_mutex_t = "blocking_mutex",
}
-- The runtime's own way to do what blocks a thread, for the detectors' advice.
M.advice = {
  sleep = "tokio::time::sleep(..).await", fs = "tokio::fs", mutex = "tokio::sync::Mutex",
  channel = "tokio::sync::mpsc", net = "tokio::net", process = "tokio::process",
  spawn_blocking = "tokio::task::spawn_blocking", yield_now = "tokio::task::yield_now().await",
  timeout = "tokio::time::timeout",
}

-- Whether tokio is in the program: its thread-local CONTEXT or its task
-- vtable in the debug info (DWARF only: called before the stop).
function M.detect()
  return td.find_tls("tokio::runtime::context::CONTEXT") or td.find_type("tokio::runtime::task::raw::Vtable") ~= nil
end

local RUNNING, COMPLETE, NOTIFIED, JOIN_INTEREST, CANCELLED = 0x01, 0x02, 0x04, 0x08, 0x20
local MAX_TASKS = 10000000       -- per runtime: a longer list is corrupt or cyclic
local MAX_AWAIT_DEPTH = 64
local SPAN_FIELDS_MAX = 1000     -- tasks whose span fields are read, a snapshot (see span_fields)
local TIMEOUTS_MAX = 1000        -- tasks whose timeout's deadline is read, a snapshot (see timeout_of)

-- The fields of v that take space (PhantomData and () take none), by name.
local function fieldset(v)
  local set, n, only = {}, 0, nil
  for _, f in ipairs(td.fields(v)) do
    set[f.name] = true
    if f.size ~= 0 then n = n + 1; only = f.name end
  end
  return set, n, only
end

-- Peels std and tokio wrappers (Cell, UnsafeCell, RefCell, MaybeUninit,
-- ManuallyDrop, mutexes, newtypes) down to the value they hold. The way down
-- is worked out once per type (td.fields builds a table: not in a hot path).
local peel_steps = {}
local function peel(v)
  local id = td.id(v)
  local steps = peel_steps[id]
  if not steps then
    steps = {}
    local w = v
    for _ = 1, 32 do
      local f, n, only = fieldset(w)
      local step
      if f.data and (f.raw or f.poison) then step = "data"
      elseif f.value and f.borrow then step = "value"
      elseif n == 1 and (only == "value" or only:find("^__%d+$")) then step = only end
      if not step then break end
      steps[#steps + 1] = step
      w = w[step]
    end
    peel_steps[id] = steps
  end
  for i = 1, #steps do v = v[steps[i]] end
  return v
end

local function some(option)
  local payload, name = td.variant(option)
  if name == "Some" then return payload.__0 end
  return nil
end

local function type_path(v) return td.qualified_name(v) or td.type_name(v) or "?" end

-- Arc<T> -> T, NonNull<T> -> *T
local function arc_data(arc) return td.deref(arc.ptr.pointer).data end

-- The CONTEXT of a thread, if it is initialised and alive.
local function context(tid)
  local storage = td.tls("tokio::runtime::context::CONTEXT", tid)
  if not storage then return nil end
  local ok, ctx = pcall(function()
    local _, state = td.variant(peel(storage.state))
    if state ~= "Alive" then return nil end
    return peel(td.has(storage, "value") and storage.value or storage.val)
  end)
  return ok and ctx or nil
end

-- The scheduler handle a thread's context holds: Handle value, flavor.
local function scheduler_handle(ctx)
  local cell
  if td.has(ctx, "handle") then cell = ctx.handle
  elseif td.has(ctx, "current") then cell = ctx.current.handle
  else return nil end
  local handle = some(peel(cell))
  if not handle then return nil end
  local payload, variant = td.variant(handle)
  -- MultiThreadAlt: tokio_unstable's alternative multi-thread scheduler (1.30 to 1.4x).
  local flavor = ({ MultiThread = "multi_thread", MultiThreadAlt = "multi_thread",
                    CurrentThread = "current_thread" })[variant]
  if not flavor then return nil end
  return arc_data(payload.__0), flavor
end

-- The owned list of the LocalSet a thread is polling now, and its identity.
local function local_set_owned(tid)
  local storage = td.tls("tokio::task::local::CURRENT", tid)
  if not storage then return nil end
  local _, state = td.variant(peel(storage.state))
  if state ~= "Alive" then return nil end
  local data = peel(td.has(storage, "val") and storage.val or storage.value)
  local rc = some(peel(data.ctx.inner))
  if not rc then return nil end
  local ctx = td.deref(rc.ptr.pointer).value
  local shared = arc_data(ctx.shared)
  local owned = td.has(shared, "local_state") and shared.local_state.owned or ctx.owned
  return owned, td.addr(shared)
end

local function current_task_id(ctx)
  if not td.has(ctx, "current_task_id") then return nil end
  local id = some(peel(ctx.current_task_id))
  if not id then return nil end
  return td.uint(peel(id))
end

-- Is this thread running the scheduler loop (a worker, or current_thread's block_on)?
local function in_scheduler_loop(tid, flavor)
  local path = flavor == "multi_thread"
    and "tokio::runtime::scheduler::multi_thread::worker::CURRENT"
    or "tokio::runtime::scheduler::current_thread::CURRENT"
  local storage = td.tls(path, tid)
  if not storage then
    -- tokio >= 1.29: no such thread-local; CONTEXT.scheduler (a Scoped
    -- pointer to the scheduler's Context) is set while the loop runs.
    -- Read from tokio's source; untested here (only 1.24 is packaged).
    local ctx = context(tid)
    local ok, p = pcall(function() return td.uint(peel(ctx.scheduler.inner)) end)
    return ctx ~= nil and ok and p ~= 0
  end
  local ok, p = pcall(function()
    return td.uint(peel(td.has(storage, "val") and storage.val or storage.value))
  end)
  return ok and p ~= 0
end

-- The LinkedList { head, tail } inside a list wrapper (tokio >= 1.29 counts
-- its owned tasks: CountedLinkedList { list, count }).
local function linked_list(v)
  for _ = 1, 4 do
    v = peel(v)
    if td.has(v, "head") then return v end
    if not td.has(v, "list") then break end
    v = v.list
  end
  error(string.format("no linked list (a `head` field) in %s", type_path(v)), 0)
end

-- The heads of an owned-task list (one list, or the shards of a ShardedList).
local function owned_heads(owned)
  local heads = {}
  if td.has(owned, "inner") then
    heads[1] = linked_list(peel(owned.inner).list).head
  elseif td.has(owned, "list") and td.has(owned.list, "lists") then
    local sharded = owned.list
    local lists = sharded.lists
    local n = td.uint(lists.length)
    local elem = td.pointee(td.type_of(lists.data_ptr))
    local base = td.pointer(lists.data_ptr)
    for i = 0, math.min(n, 65536) - 1 do
      heads[#heads + 1] = linked_list(td.value(elem, base + i * td.size(elem))).head
    end
  else
    error(string.format("%s has neither `inner` (one list) nor `list.lists` (shards)", type_path(owned)), 0)
  end
  return heads, td.uint(peel(owned.id))
end

-- The first task header of each list of an owned-task set (empty lists skipped).
local function first_tasks(owned)
  local heads, owner = owned_heads(owned)
  local firsts = {}
  for _, head in ipairs(heads) do
    local first = some(head)
    if first then firsts[#firsts + 1] = td.pointer(first.pointer) end
  end
  return firsts, owner
end

local strip_generics = td.strip_generics   -- "a::B<c::D>::f" -> "a::B::f"

-- The name a person would call a future (docs/cli-contract.md).
local function future_name(full)
  local name = strip_generics(full)
  return (name:gsub("::{async_fn_env#%d+}$", ""))
end


local EMPTY = {}
-- Scheduler Context types (their Core counts ticks), resolved before a stop.
-- Each scheduler's scoped thread-local and the Context type it points to.
-- tokio >= 1.29 keeps the scheduler's Context in CONTEXT.scheduler instead:
-- { type = tokio::runtime::scheduler::Context, or false }.
local SCHEDULER_CONTEXT = {}
local TICK_ROOTS = {
  { tls = "tokio::runtime::scheduler::multi_thread::worker::CURRENT",
    context = "tokio::runtime::scheduler::multi_thread::worker::Context" },
  { tls = "tokio::runtime::scheduler::current_thread::CURRENT",
    context = "tokio::runtime::scheduler::current_thread::Context" },
}
local resource_record
local now_ms   -- the target's monotonic clock at the stop (live only)

-- Layout facts resolved once per program.
local layout
local function resolve_layout()
  if layout then return layout end
  local vt = td.find_type("tokio::runtime::task::raw::Vtable")
  local trailer = td.find_type("tokio::runtime::task::core::Trailer")
  local header = td.find_type("tokio::runtime::task::core::Header")
  assert(vt and trailer and header, "tokio's task types are not in the debug info")
  local owned_off, pointers = td.offset(trailer, "owned")
  local inner_off, inner = 0, pointers
  if not pcall(function() inner_off, inner = td.offset(pointers, "next") end) then
    -- Pointers { inner: UnsafeCell<PointersInner { prev, next }> }
    inner_off, inner = td.offset(pointers, "inner")
    local off2, t2 = td.offset(inner, "value")
    inner_off, inner = inner_off + off2, t2
  end
  local next_off = td.offset(inner, "next")
  layout = {
    state = td.offset(header, "state"),
    vtable = td.offset(header, "vtable"),
    owner_id = td.offset(header, "owner_id"),
    poll = td.offset(vt, "poll"),
    trailer_offset = td.offset(vt, "trailer_offset"),
    id_offset = td.offset(vt, "id_offset"),
    next = owned_off + inner_off + next_off,
    cells = nil,   -- Cell<T,S> types by the id of T, found on first use
  }
  -- td.walk_list relations: the next task (through its vtable's trailer
  -- offset) and its id (through the vtable's id offset).
  layout.next_rel = { via = layout.vtable, via_field = layout.trailer_offset, at = layout.next }
  layout.id_rel = { via = layout.vtable, via_field = layout.id_offset }
  return layout
end

local function cell_types()
  if layout.cells then return layout.cells end
  -- By future type, then by scheduler: a future spawned through a Handle
  -- has a Cell for each scheduler flavor in the binary, and only the vtable's
  -- poll<T, S> tells which one a task is.
  local cells = {}
  td.each_type("tokio::runtime::task::core", "Cell<", function(t)
    local T, S = td.template(t, "T"), td.template(t, "S")
    if T then
      local by_s = cells[td.id(T)] or {}
      cells[td.id(T)] = by_s
      by_s[S and type_path(S) or "?"] = t
      by_s.any = by_s.any or t
    end
    return false
  end)
  layout.cells = cells
  return cells
end

-- Every instance of raw::poll<T, S> by address: a vtable's poll pointer names
-- its task's future type T and scheduler S.
local function poll_functions()
  if layout.polls then return layout.polls end
  local polls = {}
  td.each_function("tokio::runtime::task::raw", "poll", function(f)
    if f.T then polls[f.address] = f end
    return false
  end)
  layout.polls = polls
  return polls
end

-- What a task's vtable tells: its future's Cell type, once per vtable.
local vtables = {}
local function vtable_info(addr)
  local info = vtables[addr]
  if info then return info end
  local poll = td.read(addr + layout.poll)
  local fn = poll_functions()[poll] or td.function_at(poll)
  info = {
    trailer_offset = td.read(addr + layout.trailer_offset),
    id_offset = td.read(addr + layout.id_offset),
  }
  if fn and fn.T then
    local by_s = cell_types()[td.id(fn.T)]
    info.cell = by_s and (fn.S and by_s[type_path(fn.S)] or by_s.any)
    info.future = fn.T
    if info.cell then
      -- Cell { header, core: Core { scheduler, task_id, stage: CoreStage { stage } } }
      local core_off, core_t = td.offset(info.cell, "core")
      local stage_off, stage_t = td.offset(core_t, "stage")
      if pcall(td.offset, stage_t, "stage") then
        local inner_off, inner_t = td.offset(stage_t, "stage")
        stage_off, stage_t = stage_off + inner_off, inner_t
      end
      local v = peel(td.value(stage_t, 0))   -- UnsafeCell<Stage<T>> -> Stage<T>
      info.stage_offset = core_off + stage_off + td.addr(v)
      info.stage_type = td.type_of(v)
    end
    info.scheduler = fn.S
  end
  vtables[addr] = info
  return info
end

local function state_name(bits)
  if bits & COMPLETE ~= 0 then return "complete" end
  if bits & CANCELLED ~= 0 then return "cancelled" end
  if bits & RUNNING ~= 0 then return "running" end
  if bits & NOTIFIED ~= 0 then return "notified" end
  return "idle"
end

-- The tasks of one owned list, from its first header. While the target is
-- stopped only columns are kept: the list is walked in C (td.walk_list), and
-- each future's await chain decoded in C (td.await_chain_at), one call a task.
local function walk_tasks(first, out)
  local cols, why = td.walk_list{
    first = first,
    next = layout.next_rel,
    fields = {
      state = { at = layout.state },
      vtable = { at = layout.vtable },
      id = layout.id_rel,
    },
    max = MAX_TASKS,
  }
  -- Every task's await chain in one C call; Lua is asked once per future type.
  local chains, reasons, leaves, tagged, marked = td.await_chains{
    nodes = cols.node, vtables = cols.vtable, states = cols.state, skip_mask = COMPLETE,
    tagged_max = SPAN_FIELDS_MAX, marked_max = TIMEOUTS_MAX,
    stage = function(vt)
      local info = vtable_info(vt)
      return info.stage_type, info.stage_offset
    end,
  }
  local errors = {}
  for i, why in pairs(reasons) do
    if why ~= "Finished" and why ~= "Consumed" then errors[i] = why end
  end
  out[#out + 1] = { cols = cols, chains = chains, errors = errors, leaves = leaves, tagged = tagged,
                    marked = marked }
  return why
end

-- Chains that await these are built per task, with each level's address:
-- a JoinHandle leads to the task it joins, and an I/O readiness future
-- (accept(), readable()) to its socket only through the async fn awaiting it.
td.per_task_awaitee("JoinHandle<")
td.per_task_awaitee("Readiness")   -- (no type parameters: DWARF names it so)
td.per_task_awaitee("Next<")       -- StreamExt::next() of a FuturesUnordered: its futures
td.per_task_awaitee("JoinAll<")    -- futures-util's join_all: its futures

-- tracing's Instrumented tags the level awaiting it (or a task spawned
-- instrumented) with its span's static metadata (kept even when no subscriber
-- enables the span): the span's name is read from it after the stop.
td.tag_awaitee("tracing::instrument::Instrumented<", { "span", "meta" })
-- tokio's Timeout awaited by an async fn (`timeout(d, f).await`): the chain
-- goes on into f, and each task says where its Timeout is, for its deadline
-- (the `delay` Sleep), read while stopped for at most TIMEOUTS_MAX tasks.
td.mark_awaitee("Timeout<")
-- A span's fields, where tracing-subscriber's registry keeps them formatted
-- (its fmt layer stores FormattedFields in the span's extensions): the
-- span's id (Span.inner: Some { id, subscriber }) is a key into the
-- registry's sharded_slab Pool (DefaultConfig: 38 bits of address in its
-- shard, then 13 of shard; a page of the shard holds addresses from its
-- prev_sz on, pages doubling from 32 slots); the slot's DataInner has the
-- extensions, a HashMap from TypeId to Box<dyn Any>, whose boxes are told
-- apart by the type their vtable drops. Read while stopped, for at most
-- SPAN_FIELDS_MAX tasks a snapshot.
local REGISTRY = "tracing_subscriber::registry::sharded::Registry"
local span_fields_state = { n = 0 }

-- Element i of a Box<[T]> / &[T] value.
local function slice_at(v, i)
  local len = td.uint(v.length)
  if i < 0 or i >= len then return nil end
  local et = td.pointee(td.type_of(v.data_ptr))
  return td.value(et, td.pointer(v.data_ptr) + i * td.size(et))
end

-- The bytes of a String value: its Vec's buffer pointer and len.
local function string_text(v, max)
  local function ptr_of(x, depth)
    for _, f in ipairs(td.fields(x)) do
      if (f.type or ""):find("^%*") then return td.pointer(x[f.name]) end
      if depth < 6 and f.type ~= "*" and (f.size or 0) > 0 then
        local ok, p = pcall(ptr_of, x[f.name], depth + 1)
        if ok and p then return p end
      end
    end
    return nil
  end
  local vec = v.vec
  local p, n = ptr_of(vec, 0), td.uint(vec.len)
  if not p or n > max then return nil end
  return td.read_bytes(p, n)
end

-- The concrete value behind a fat pointer's data and vtable: the type its
-- vtable drops (drop_in_place<T>).
local function dyn_value(data, vtable)
  local drop = td.try_read(vtable)
  local fn = drop and drop ~= 0 and td.function_at(drop)
  return fn and fn.T and td.value(fn.T, data) or nil
end

local function span_fields(span_addr)
  local st = span_fields_state
  if st.n >= SPAN_FIELDS_MAX then return nil end
  st.n = st.n + 1
  st.span_t = st.span_t or td.find_type("tracing::span::Span")
  local inner = some(td.value(st.span_t, span_addr).inner)
  if not inner then return nil end
  local id = td.read(td.addr(inner.id))
  -- The subscriber: Dispatch { subscriber: Arc<dyn Subscriber> }.
  -- Arc<dyn ..>: a fat pointer (data, vtable) to the ArcInner.
  local fat = td.addr(inner.subscriber.subscriber)
  local p, vt = td.read(fat), td.read(fat + 8)
  -- Whether this subscriber's type has a registry: once per vtable.
  st.no_registry = st.no_registry or {}
  if st.no_registry[vt] then return nil end
  local align = td.read(vt + 16)
  local sub = dyn_value(p + ((16 + align - 1) // align) * align, vt)
  local reg = sub and td.find_inside(sub, REGISTRY)
  if not reg then st.no_registry[vt] = true; return nil end
  local idx = id - 1
  local addr, tid = idx & ((1 << 38) - 1), (idx >> 38) & ((1 << 13) - 1)
  local shard_ptr = slice_at(reg.spans.shards.shards, tid)
  local sp = shard_ptr and td.read(td.addr(shard_ptr))
  if not sp or sp == 0 then return nil end
  -- Ptr(AtomicPtr<Track<Shard>>): Track { value: Shard } in release builds.
  local track = td.deref(peel(shard_ptr).p.value)
  local shard = td.has(track, "value") and track.value or track
  local shifted = (addr + 32) >> 6
  local page_i = 0
  while shifted > 0 do page_i, shifted = page_i + 1, shifted >> 1 end
  local page = slice_at(shard.shared, page_i)
  local slab = page and some(peel(page.slab))
  local slot = slab and slice_at(slab, addr - td.uint(page.prev_sz))
  if not slot then return nil end
  local data = peel(slot.item)
  local map = peel(data.extensions).map
  -- hashbrown: the entries lie below ctrl, entry b at ctrl - (b + 1) * size.
  local raw = map.base.table
  local tinner = raw.table
  local mask, ctrl = td.uint(tinner.bucket_mask), td.read(td.addr(tinner.ctrl))
  local et = td.template(td.type_of(raw), "T")
  local size = td.size(et)
  for b = 0, math.min(mask, 255) do
    local c = td.try_read(ctrl + b, 1)
    if c and c < 0x80 then
      local entry = td.value(et, ctrl - (b + 1) * size)
      local box = td.addr(entry.__1)
      local any = dyn_value(td.read(box), td.read(box + 8))
      if any and (td.type_name(any) or ""):find("^FormattedFields<") then
        local text = string_text(any.fields, 1024)
        -- Without the terminal colours the fmt layer may have formatted them with.
        text = text and text:gsub("\27%[[%d;]*m", "")
        if text and text ~= "" then return text end
      end
    end
  end
  return nil
end

local span_names = {}
local function span_name(meta)
  local name = span_names[meta]
  if name == nil then
    name = false
    local mt = td.find_type("tracing_core::metadata::Metadata")
    local ok, off = pcall(td.offset, mt, "name")
    if mt and ok then
      local p, n = td.try_read(meta + off), td.try_read(meta + off + 8)
      name = p and n and n > 0 and n < 256 and td.read_bytes(p, n) or false
    end
    span_names[meta] = name
  end
  return name or nil
end

-- A JoinHandle<T> holds a RawTask: the header of the task it joins.
local join_handles = {}
local function is_join_handle(type_id)
  local yes = join_handles[type_id]
  if yes == nil then
    local name = td.type_name(td.type_by_id(type_id)) or ""
    yes = name:find("^JoinHandle<") ~= nil
    join_handles[type_id] = yes
  end
  return yes
end

-- The header of the task each JoinHandle (awaited, or held in a suspended
-- state) points at, read while stopped.
local function follow_join_handles(lists)
  local targets = {}
  for _, list in ipairs(lists) do
    for _, chain in pairs(list.chains) do
      -- A shared chain has no JoinHandle and holds nothing, by construction.
      if not chain.shared then for _, level in ipairs(chain) do
        if level.awaiting and is_join_handle(level.awaiting) then
          local header = td.try_read(level.awaiting_addr)
          if header and header ~= 0 then
            level.awaiting_header = header
            targets[header] = true
          end
        end
        for _, held in ipairs(level.holds or {}) do
          if is_join_handle(held.type) then
            local header = td.try_read(held.addr)
            if header and header ~= 0 then
              held.header = header
              targets[header] = true
            end
          end
        end
      end end
    end
  end
  return targets
end


-- What a task waits on and what it holds, as resources: a key shared by the
-- waiters and the holders of one lock or channel ("sem:0x..", "chan:0x..",
-- "oneshot:0x..", "futex:0x.."), read while the target is stopped. Per type,
-- once: a builder turns the type's layout into paths of offsets and pointer
-- reads (td.follow), so each instance costs a few reads and no values. nil
-- for types that are no resource (a Sleep, a custom future).
local ARC = { "ptr", "pointer", "*", "data" }

-- Steps for td.follow along a path of field names, "*" (through a pointer)
-- and "?" (into Option<T>'s payload: pointers use the null niche); also the
-- type reached.
local function recipe(t, ...)
  local steps, acc = {}, 0
  for _, path in ipairs({ ... }) do
    for _, step in ipairs(path) do
      if step == "*" then
        steps[#steps + 1] = acc
        steps[#steps + 1] = -1
        acc = 0
        t = assert(td.pointee(t), "not a pointer")
      elseif step == "?" then
        t = assert(td.template(t, "T"), "not an Option")
      else
        local off, ft = td.offset(t, step)
        acc, t = acc + off, ft
      end
    end
  end
  steps[#steps + 1] = acc
  return steps, t
end

local function has_field(t, name) return (pcall(td.offset, t, name)) end

local hex, ptr = td.hex, td.ptr
local function fmt(prefix, a) return hex(a, prefix .. ":") end

-- A channel (Chan) of type ct reached by steps: its key, live senders and
-- capacity semaphore.
local function chan_builder(steps, ct, side)
  local txc = has_field(ct, "tx_count") and td.offset(ct, "tx_count") or nil
  local cap = nil
  if has_field(ct, "semaphore") then
    local o1, st = td.offset(ct, "semaphore")
    if has_field(st, "semaphore") then cap = o1 + td.offset(st, "semaphore") end
  end
  return function(a)
    local chan = td.follow(a, steps)
    if not chan then return nil end
    return { key = fmt("chan", chan), address = chan, kind = "tokio::sync::mpsc", side = side,
             senders = txc and td.try_read(chan + txc) or nil,
             capacity_key = cap and fmt("sem", chan + cap) or nil }
  end
end

-- Resolvers that are a path of offsets and pointer reads and nothing else
-- (BULK[fn] = { steps =, make = function(reached) -> record }): while the
-- target is stopped, follow_resources follows every task's awaited future of
-- one such type in one C call (td.follow_many), and the records are made in
-- finish(). 100,000 tasks awaiting oneshots cost 130 ms of stop otherwise.
local BULK = setmetatable({}, { __mode = "k" })
local function bulk_builder(steps, make)
  local fn = function(a)
    local x = td.follow(a, steps)
    return x and make(x) or nil
  end
  BULK[fn] = { steps = steps, make = make }
  return fn
end

-- A oneshot end (Sender or Receiver, type t): keyed by its shared Inner.
local function oneshot_builder(t, side)
  -- Made as tasks JSON shows it (see resource_record): one table a task.
  return bulk_builder(recipe(t, { "inner", "?" }, ARC), function(inner)
    return { key = hex(inner, "oneshot:"), address = ptr(inner), kind = "tokio::sync::oneshot", mode = side }
  end)
end

local function sem_builder(steps, kind, sem_off)
  return bulk_builder(steps, function(x)
    return { key = fmt("sem", x + (sem_off or 0)), kind = kind, address = x }
  end)
end

-- The offsets of seconds and nanoseconds of the timespec inside a
-- tokio/std Instant (tokio Instant { std } -> std Instant(sys Instant { t:
-- Timespec { tv_sec, tv_nsec: Nanoseconds(u32) } })), found by field names.
local function timespec_offsets(t)
  local off = 0
  for _ = 1, 6 do
    if has_field(t, "tv_sec") then
      local ns_off, ns_t = td.offset(t, "tv_nsec")
      if has_field(ns_t, "__0") then ns_off = ns_off + td.offset(ns_t, "__0") end
      return off + td.offset(t, "tv_sec"), off + ns_off
    end
    local next_field
    for _, name in ipairs({ "std", "__0", "t", "0" }) do
      if has_field(t, name) then next_field = name; break end
    end
    if not next_field then break end
    local o, ft = td.offset(t, next_field)
    off, t = off + o, ft
  end
  error("no timespec in " .. tostring(td.type_name(t)))
end

-- Sockets and pipes. tokio registers every one as a PollEvented { io:
-- Option<E>, registration: Registration { shared: ScheduledIo } }: E (a mio
-- socket or pipe) leads to its fd; the ScheduledIo keeps the waker of the
-- task waiting to read (reader) and to write (writer). A future that holds or
-- borrows one (a hyper connection, AddrIncoming's listener, a read future's
-- &mut TcpStream) waits on it; struct fields beside it on the way down named
-- like addresses (hyper's AddrStream.remote_addr, AddrIncoming.addr) give the
-- peer or local address.
local POLL_EVENTED = "tokio::io::poll_evented::PollEvented<"
local ADDRESS_FIELDS = { remote_addr = "peer", peer_addr = "peer", peer = "peer",
                         local_addr = "local", addr = "local" }

-- Offset of the first 4-byte field called name, depth first through struct
-- fields (mio's TcpStream -> IoSource -> std's TcpStream -> ... -> OwnedFd.fd;
-- std's Child -> Process.pid).
local function int_field_offset(t, name, depth)
  depth = depth or 0
  for _, f in ipairs(td.fields(t)) do
    local ok, off, ft = pcall(td.offset, t, f.name)
    if ok and f.type ~= "*" and not (f.type or ""):find("^[&*]") and not pcall(td.pointee, ft) then
      if f.name == name and f.size == 4 then return off end
      if depth < 10 then
        local o = int_field_offset(ft, name, depth + 1)
        if o then return off + o end
      end
    end
  end
  return nil
end

-- "127.0.0.1:8080" from a SocketAddr value (core::net's V4/V6 { ip: { octets }, port }).
local function socket_addr_text(v)
  local payload, variant = td.variant(v)
  local a = payload.__0
  local o = a.ip.octets
  local b = {}
  for i = 0, (variant == "V4" and 3 or 15) do b[#b + 1] = td.uint(o[i]) end
  local port = td.uint(a.port)
  if variant == "V4" then return string.format("%d.%d.%d.%d:%d", b[1], b[2], b[3], b[4], port) end
  local words = {}
  for i = 1, 16, 2 do words[#words + 1] = string.format("%x", b[i] * 256 + b[i + 1]) end
  return string.format("[%s]:%d", table.concat(words, ":"), port)
end

local function addr_text(v)
  local ok, text = pcall(socket_addr_text, v)
  return ok and text or nil
end

local socket_facts = {}   -- PollEvented type id -> { fd =, shared = steps, reader =, writer =, vtable = }
local function socket_layout(pe)
  pe = td.type_of(pe)
  local id = td.id(pe)
  local f = socket_facts[id]
  if f ~= nil then return f end
  f = false
  local ok = pcall(function()
    local _, io_t = td.offset(pe, "io")
    local e = assert(td.template(io_t, "T"))
    local io_off = td.offset(pe, "io") + assert(int_field_offset(e, "fd"))
    -- The ScheduledIo: a slab::Ref's Value (tokio < 1.35), else an Arc.
    local shared, sio
    for _, path in ipairs({ { { "registration", "shared", "value", "*", "value" } },
                            { { "registration", "shared" }, ARC } }) do
      local ok2, steps, t = pcall(recipe, pe, table.unpack(path))
      if ok2 and has_field(t, "waiters") then shared, sio = steps, t; break end
    end
    local wo, wt = td.offset(assert(sio), "waiters")
    -- Mutex<Waiters>: through the lock's wrappers to the data.
    local waiters = peel(td.value(wt, 0))
    local base = wo + td.addr(waiters)
    waiters = td.type_of(waiters)
    local ro, opt = td.offset(waiters, "reader")
    local wr = td.offset(waiters, "writer")
    -- Option<Waker>: None is a null vtable pointer (the niche).
    local waker = assert(td.template(opt, "T"))
    local vo = 0
    for _ = 1, 4 do
      if has_field(waker, "vtable") then vo = vo + td.offset(waker, "vtable"); break end
      local name = td.fields(waker)[1].name
      local o, ft = td.offset(waker, name)
      vo, waker = vo + o, ft
    end
    f = { fd = io_off, shared = shared, reader = base + ro + vo, writer = base + wr + vo }
  end)
  if not ok then f = false end
  socket_facts[id] = f
  return f
end

-- What a future found to hold or borrow a socket waits on, or nil
-- (past_async: t is an async fn's state, searched for what it borrows).
local function socket_resource(t, addr, past_async)
  local pe, path = td.find_inside(td.value(t, addr), POLL_EVENTED, past_async)
  if not pe then return nil end
  local lay = socket_layout(pe)
  if not lay then return nil end
  local a = td.addr(pe)
  local sio = td.follow(a, lay.shared)
  local res = { kind = "socket", fd = td.try_read(a + lay.fd, 4), address = sio or a,
                key = sio and fmt("io", sio) or nil }
  if sio then
    local r, w = td.try_read(sio + lay.reader), td.try_read(sio + lay.writer)
    res.direction = (r and r ~= 0) and ((w and w ~= 0) and "read+write" or "read")
                    or ((w and w ~= 0) and "write" or nil)
  end
  -- Address fields beside the way down, innermost first.
  for i = #path, 1, -1 do
    local v = path[i]
    for _, fl in ipairs(td.fields(v)) do
      local which = ADDRESS_FIELDS[fl.name]
      if which and not res[which] and (fl.type or ""):find("SocketAddr$") then
        res[which] = addr_text(v[fl.name])
      end
    end
  end
  return res
end

-- { pattern on the type path (generics removed), builder(type) -> function(addr) -> resource }
local RESOURCE_TYPES = {
  -- Not a resource but a wait all the same: when a Sleep fires.
  { "^tokio::time::sleep::Sleep$", function(t)
      -- Where the deadline is: Sleep.inner.deadline (tokio < 1.26), the
      -- TimerEntry's (Sleep.entry.deadline, 1.26 to 1.52), Sleep.deadline
      -- (>= 1.53, whose timer entry keeps none). The first path found wins.
      local steps, it
      for _, path in ipairs({ { "deadline" }, { "inner", "deadline" }, { "entry", "deadline" } }) do
        local ok, s, x = pcall(recipe, t, path)
        if ok then steps, it = s, x; break end
      end
      if not steps then error("no deadline in " .. type_path(t)) end
      local sec, nsec = timespec_offsets(it)
      return function(a)
        local d = td.follow(a, steps)
        local s, ns = d and td.try_read(d + sec, 8), d and td.try_read(d + nsec, 4)
        return s and ns and { kind = "tokio::time::Sleep", address = a,
                              deadline_ms = s * 1000 + ns / 1e6 } or nil end end },
  { "^tokio::sync::batch_semaphore::Acquire$", function(t)
      return sem_builder(recipe(t, { "semaphore", "*" }), nil) end },
  { "^tokio::sync::oneshot::Receiver$", function(t) return oneshot_builder(t, "rx") end },
  { "^tokio::sync::oneshot::Sender$", function(t) return oneshot_builder(t, "tx") end },
  { "^tokio::sync::mpsc::.*Receiver$", function(t)
      local steps, ct = recipe(t, { "chan", "inner" }, ARC)
      return chan_builder(steps, ct, "rx") end },
  { "^tokio::sync::mpsc::.*Sender$", function(t)
      local steps, ct = recipe(t, { "chan", "inner" }, ARC)
      return chan_builder(steps, ct, "tx") end },
  { "^tokio::sync::mutex::MutexGuard$", function(t)
      local steps, mt = recipe(t, { "lock", "*" })
      return sem_builder(steps, "tokio::sync::Mutex", td.offset(mt, "s")) end },
  { "^tokio::sync::mutex::OwnedMutexGuard$", function(t)
      local steps, mt = recipe(t, { "lock" }, ARC)
      return sem_builder(steps, "tokio::sync::Mutex", td.offset(mt, "s")) end },
  { "^tokio::sync::rwlock::.*RwLock.*Guard$", function(t)
      return sem_builder(recipe(t, { "s", "*" }), "tokio::sync::RwLock") end },
  { "^tokio::sync::semaphore::SemaphorePermit$", function(t)
      local steps, st = recipe(t, { "sem", "*" })
      return sem_builder(steps, "tokio::sync::Semaphore", td.offset(st, "ll_sem")) end },
  { "^tokio::sync::semaphore::OwnedSemaphorePermit$", function(t)
      local steps, st = recipe(t, { "sem" }, ARC)
      return sem_builder(steps, "tokio::sync::Semaphore", td.offset(st, "ll_sem")) end },
  { "^std::sync::.*MutexGuard$", function(t)
      -- std::sync::Mutex { inner: sys Mutex { futex }, poison, data }
      local steps, mt = recipe(t, { "lock", "*" })
      local off, it = td.offset(mt, "inner")
      if has_field(it, "futex") then off = off + td.offset(it, "futex") end
      return function(a)
        local m = td.follow(a, steps)
        return m and { key = fmt("futex", m + off), kind = "std::sync::Mutex", address = m } end end },
  -- mpsc::Receiver::recv is poll_fn(|cx| self.chan.recv(cx)): its closure
  -- holds &mut Rx (or &mut Receiver).
  -- Notify::notified(); also what watch::Receiver::changed() awaits (its
  -- kind is told from the backtrace, see NOTIFY_USERS).
  { "^tokio::sync::notify::Notified$", function(t)
      return bulk_builder(recipe(t, { "notify", "*" }), function(n)
        return { key = hex(n, "notify:"), address = ptr(n), kind = "tokio::sync::Notify" } end) end },
  { "^tokio::sync::broadcast::Recv$", function(t)
      return bulk_builder(recipe(t, { "receiver", "*", "shared" }, ARC), function(sh)
        return { key = hex(sh, "broadcast:"), address = ptr(sh), kind = "tokio::sync::broadcast",
                 mode = "rx" } end) end },
  -- Child::wait() awaits &mut ChildDropGuard<Child>: the std Child in it has the pid.
  { "tokio::process::ChildDropGuard$", function(t)
      return function(a)
        local v = td.value(t, a)
        local child = td.find_inside(v, "std::process::Child")
        if not child then return nil end
        local off = int_field_offset(td.type_of(child), "pid")
        local pid = off and td.try_read(td.addr(child) + off, 4)
        return pid and { key = "pid:" .. pid, address = td.addr(child), kind = "tokio::process::Child",
                         pid = pid } or nil end end },
  -- An async fn of tokio's I/O (accept(), readable(), recv_from()) waiting
  -- for readiness: the ScheduledIo and the interest (mio's and tokio's bits:
  -- 1 readable, 2 writable); the socket itself is found from the levels
  -- above (socket_of_levels).
  { "^tokio::runtime::io::scheduled_io::Readiness$", function(t)
      local sio_steps = recipe(t, { "scheduled_io", "*" })
      local wo, wt = td.offset(t, "waiter")
      local w = peel(td.value(wt, 0))   -- UnsafeCell<Waiter> -> Waiter
      local ioff = wo + td.addr(w) + td.offset(td.type_of(w), "interest")
      return function(a)
        local sio = td.follow(a, sio_steps)
        local bits = td.try_read(a + ioff, 1)
        local dir = bits and ((bits & 3) == 3 and "read+write" or (bits & 1) == 1 and "read"
                              or (bits & 2) == 2 and "write") or nil
        return sio and { kind = "socket", key = fmt("io", sio), address = sio, direction = dir,
                         via_levels = true } or nil end end },
  -- tokio's own poll_fn; std's since tokio 1.41 (mpsc recv).
  { "^[%w_]+::future::poll_fn::PollFn$", function(t)
      local _, ft = td.offset(t, "f")
      for _, field in ipairs(td.fields(ft)) do
        -- td.fields names the field's type; td.offset gives the Type itself.
        local _, x = td.offset(ft, field.name)
        local path = { "f", field.name }
        for _ = 1, 3 do
          local name = strip_generics(type_path(x))
          if name:find("^tokio::sync::mpsc::") then
            if has_field(x, "chan") then path[#path + 1] = "chan" end
            path[#path + 1] = "inner"
            local steps, ct = recipe(t, path, ARC)
            return chan_builder(steps, ct, "rx")
          end
          local p = td.pointee(x)
          if not p then break end
          path[#path + 1] = "*"
          x = p
        end
      end
      return nil end },
}

-- A readiness future's socket: the innermost level of its (per-task)
-- chain that holds or borrows one (TcpListener::accept's &self).
local function socket_of_levels(chain, res)
  for k = #chain, 1, -1 do
    local level = chain[k]
    local found = level.addr and socket_resource(td.type_by_id(level.type), level.addr, true)
    if found then
      res.fd, res.peer, res["local"] = found.fd, found.peer, found["local"]
      break
    end
  end
  res.via_levels = nil
end

-- What a future that is no resource of its own waits on through one it
-- holds or borrows: a socket (a hyper connection, a read future), a Sleep
-- (Interval::tick's poll_fn holds &mut Interval, whose Sleep is boxed), a
-- signal (Signal::recv's poll_fn: what tokio keeps per signal is a watch
-- channel that does not say which, so only the kind).
local resolver_for
local SLEEP = "tokio::time::sleep::Sleep"

-- A JoinSet (join_next()'s poll_fn borrows it): the tasks it joins, by the
-- headers their JoinHandles point at (made task ids in finish()). It keeps
-- the handles in an IdleNotifiedSet: two intrusive lists (notified, idle)
-- of entries behind an Arc'd Mutex.
local JOIN_SET = "tokio::task::join_set::JoinSet<"
local MAX_JOIN_SET = 100000
local function join_set_resource(js)
  local set = js.inner
  local lists = peel(arc_data(set.lists))
  local headers = {}
  for _, name in ipairs({ "notified", "idle" }) do
    local node = some(lists[name].head)
    local n = 0
    while node and n < MAX_JOIN_SET do
      n = n + 1
      local entry = td.deref(node.pointer)
      local handle = peel(peel(entry.value))
      headers[#headers + 1] = td.read(td.addr(handle))
      node = some(peel(entry.pointers.inner).next)
    end
  end
  return { kind = "tokio::task::JoinSet", key = hex(td.addr(js), "joinset:"), address = td.addr(js),
           headers = headers, size = td.uint(set.length) }
end
local function contained_resource(t, a, signal)
  local res = socket_resource(t, a)
  if res then return res end
  local sl = td.find_inside(td.value(t, a), SLEEP)
  if sl then
    local r = resolver_for(td.id(td.type_of(sl)))
    return r and r(td.addr(sl)) or nil
  end
  local js = td.find_inside(td.value(t, a), JOIN_SET)
  if js then return join_set_resource(js) end
  if signal then
    return { kind = "tokio::signal::unix::Signal", key = hex(a, "signal:"), address = a }
  end
  return nil
end

local builders = {}   -- type id -> function(addr) -> resource, or false
resolver_for = function(type_id)
  local r = builders[type_id]
  if r == nil then
    r = false
    local t = td.type_by_id(type_id)
    local name = strip_generics(type_path(t))
    for _, rt in ipairs(RESOURCE_TYPES) do
      if name:find(rt[1]) then
        local ok, fn = pcall(rt[2], t)
        r = ok and fn or false
        break
      end
    end
    if not r then
      -- A wrapper with one field that takes space (tokio's Coop<F> around
      -- broadcast's Recv since 1.44): what that field is, if a resource.
      local sized = {}
      for _, f in ipairs(td.fields(t)) do
        if (f.size or 0) > 0 and f.name ~= "<variants>" then sized[#sized + 1] = f end
      end
      if #sized == 1 and not pcall(td.pointee, t) then
        builders[type_id] = false   -- while being worked out (recursive types)
        local off, ft = td.offset(t, sized[1].name)
        local inner = resolver_for(td.id(ft))
        if inner then r = function(a) return inner(a + off) end end
      end
    end
    -- Not a resource of its own: one it holds or borrows, if any.
    if not r then
      -- (The type's path, worked out once here: a qualified name is a walk of its unit.)
      local signal = type_path(t):find("tokio::signal::", 1, true) ~= nil
      r = function(a) return contained_resource(t, a, signal) end
    end
    builders[type_id] = r
  end
  return r
end

local function resolve(type_id, addr)
  local r = resolver_for(type_id)
  if not r then return nil end
  local ok, res = pcall(r, addr)
  if ok then return res end
  return nil
end

-- The deadline of the Timeout at a that the chain's first level awaiting
-- tokio's Timeout awaits (td.mark_awaitee), as a Sleep resource.
local TIMEOUT = "tokio::time::timeout::Timeout"
local timeout_delays = {}   -- Timeout type id -> { offset of delay, its type id } or false
local function timeout_of(chain, a)
  for _, level in ipairs(chain) do
    local id = level.awaiting
    if id then
      local d = timeout_delays[id]
      if d == nil then
        d = false
        local t = td.type_by_id(id)
        if t and td.strip_generics(type_path(t)) == TIMEOUT then
          local ok, off, dt = pcall(td.offset, t, "delay")
          if ok and off then d = { off, td.id(dt) } end
        end
        timeout_delays[id] = d
      end
      if d then return resolve(d[2], a + d[1]) end
    end
  end
  return nil
end

-- Futures polled by a collection, as a level's children: the first
-- MAX_CHILDREN with their chains, and how many more there are.
-- - next() of a FuturesUnordered (futures-util): Arc'd Task nodes linked
--   through next_all from head_all, each holding its future in an Option
--   (None once done); any of them finishing frees the waiter.
-- - join_all (futures-util's JoinAll): up to 30 futures, a boxed slice of
--   MaybeDone (a finished one is Done); more, a FuturesOrdered around a
--   FuturesUnordered of OrderWrappers. It needs them all.
local UNORDERED = "futures_util::stream::futures_unordered::FuturesUnordered<"
local JOIN_ALL = "futures_util::future::join_all::JoinAll<"
-- Every prefix td.find_inside is asked for: td.prewarm works their per-type facts out before the stop.
local PREWARM_PREFIXES = { POLL_EVENTED, SLEEP, JOIN_SET, UNORDERED, JOIN_ALL,
                           "tracing::instrument::Instrumented<", "std::process::Child" }
local MAX_CHILDREN = 16
local MAX_COLLECTION = 1000000
local collections = {}
local function holds_collection(type_id)
  local yes = collections[type_id]
  if yes == nil then
    local path = type_path(td.type_by_id(type_id))
    yes = path:find(UNORDERED, 1, true) ~= nil or path:find(JOIN_ALL, 1, true) ~= nil
    collections[type_id] = yes
  end
  return yes
end

-- A FuturesUnordered's futures as children.
local function unordered_children(fu, kids)
  local head = td.read(td.addr(fu.head_all))
  local task_t = td.pointee(td.type_of(fu.head_all.p.value))
  local next_off = td.offset(task_t, "next_all")
  local n, node = 0, head
  while node ~= 0 and n < MAX_COLLECTION do
    n = n + 1
    if #kids < MAX_CHILDREN then
      local fut = some(peel(td.value(task_t, node).future))
      if fut then
        local chain, leaf = td.await_chain(fut)
        kids[#kids + 1] = { elem = td.id(td.type_of(fut)), chain = chain, leaf = leaf }
      end
    end
    node = td.try_read(node + next_off) or 0
  end
  return n
end

local function collection_children(level)
  local v = td.value(td.type_by_id(level.awaiting), level.awaiting_addr)
  local kids, n = {}, 0
  local ja = td.find_inside(v, JOIN_ALL)
  if ja then
    level.wait_all = true
    local kind, variant = td.variant(ja.kind)
    if variant == "Small" then
      local elems = kind.elems
      local box = td.has(elems, "pointer") and elems.pointer or elems.__pointer
      n = td.uint(box.length)
      for i = 0, math.min(n, MAX_COLLECTION) - 1 do
        if #kids >= MAX_CHILDREN then break end
        local md = slice_at(box, i)
        local payload, state = td.variant(md)
        local kid = { elem = td.id(td.type_of(md)), variant = state }
        if state == "Future" then kid.chain, kid.leaf = td.await_chain(payload.__0) end
        kids[#kids + 1] = kid
      end
    else
      local fu = td.find_inside(ja, UNORDERED)
      if fu then n = unordered_children(fu, kids) end
    end
  else
    local fu = td.find_inside(v, UNORDERED)
    if not fu then return end
    n = unordered_children(fu, kids)
  end
  level.children = kids
  level.more = n - #kids
end

-- tokio's select! polls its branches through a closure that also borrows
-- its mask of disabled branches (`disabled`: a branch that completed without
-- matching its pattern, or whose `if` precondition was false): bit k set,
-- branch k + 1 is no longer waited on.
local disabled_masks = {}   -- awaited type id -> offset of the closure's &mut mask, or false
local function mark_disabled(level)
  local off = disabled_masks[level.awaiting]
  if off == nil then
    off = false
    local t = td.type_by_id(level.awaiting)
    local ok, f_off, ft = pcall(td.offset, t, "f")
    if ok then
      for _, name in ipairs({ "_ref__disabled", "disabled" }) do
        if has_field(ft, name) then
          local o, mt = td.offset(ft, name)
          local size = math.min(td.size(td.pointee(mt)), 8)   -- u8 .. u64 (a u128's low half)
          off = { f_off + o, size }
          break
        end
      end
    end
    disabled_masks[level.awaiting] = off
  end
  if not off then return end
  local p = td.try_read(level.awaiting_addr + off[1])
  local mask = p and p ~= 0 and td.try_read(p, off[2])
  if not mask then return end
  for k, c in ipairs(level.children) do
    if k <= off[2] * 8 and mask & (1 << (k - 1)) ~= 0 then c.disabled = true end
  end
end

-- What the levels of a chain (not shared: a shared one holds nothing) hold,
-- as resources, and, for a level with children (select!/join! branches, see
-- td.await_chain), what each child waits on and holds, recursively.
local resolve_chain

-- The type of the future at a chain's leaf address: its innermost level's
-- awaited future, or (an empty chain) the root future that is its own leaf.
-- nil when that future polls branches (select!, join!): it waits on what
-- they wait on, not on its own.
local function leaf_type(chain)
  local last = chain[#chain]
  if last and last.children then return nil end
  return last and last.awaiting or chain.leaf_type
end

-- What the future at a chain's leaf waits on (a readiness future's socket
-- found from the levels above it), or nil.
local function leaf_waits(chain, leaf)
  local lt = leaf and leaf_type(chain)
  local w = lt and resolve(lt, leaf)
  if w and w.via_levels then socket_of_levels(chain, w) end
  return w
end

local function resolve_children(children)
  for _, c in ipairs(children or EMPTY) do
    local chain = c.chain
    if chain then
      c.waits = leaf_waits(chain, c.leaf)
      resolve_chain(chain)
    elseif c.leaf and c.leaf_type then
      c.waits = resolve(c.leaf_type, c.leaf)
    end
  end
end
resolve_chain = function(chain)
  if chain.shared then return end
  for _, level in ipairs(chain) do
    -- (Both read the target as they go: a torn or odd value costs the level its children, not the walk.)
    if level.awaiting_addr and not level.children and holds_collection(level.awaiting) then
      pcall(collection_children, level)
    end
    if level.children and level.awaiting_addr then pcall(mark_disabled, level) end
    for _, held in ipairs(level.holds or EMPTY) do held.resource = resolve(held.type, held.addr) end
    resolve_children(level.children)
  end
end

-- For each task waiting in a future that is a resource: what it waits on;
-- for each suspended state holding guards, permits, channel ends: what.
-- Per task only table lookups: what a chain awaits is worked out once per
-- chain table (tasks suspended at the same place share one), and the
-- resources of a BULK type are followed in one C call for all its tasks:
-- list.bulk = { { got = {[i] = reached address}, make = BULK make }, ... }.
local function follow_resources(lists)
  span_fields_state.n = 0
  for _, list in ipairs(lists) do
    -- The fields of each task's outermost span, while the registry can be read.
    list.span_fields = {}
    for i, span in pairs(list.tagged or EMPTY) do
      local ok, text = pcall(span_fields, span)
      list.span_fields[i] = ok and text or nil
    end
    -- The deadline of each task's outermost timeout() (its chain goes on inside it).
    list.timeouts = {}
    for i, a in pairs(list.marked or EMPTY) do
      local chain = list.chains[i]
      list.timeouts[i] = chain and timeout_of(chain, a) or nil
    end
    local chains, waits, plan, wanted = list.chains, {}, {}, {}
    list.waits, list.bulk = waits, {}
    for i, leaf in pairs(list.leaves or EMPTY) do
      local chain = chains[i]
      local r = plan[chain]
      if r == nil then
        local lt = leaf_type(chain)
        r = lt and resolver_for(lt) or false
        if r and BULK[r] then
          wanted[r] = wanted[r] or {}
          wanted[r][chain] = true
        end
        plan[chain] = r
      end
      if r and not BULK[r] then waits[i] = leaf_waits(chain, leaf) end
    end
    for r, set in pairs(wanted) do
      local b = BULK[r]
      list.bulk[#list.bulk + 1] = { got = td.follow_many(list.leaves, b.steps, chains, set), make = b.make }
    end
    for _, chain in pairs(chains) do resolve_chain(chain) end
  end
end

-- Tasks reached only through a JoinHandle (complete ones leave the owned list).
local function decode_header(header)
  local bits = td.read(header + layout.state)
  local vtable = td.read(header + layout.vtable)
  local info = vtable_info(vtable)
  return { node = header, state = bits, vtable = vtable, id = td.read(header + info.id_offset) }
end

-- The runtime (or LocalSet) a task belongs to, from the task itself: its
-- Cell's core.scheduler is the Arc of its runtime's handle (or a LocalSet's
-- shared state). Returns the owned list, the flavor and an identity.
local function runtime_of_task(header)
  local info = vtable_info(td.read(header + layout.vtable))
  if not info.cell then return nil end
  local data = arc_data(td.value(info.cell, header).core.scheduler)
  if td.has(data, "local_state") then
    return data.local_state.owned, "local_set", td.addr(data)
  end
  local path = td.qualified_name(data) or ""
  local flavor = path:find("current_thread") and "current_thread"
    or path:find("multi_thread") and "multi_thread" or nil
  if not flavor or not td.has(data, "shared") then return nil end
  return data.shared.owned, flavor, td.addr(data)
end


-- A resource as tasks JSON shows it; a semaphore's kind comes from the
-- functions of the chain that acquire it (Mutex::lock, RwLock::write...).
-- A resolver's record whose address is already a td.ptr is in that form.
local SEMAPHORE_USERS = {
  { "^tokio::sync::mutex::", "tokio::sync::Mutex" },
  { "^tokio::sync::rwlock::.*::write", "tokio::sync::RwLock", "write" },
  { "^tokio::sync::rwlock::.*::read", "tokio::sync::RwLock", "read" },
  { "^tokio::sync::semaphore::", "tokio::sync::Semaphore" },
  { "^tokio::sync::mpsc::", "tokio::sync::mpsc", "capacity" },
}
resource_record = function(res, backtrace)
  if type(res.address) == "userdata" and res.kind ~= "tokio::sync::Notify" then return res end   -- made in this form
  local kind, mode = res.kind, res.side
  if kind == "tokio::sync::Notify" then
    -- A Notify awaited inside watch::Receiver::changed() is the watch channel's.
    for _, aw in ipairs(backtrace or EMPTY) do
      if aw.name:find("^tokio::sync::watch::") then
        return { kind = "tokio::sync::watch", key = res.key, address = res.address, mode = "rx" }
      end
    end
    return res
  end
  if not kind then
    kind = "tokio::sync::batch_semaphore::Semaphore"
    for _, aw in ipairs(backtrace or EMPTY) do
      for _, u in ipairs(SEMAPHORE_USERS) do
        if aw.name:find(u[1]) then kind, mode = u[2], u[3] or mode; break end
      end
    end
  end
  return { kind = kind, key = res.key, address = ptr(res.address),
           mode = mode, senders = res.senders, capacity_key = res.capacity_key,
           fd = res.fd, direction = res.direction, peer = res.peer, ["local"] = res["local"], pid = res.pid,
           headers = res.headers, size = res.size,
           deadline_ms = res.deadline_ms,
           remaining_ms = res.deadline_ms and now_ms and res.deadline_ms - now_ms or nil }
end

local TLS_ROOTS = {
  "tokio::runtime::context::CONTEXT",
  "tokio::task::local::CURRENT",
  "tokio::runtime::scheduler::multi_thread::worker::CURRENT",
  "tokio::runtime::scheduler::current_thread::CURRENT",
}

-- Before the target is stopped: resolve every type and offset the walk needs.
-- Reads no target memory (it would be stale).
function M.prepare()
  for _, path in ipairs(TLS_ROOTS) do td.find_tls(path) end
  for _, root in ipairs(TICK_ROOTS) do
    if root.type == nil then root.type = td.find_type(root.context) or false end
  end
  if SCHEDULER_CONTEXT.type == nil then
    SCHEDULER_CONTEXT.type = td.find_type("tokio::runtime::scheduler::Context") or false
  end
  if td.find_type("tokio::runtime::task::raw::Vtable") then
    resolve_layout()
    cell_types()
    -- What the walk will ask of each task future's types (C's per-type facts,
    -- the resolvers of the futures they await), worked out before the stop:
    -- a service's first stop otherwise pays for its DWARF.
    local seen = {}
    for _, f in pairs(poll_functions()) do
      local ok, leaves = pcall(td.prewarm, f.T, PREWARM_PREFIXES)
      for _, id in ipairs(ok and leaves or EMPTY) do
        if not seen[id] then seen[id] = true; pcall(resolver_for, id) end
      end
    end
  end
end

local result

-- Each thread's frame variables (td.frame_locals, located or not), once per
-- stop: block_on's futures, thread_holds and blocking_pools all read them,
-- and each call is a walk of DWARF scopes for every frame.
local locals_of = {}
local function frame_locals(tid)
  local l = locals_of[tid]
  if not l then
    l = td.frame_locals(tid, nil, true)
    locals_of[tid] = l
  end
  return l
end

local late   -- M.walk's runtime table and walker, for what finish() finds (follow_run_until)

-- For `bt`: only the thread-local it reads, resolved before the stop.
function M.prepare_threads()
  td.find_tls("tokio::runtime::context::CONTEXT")
end

-- For `bt`, while stopped: the task id each thread's CONTEXT names (raw: it
-- may be a blocking-pool task's; taskdbg tells them apart by the stack).
function M.current_tasks()
  local out = {}
  for _, t in ipairs(td.threads()) do
    local ctx = context(t.tid)
    if ctx then
      local ok, id = pcall(current_task_id, ctx)
      if ok and id then out[#out + 1] = { tid = t.tid, task = id } end
    end
  end
  return setmetatable(out, { __array = true })
end

-- While the target is stopped: read what the model needs, and nothing more.
function M.snapshot()
  locals_of = {}   -- stacks of an earlier stop
  result = M.walk()
  now_ms = td.target_clock_ms()   -- for a Sleep's time left (live only)
end

-- Bytes of the captured variables (a generator's Unresumed fields) of the
-- future at addr, read as if it were laid out like `copy` (same type).
local function upvars_equal(t, copy, addr)
  local ok, payload, name = pcall(td.variant, td.value(t, copy))
  if not ok or name ~= "Unresumed" then return nil end
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
-- Returns { {frame=, address=, type=, chain=, leaf=, running=}, ... }.
local MAX_PIN_SCAN = 1 << 20
-- Whether the state of async body type t at a looks real: every reference
-- (`&T`) and NonNull in its live variant's fields (structs 4 deep, not
-- enums) points at readable memory, and there is at least one. Stack bytes
-- that only happen to hold a suspend point's discriminant rarely pass.
local function plausible_state(t, a)
  local ok, payload = pcall(function() return td.variant(td.value(t, a)) end)
  if not ok or not payload then return false end
  local checked, budget = 0, 256
  local function sane(ptr) return ptr and ptr ~= 0 and td.try_read(ptr) ~= nil end
  local function walk(v, depth)
    local okf, fields = pcall(td.fields, v)
    if not okf or depth > 4 then return true end
    local base = td.addr(v)
    for _, f in ipairs(fields) do
      budget = budget - 1
      if budget < 0 then return true end
      local name, at = f.type or "", base + (f.offset or 0)
      if name:sub(1, 1) == "&" or name:find("^NonNull<") then
        checked = checked + 1
        if not sane(td.try_read(at)) then return false end
      elseif f.name ~= "<variants>" and name ~= "" and not name:find("^Option<") then
        local okc, child = pcall(function() return v[f.name] end)
        if okc and child and not td.is_enum(child) and not walk(child, depth + 1) then return false end
      end
    end
    return true
  end
  return walk(payload, 0) and checked > 0
end

local function pinned_futures(tid)
  local locals = frame_locals(tid)
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
    local ok, chain, leaf = pcall(td.await_chain, td.value(t, a))
    if not (ok and chain and #chain > 0 and not chain.error) then return nil end
    for _, level in ipairs(chain) do
      if not level.state:find("^Suspend") then return nil end
    end
    return chain, leaf
  end
  local out, seen = {}, {}
  -- The async body a located Pin<&mut F> or Pin<Box<F>> variable points to:
  -- its type and address.
  local function through_pin(v)
    local ok, t = pcall(function()
      local field = td.has(td.value(v.type, v.addr), "pointer") and "pointer" or "__pointer"
      return td.pointee(select(2, td.offset(v.type, field)))
    end)
    if not (ok and t and (td.type_name(t) or ""):find("^{async_")) then return nil end
    local a = td.try_read(v.addr)
    if a and a ~= 0 then return t, a end
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
    if f then block_on_types[f] = true end
  end
  for _, v in ipairs(locals) do
    local tn = td.type_name(v.type) or ""
    if v.addr and tn:find("^Pin<&mut dyn ") then
      -- #[tokio::test] (tokio-macros >= 2.1) hands block_on its pinned body
      -- as a Pin<&mut dyn Future>: td.await_chain names the future through
      -- the trait object's vtable, whose data pointer is where it is pinned.
      if block_on_types[td.qualified_name(v.type)] then
        local ok, chain = pcall(td.await_chain, td.value(v.type, v.addr))
        local t = ok and chain and chain[1] and td.type_by_id(chain[1].type)
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
local function follow_run_until(p, tid)
  -- run_until's own state awaits the RunUntil (td.await_chain has gone on
  -- through it into the future it runs: a wrapper holding an async body).
  local first = p.chain[1]
  local t = first and first.awaiting and td.type_by_id(first.awaiting)
  if not t or not (td.type_name(t) or ""):find("^RunUntil<") then return end
  local got, ru = pcall(function() return td.variant(td.value(p.type, p.address)).__awaitee end)
  if not got then return end
  local found, owned, key = pcall(function()
    local ctx = td.deref(td.deref(ru.local_set).context.ptr.pointer).value
    local shared = arc_data(ctx.shared)
    return td.has(shared, "local_state") and shared.local_state.owned or ctx.owned, td.addr(shared)
  end)
  if found and owned and late and not late.by_handle[key] then
    local rt = late.new_runtime("local_set", owned, key)
    rt.workers[1] = tid
    local walked, why = pcall(late.walk_runtime, rt)
    if not walked then rt.error, rt.lists = tostring(why), {} end
    rt.joined, rt.owned = nil, nil
  end
end

-- After the target runs again: names, from DWARF alone, once per type.
function M.finish()
  local full_by_id, short_by_id = {}, {}
  local function names_of_id(id)
    local full = full_by_id[id]
    if not full then
      full = type_path(td.type_by_id(id))
      full_by_id[id], short_by_id[id] = full, future_name(full)
    end
    return full, short_by_id[id]
  end
  -- block_on's own futures, on the threads that run them (after the stop:
  -- they are found through the copied stacks).
  local tids, pinned = {}, {}
  for tid in pairs(result.thread_runtime or EMPTY) do tids[#tids + 1] = tid end
  table.sort(tids)
  for _, tid in ipairs(tids) do
    for _, p in ipairs(pinned_futures(tid)) do
      follow_run_until(p, tid)
      pinned[#pinned + 1] = { tid = tid, p = p }
    end
  end
  local id_of_header, shared_backtraces = {}, {}
  for _, rt in ipairs(result.runtimes) do
    for _, list in ipairs(rt.lists) do
      for i, header in ipairs(list.cols.node) do id_of_header[header] = list.cols.id[i] end
    end
  end
  -- A future's backtrace (AWAIT objects, shared between futures waiting at the
  -- same place), what its suspended states hold, and what it waits on (a
  -- lock, a channel), unless it is running.
  -- The outermost async fn of the program's own code in a backtrace (for a
  -- hyper connection: the request handler), looking into a tree's branches
  -- when the chain itself has none. Once per backtrace table (shared ones too).
  local roots = setmetatable({}, { __mode = "k" })
  local function root_of(backtrace, depth)
    local r = roots[backtrace]
    if r ~= nil then return r end
    r = false
    for _, aw in ipairs(backtrace) do
      if aw.own and aw.name then r = aw.name; break end
    end
    if not r and (depth or 0) < 4 then
      for _, aw in ipairs(backtrace) do
        for _, child in ipairs(aw.children or EMPTY) do
          r = root_of(child, (depth or 0) + 1)
          if r then break end
        end
        if r then break end
      end
    end
    roots[backtrace] = r
    return r
  end
  local describe
  -- The span a task's own future is instrumented with.
  local function chain_span(chain)
    return chain and chain.root_tag and span_name(chain.root_tag) or nil
  end
  -- An .await written inside select!/join!: the user's line calling the macro.
  local sites = {}
  local function site_of(aw)
    if not aw.in_macro then return aw.file, aw.line end
    local key = aw.type .. aw.state
    local site = sites[key]
    if not site then
      local file, line = td.macro_site(aw.type, aw.state)
      site = file and { file, line } or { aw.file, aw.line }
      sites[key] = site
    end
    return site[1], site[2]
  end
  local function await_record(aw)
    local _, short = names_of_id(aw.type)
    local file, line = site_of(aw)
    return { name = short, state = aw.state, file = file or td.null,
             line = line or td.null, own = aw.own or nil,   -- the program's own source (C: debuginfo/source.h)
             span = aw.tag and span_name(aw.tag) or nil,
             awaiting = aw.awaiting and (names_of_id(aw.awaiting)) or td.null,
             awaiting_task = aw.awaiting_header and id_of_header[aw.awaiting_header] or nil }
  end
  -- A level's children (select!/join! branches) as AWAIT chains, each
  -- innermost one with what it waits on; a finished join! branch (MaybeDone's
  -- Done or Gone) is left out. What the branches hold goes to holds.
  local function describe_children(level, state, holds, held_at, depth)
    local out, all = setmetatable({}, { __array = true }), false
    for _, c in ipairs(level.children) do
      local elem = names_of_id(c.elem)
      if elem:find("MaybeDone<") or level.wait_all then all = true end
      if c.variant ~= "Done" and c.variant ~= "Gone" and not c.disabled then
        local bt, waiting_on
        if c.chain then
          local child_holds
          bt, child_holds, waiting_on = describe(c.chain, c.waits, state, true)
          for _, h in ipairs(child_holds or EMPTY) do
            if not held_at[h.address] then
              held_at[h.address] = true
              h.level = depth
              holds[#holds + 1] = h
            end
          end
        else
          local _, short = names_of_id(c.leaf_type)
          bt = setmetatable({ { name = short, state = td.null, file = td.null, line = td.null,
                                awaiting = td.null } }, { __array = true })
          waiting_on = c.waits and state ~= "running" and resource_record(c.waits, bt) or nil
        end
        if #bt > 0 then
          bt[#bt].waiting_on = waiting_on
          out[#out + 1] = bt
        end
      end
    end
    return out, all and "all" or "any"
  end
  -- fresh: the records are made anew (a child chain's innermost record gets
  -- its own waiting_on), not shared with other futures waiting at the same place.
  describe = function(chain, waits, state, fresh)
    local key = chain
    local tree = false
    if not chain.shared then
      key = {}
      for i, aw in ipairs(chain) do
        key[i] = aw.type .. aw.state .. (aw.awaiting or "") .. "/" .. (aw.awaiting_header or "") .. "/" .. (aw.tag or "")
        tree = tree or aw.children ~= nil
      end
      key = table.concat(key, ";")
    end
    local backtrace = not (fresh or tree) and shared_backtraces[key]
    if not backtrace then
      backtrace = setmetatable({}, { __array = true })
      for i, aw in ipairs(chain) do backtrace[i] = await_record(aw) end
      if not (fresh or tree) then shared_backtraces[key] = backtrace end
    end
    -- What its suspended futures hold: handles to tasks, guards, channel ends
    -- (a chain that holds anything is never shared).
    local holds, held_at
    for i, aw in ipairs(chain.shared and EMPTY or chain) do
      for _, held in ipairs(aw.holds or EMPTY) do
        held_at = held_at or {}
        if not held_at[held.addr] then
          held_at[held.addr] = true
          holds = holds or {}
          local res = held.resource
          holds[#holds + 1] = {
            type = (names_of_id(held.type)), address = ptr(held.addr),
            name = held.name, level = i - 1,
            task = held.header and id_of_header[held.header] or nil,
            resource = res and resource_record(res, backtrace) or nil }
        end
      end
      if aw.children then
        holds, held_at = holds or {}, held_at or {}
        backtrace[i].children, backtrace[i].wait = describe_children(aw, state, holds, held_at, i - 1)
        backtrace[i].branches = #aw.children + (aw.more or 0)
        backtrace[i].more = (aw.more or 0) > 0 and aw.more or nil
        if #holds == 0 then holds = nil end
      end
    end
    local waiting_on = waits and state ~= "running" and resource_record(waits, backtrace) or nil
    if waiting_on and waiting_on.headers then
      -- A JoinSet: the ids of the tasks it joins.
      local ids = setmetatable({}, { __array = true })
      for _, h in ipairs(waiting_on.headers) do ids[#ids + 1] = id_of_header[h] end
      table.sort(ids)
      waiting_on.tasks, waiting_on.headers = ids, nil
    end
    return backtrace, holds, waiting_on
  end
  -- A future's full and short names, once per task vtable.
  -- A boxed future (Pin<Box<F>>, as tokio >= 1.41 spawns big ones, or a
  -- Pin<Box<dyn Future>>) is named after the future in the box, the first
  -- level of its chain (td.await_chain looks through boxes).
  local names_of_vtable = setmetatable({}, { __index = function(t, vt)
    local info = vtables[vt]
    local names = { "?", "?" }
    if info and info.future then names = { names_of_id(td.id(info.future)) } end
    names.boxed = names[1]:find("^core::pin::Pin<") or names[1]:find("^alloc::boxed::Box<")
    t[vt] = names
    return names
  end })
  local running_on = result.running_on or EMPTY
  -- Each record is made in one table constructor (a record grown key by key
  -- rehashes as it grows: a third of the cost at 100,000 tasks).
  for _, rt in ipairs(result.runtimes) do
    local tasks, n = setmetatable({}, { __array = true }), 0
    for _, list in ipairs(rt.lists) do
      local cols, chains, errors = list.cols, list.chains, list.errors
      local waits, bulk = list.waits or EMPTY, list.bulk or EMPTY
      local node, bits_of, vtable, ids = cols.node, cols.state, cols.vtable, cols.id
      for i = 1, #node do
        local bits, id = bits_of[i], ids[i]
        local state = state_name(bits)
        local names = names_of_vtable[vtable[i]]
        local w = waits[i]
        for k = 1, w and 0 or #bulk do
          local x = bulk[k].got[i]
          if x then w = bulk[k].make(x); break end
        end
        local backtrace, holds, waiting_on = describe(chains[i] or EMPTY, w, state)
        n = n + 1
        tasks[n] = {
          id = id, state = state, state_bits = bits, refs = bits >> 6,
          address = ptr(node[i]),
          future = names[1], name = names.boxed and backtrace[1] and backtrace[1].name or names[2],
          running_on = running_on[id] or td.null,
          spawned_at = td.null,   -- recorded by tokio only with tokio_unstable
          backtrace = backtrace, holds = holds, waiting_on = waiting_on, error = errors[i],
          root = root_of(backtrace) or td.null,
        }
        -- (Set only where there is one: every key of the constructor takes room in every record.)
        local span = chains[i] and chains[i].root_tag and chain_span(chains[i])
        if span then tasks[n].span = span end
        local fields = list.span_fields and list.span_fields[i]
        if fields then tasks[n].span_fields = fields end
        local limit = list.timeouts and list.timeouts[i]
        if limit then tasks[n].timeout = resource_record(limit) end
        -- An idle task's wakers: its references less its runtime's (one) and
        -- its JoinHandle's (while JOIN_INTEREST is set). Said only when none.
        if state == "idle" then
          local joined = bits & JOIN_INTEREST ~= 0
          local wakers = (bits >> 6) - (joined and 2 or 1)
          if wakers <= 0 then
            tasks[n].wakers = wakers
            tasks[n].refs_held = joined and "its runtime's and its JoinHandle's" or "its runtime's"
          end
        end
      end
    end
    rt.lists = nil
    -- tokio pushes new tasks at the head: a list is usually newest-first,
    -- and reversing it is much cheaper than sorting.
    local descending = true
    for i = 2, n do
      if tasks[i - 1].id <= tasks[i].id then descending = false; break end
    end
    if descending then
      for i = 1, n // 2 do tasks[i], tasks[n - i + 1] = tasks[n - i + 1], tasks[i] end
    else
      table.sort(tasks, function(a, b) return a.id < b.id end)
    end
    rt.tasks = tasks
  end
  local polls_task = {}
  for _, tid in pairs(result.running_on or EMPTY) do polls_task[tid] = true end
  for _, entry in ipairs(pinned) do
    local tid, p = entry.tid, entry.p
    local rt = result.thread_runtime[tid]
    -- An async body polled under block_on is its future's, unless a task is.
    local b = { thread = tid, address = ptr(p.address),
                state = p.running and not polls_task[tid] and "running" or "idle" }
    follow_join_handles({ { chains = { p.chain } } })
    b.future, b.name = names_of_id(td.id(p.type))
    local waits = leaf_waits(p.chain, p.leaf)
    resolve_chain(p.chain)
    b.backtrace, b.holds, b.waiting_on = describe(p.chain, waits, b.state)
    b.root = root_of(b.backtrace) or td.null
    b.span = chain_span(p.chain)
    rt.block_on = rt.block_on or setmetatable({}, { __array = true })
    rt.block_on[#rt.block_on + 1] = b
  end
  result.running_on = nil
  result.thread_runtime = nil
  return result
end

-- The runtimes threads are in (through CONTEXT) and the LocalSets being
-- polled (through task::local::CURRENT), and which task each thread polls.
local function find_runtimes()
  local runtimes, by_handle = {}, {}
  local running_on, thread_runtime = {}, {}
  local function new_runtime(flavor, owned, key)
    local rt = { id = #runtimes + 1, flavor = flavor, owned = owned,
                 workers = setmetatable({}, { __array = true }),
                 tasks = setmetatable({}, { __array = true }),
                 address = hex(key) }
    runtimes[#runtimes + 1] = rt
    by_handle[key] = rt
    return rt
  end
  for _, t in ipairs(td.threads()) do
    local ctx = context(t.tid)
    if ctx then
      local ok, handle, flavor = pcall(scheduler_handle, ctx)
      if ok and handle then
        local key = td.addr(handle)
        local rt = by_handle[key] or new_runtime(flavor, handle.shared.owned, key)
        thread_runtime[t.tid] = rt
        if in_scheduler_loop(t.tid, flavor) then rt.workers[#rt.workers + 1] = t.tid end
      end
      local okid, id = pcall(current_task_id, ctx)
      if okid and id then running_on[id] = t.tid end
    end
  end
  -- A LocalSet keeps its tasks in a list of its own, reachable while it is
  -- being polled (the common hang: a local task blocking its thread) through
  -- task::local::CURRENT on that thread.
  for _, t in ipairs(td.threads()) do
    local ok, owned, key = pcall(local_set_owned, t.tid)
    if ok and owned then
      local rt = by_handle[key] or new_runtime("local_set", owned, key)
      rt.workers[#rt.workers + 1] = t.tid
    end
  end
  return runtimes, by_handle, running_on, new_runtime, thread_runtime
end

-- A scheduler's tick on a thread: its worker (or current_thread) Core counts
-- every task it runs, so the same task with the same tick in two samples is
-- one poll that has not returned. The Core sits in the thread's scheduler
-- Context while a task is polled.
local function scheduler_tick(tid)
  for _, root in ipairs(TICK_ROOTS) do
    local storage = root.type and td.tls(root.tls, tid)
    if storage then
      local ok, tick = pcall(function()
        local p = td.uint(peel(td.has(storage, "val") and storage.val or storage.value))
        if p == 0 then return nil end
        local core = some(peel(td.value(root.type, p).core))
        if not core then return nil end
        return td.uint(td.deref(core).tick)
      end)
      if ok and tick then return tick end
    end
  end
  -- tokio >= 1.29: those thread-locals are gone; CONTEXT.scheduler is a
  -- Scoped pointer to a scheduler::Context enum (CurrentThread or
  -- MultiThread), whose payload keeps `core: RefCell<Option<Box<Core>>>`.
  -- Read from tokio's source; untested here (only 1.24 is packaged). The
  -- type is resolved in prepare(), like TICK_ROOTS'.
  if not SCHEDULER_CONTEXT.type then return nil end
  local ok, tick = pcall(function()
    local ctx = context(tid)
    local p = ctx and td.uint(peel(ctx.scheduler.inner))
    if not p or p == 0 then return nil end
    local payload = td.variant(td.value(SCHEDULER_CONTEXT.type, p))
    local core = some(peel(peel(payload).core))
    return core and td.uint(td.deref(core).tick)
  end)
  return ok and tick or nil
end

-- The series `diagnose` watches: per sample, each thread's task, tick and
-- system call, and which tasks are notified or running. Lists longer than
-- SAMPLE_TASKS_MAX are not walked in samples (a stop must stay short).
local SAMPLE_TASKS_MAX = 20000
function M.sample(s)
  locals_of = {}
  local runtimes, _, running_on = find_runtimes()
  local polling = {}
  for id, tid in pairs(running_on) do polling[tid] = id end
  for tid, th in pairs(s.threads) do
    th.task, th.tick = polling[tid], scheduler_tick(tid)
  end
  if #runtimes > 0 and td.find_type("tokio::runtime::task::raw::Vtable") then
    resolve_layout()
    for _, rt in ipairs(runtimes) do
      local rec = { address = rt.address, notified = {}, running = {} }
      s.runtimes[#s.runtimes + 1] = rec
      local ok, firsts = pcall(first_tasks, rt.owned)
      for _, first in ipairs(ok and firsts or EMPTY) do
        local cols = td.walk_list{
          first = first, next = layout.next_rel,
          fields = { state = { at = layout.state }, id = layout.id_rel },
          max = SAMPLE_TASKS_MAX,
        }
        for i, bits in ipairs(cols.state) do
          local state = state_name(bits)
          if state == "running" or state == "notified" then rec[state][cols.id[i]] = true end
        end
      end
    end
  end
end

-- diagnose only, after finish(): what each thread's stack frames hold
-- (guards, permits, channel ends in local variables, found through DWARF
-- locations and the registers the unwinder recovered; taskdbg reads them from
-- the stacks copied during the stop). { [tid] = { {resource=, name=,
-- function=, frame=}, ... } }, one entry per resource key.
function M.thread_holds()
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
    for _, v in ipairs(frame_locals(t.tid)) do
      local ok, res = false, nil
      if v.addr then ok, res = pcall(resolve, td.id(v.type), v.addr) end   -- C types, pointers: no name
      if ok and res and res.key and res.kind and not seen[res.key] then
        seen[res.key] = true
        out[t.tid] = out[t.tid] or setmetatable({}, { __array = true })
        table.insert(out[t.tid], { resource = resource_record(res), name = v.name,
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

function M.blocking_pools()
  local out = {}
  local inner_t = td.find_type("tokio::runtime::blocking::pool::Inner")
  if not inner_t then return out end
  local shared_off = td.offset(inner_t, "shared")
  for _, t in ipairs(td.threads()) do
    local rec = {}
    for _, v in ipairs(frame_locals(t.tid)) do
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

-- The release of tokio in the program, from the path of its sources in the
-- debug info (".../tokio-1.29.1/src/runtime/task/raw.rs"), or nil.
local function tokio_release()
  local found
  td.each_function("tokio::runtime::task::raw", "poll", function(f)
    local fn = td.function_at(f.address)
    found = fn and fn.file and fn.file:match("tokio%-(%d+%.%d+%.%d+[%w.+-]*)/")
    return found ~= nil
  end)
  return found
end

-- What the user reads when this plugin fails: a tokio whose layout it cannot
-- read is a taskdbg limitation, said with the release and the structure or
-- field that was not found. Budgets and memory keep their own messages.
function M.explain(message, entry)
  if message:find("budget exhausted") or message:find("not enough memory") then return nil end
  local what = message:gsub("^[%w_./-]+%.lua:%d+: ", "")
  local ok, release = pcall(tokio_release)
  release = ok and release
  return string.format(
    "cannot read the tokio runtime in this program (%s): %s.\n" ..
    "This is a limitation of taskdbg, not a fault of the program: please report it, with the tokio version.\n" ..
    "`taskdbg bt` still shows every thread's stack.",
    release and ("tokio " .. release) or "a tokio whose version its debug info does not tell", what)
end

function M.walk()
  local runtimes, by_handle, running_on, new_runtime, thread_runtime = find_runtimes()
  if #runtimes == 0 then
    return { runtimes = setmetatable({}, { __array = true }), none_found = "no thread has entered a tokio runtime" }
  end
  resolve_layout()
  local function walk_runtime(rt)
    local firsts, owner = first_tasks(rt.owned)
    rt.owner_id = owner
    rt.lists = {}
    for _, first in ipairs(firsts) do
      local why = walk_tasks(first, rt.lists)
      if why then rt.error = tostring(why) end
    end
    rt.joined = follow_join_handles(rt.lists)
    follow_resources(rt.lists)
    rt.owned = nil
  end
  for _, rt in ipairs(runtimes) do walk_runtime(rt) end
  late = { by_handle = by_handle, new_runtime = new_runtime, walk_runtime = walk_runtime }

  -- Runtimes no thread is in (a current-thread runtime outside block_on, an
  -- idle LocalSet) are reached through their tasks: a JoinHandle leads to a
  -- task whose owner is unknown, and its own scheduler field names its runtime.
  for _ = 1, 8 do
    local owners, found = {}, false
    for _, rt in ipairs(runtimes) do owners[rt.owner_id] = true end
    for i = 1, #runtimes do
      for header in pairs(runtimes[i].joined) do
        local owner = td.try_read(header + layout.owner_id)
        if owner and not owners[owner] then
          local ok, owned, flavor, key = pcall(runtime_of_task, header)
          if ok and owned and not by_handle[key] then
            local rt = new_runtime(flavor, owned, key)
            walk_runtime(rt)
            owners[rt.owner_id] = true
            found = true
          end
        end
      end
    end
    if not found then break end
  end

  -- Tasks reached through JoinHandles but in no owned list: finished tasks,
  -- filed with the runtime that owns them. (The set of listed headers is
  -- built only if some handle leads somewhere.)
  local any = false
  for _, rt in ipairs(runtimes) do any = any or next(rt.joined) ~= nil end
  local listed, by_owner = {}, {}
  if any then
    for _, rt in ipairs(runtimes) do
      by_owner[rt.owner_id] = rt
      rt.extra = { node = {}, state = {}, vtable = {}, id = {} }
      for _, list in ipairs(rt.lists) do
        for _, header in ipairs(list.cols.node) do listed[header] = true end
      end
    end
    for _, rt in ipairs(runtimes) do
      for header in pairs(rt.joined) do
        if not listed[header] then
          local ok, t = pcall(decode_header, header)
          if ok then
            local home = by_owner[td.try_read(header + layout.owner_id)] or rt
            for k, v in pairs(t) do home.extra[k][#home.extra[k] + 1] = v end
            listed[header] = true
          end
        end
      end
    end
    for _, rt in ipairs(runtimes) do
      if #rt.extra.node > 0 then
        rt.lists[#rt.lists + 1] = { cols = rt.extra, chains = {}, errors = {} }
      end
      rt.extra = nil
    end
  end
  for _, rt in ipairs(runtimes) do rt.joined = nil end
  return { runtimes = runtimes, running_on = running_on, thread_runtime = thread_runtime }
end

return M
