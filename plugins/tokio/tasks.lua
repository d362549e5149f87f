-- The task walk: tokio's task layout (Header, Vtable, Trailer, every
-- Cell<T,S> and raw::poll<T,S>), the owned lists of a runtime (one list or
-- the shards of a ShardedList), each task's state, id and await chain read
-- while the target is stopped (td.walk_list, td.await_chains), the tasks
-- JoinHandles lead to (finished ones, runtimes no thread is in), and
-- diagnose's light walk in samples. It owns caches of DWARF facts, valid
-- for the whole run: the layout, the Cells and poll functions, and what
-- each vtable address tells (its Cell, stage offset, future type). What a
-- walk finds it returns, and what finish() needs of it goes in the stop.

local U = require("tokio.util")
local D = require("tokio.discovery")
local R = require("tokio.resources")
local S = require("tokio.spans")
local peel, some, type_path, arc_data, EMPTY = U.peel, U.some, U.type_path, U.arc_data, U.EMPTY
local find_runtimes, follow_resources, follow_span_fields = D.find_runtimes, R.follow_resources, S.follow_span_fields

local T = {}

local RUNNING, COMPLETE, NOTIFIED, JOIN_INTEREST, CANCELLED = 0x01, 0x02, 0x04, 0x08, 0x20
local MAX_TASKS = 10000000       -- per runtime: a longer list is corrupt or cyclic
local SPAN_FIELDS_MAX = S.FIELDS_MAX   -- tasks whose span fields are read, a snapshot (tokio/spans.lua)
local TIMEOUTS_MAX = 1000        -- tasks whose timeout's deadline is read, a snapshot (see timeout_of)

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

-- Layout facts resolved once per program.
local layout
local function resolve_layout()
  if layout then return layout end
  local vt = td.find_type("tokio::runtime::task::raw::Vtable")
  local trailer = td.find_type("tokio::runtime::task::core::Trailer")
  local header = td.find_type("tokio::runtime::task::core::Header")
  if not (vt and trailer and header) then
    error(td.error("not_found", "tokio's task types are not in the debug info"))
  end
  local owned_off, pointers = td.offset(trailer, "owned")
  local inner_off, inner = 0, pointers
  if not td.try(function() inner_off, inner = td.offset(pointers, "next"); return true end) then
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

-- layout[key], made by build() the first time (a scan of the debug info).
local function once(key, build)
  local v = layout[key]
  if v == nil then v = build(); layout[key] = v end
  return v
end

-- By future type, then by scheduler: a future spawned through a Handle has
-- a Cell for each scheduler flavor in the binary, and only the vtable's
-- poll<T, S> tells which one a task is.
local function cell_types()
  return once("cells", function()
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
    return cells
  end)
end

-- Every instance of raw::poll<T, S> by address: a vtable's poll pointer names
-- its task's future type T and scheduler S.
local function poll_functions()
  return once("polls", function()
    local polls = {}
    td.each_function("tokio::runtime::task::raw", "poll", function(f)
      if f.T then polls[f.address] = f end
      return false
    end)
    return polls
  end)
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
      if td.try(td.offset, stage_t, "stage") then
        local inner_off, inner_t = td.offset(stage_t, "stage")
        stage_off, stage_t = stage_off + inner_off, inner_t
      end
      local v = peel(td.value(stage_t, 0))   -- UnsafeCell<Stage<T>> -> Stage<T>
      info.stage_offset = core_off + stage_off + td.addr(v)
      info.stage_type = td.type_of(v)
      info.stage_size = td.try(td.size, info.stage_type)
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
  -- The task header a JoinHandle of type `type` at addr points to, kept in rec[key].
  local function follow(type, addr, rec, key)
    if type and is_join_handle(type) then
      local header = td.try_read(addr)
      if header and header ~= 0 then
        rec[key] = header
        targets[header] = true
      end
    end
  end
  for _, list in ipairs(lists) do
    for _, chain in pairs(list.chains) do
      -- A shared chain has no JoinHandle and holds nothing, by construction.
      if not chain.shared then for _, level in ipairs(chain) do
        follow(level.awaiting, level.awaiting_addr, level, "awaiting_header")
        for _, held in ipairs(level.holds or {}) do follow(held.type, held.addr, held, "header") end
      end end
    end
  end
  return targets
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
-- shared state). Returns the owned list, the flavor, an identity and the
-- runtime's scheduler Handle.
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
  return data.shared.owned, flavor, td.addr(data), data
end

-- Before the stop: the layout, the Cells, the poll functions.
function T.prepare()
  resolve_layout()
  cell_types()
end
T.poll_functions = poll_functions

-- While the target is stopped: every runtime a thread is in, and those
-- their tasks' JoinHandles lead to, walked. Returns the model in the making
-- ({ runtimes =, running_on =, thread_runtime = }); stop.late gets what
-- finish() needs to walk a runtime it finds on a stack (follow_run_until).
function T.walk(stop)
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
    follow_span_fields(rt.lists)
    follow_resources(rt.lists)
    rt.owned = nil
  end
  for _, rt in ipairs(runtimes) do walk_runtime(rt) end
  stop.late = { by_handle = by_handle, new_runtime = new_runtime, walk_runtime = walk_runtime }

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
          local ok, owned, flavor, key, handle = pcall(runtime_of_task, header)
          if ok and owned and not by_handle[key] then
            local rt = new_runtime(flavor, owned, key, handle)
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

-- The series `diagnose` watches: per sample, which tasks are notified or
-- running, per runtime (discovery.sample_threads found the runtimes). Lists
-- longer than SAMPLE_TASKS_MAX are not walked in samples (a stop must stay short).
local SAMPLE_TASKS_MAX = 20000
function T.sample_lists(s, runtimes)
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

-- For finish(): a task's state, what each vtable told (filled by walks:
-- vtables[addr] = { future =, cell =, ... }), and the JoinHandles a chain
-- awaits or holds (block_on's, after the stop).
T.state_name, T.vtables, T.follow_join_handles = state_name, vtables, follow_join_handles
T.JOIN_INTEREST = JOIN_INTEREST

return T
