-- A runtime's workers and its own counters, read while the target is
-- stopped: per worker its index, the thread that runs it (its scheduler
-- Context names its index), its tick, its local run queue's length, and the
-- counters tokio keeps per worker where it compiles them in without
-- tokio_unstable (WorkerMetrics: busy_duration_total, park_count,
-- park_unpark_count, from tokio 1.45; an empty struct before); per runtime
-- the counters of its Shared (alive tasks, global queue depth, tasks
-- spawned). Every counter is probed by field name, so a tokio without one
-- simply leaves its key out (never a zero). It owns one cache of DWARF
-- facts, valid for the whole run: what each scheduler Handle type holds, as
-- offsets from the Handle. What it reads goes into the runtime records.
--
-- Facts (verified in tokio's sources and the fixtures' DWARF:
-- docs/tokio-layout-notes.md, "Worker metrics"): the counters are atomics
-- a worker stores from its MetricsBatch when it parks and at its
-- maintenance (every event_interval ticks), so they lag it (a poll under
-- way, and the batch of polls it is in, are not counted yet);
-- busy_duration_total is in nanoseconds; park_unpark_count is 2 *
-- park_count, or one less while the worker is parked.

local U = require("tokio.util")
local D = require("tokio.discovery")
local peel = U.peel

local M = {}

-- The WorkerMetrics fields read, by the key they get in a worker record.
local WORKER_COUNTERS = {
  busy_ns = "busy_duration_total", park_count = "park_count", park_unpark_count = "park_unpark_count",
}
local MAX_WORKERS = 4096   -- a longer worker slice is corrupt

-- {off=, size=} of the integer field `name` of v (a value at address 0, so
-- its address is its offset), or nil if v has no such field (or it takes no
-- room: MetricAtomicU64 is empty on targets without 64-bit atomics).
local function int_field(v, name)
  if not td.has(v, name) then return nil end
  local f = v[name]
  local size = td.try(td.size, f)
  if size ~= 1 and size ~= 2 and size ~= 4 and size ~= 8 then return nil end
  return { off = td.addr(f), size = size }
end

-- A Box<[T]>: where its pointer and length are, and T's size.
local function slice_field(v)
  local t = td.pointee(td.type_of(v.data_ptr))
  return { ptr = td.addr(v.data_ptr), len = td.addr(v.length), size = td.size(t) }, td.value(t, 0)
end

-- What a scheduler Handle (multi_thread::Handle or current_thread::Handle)
-- holds, as offsets from the Handle: worked out once per type, from a value
-- at address 0 (navigating reads nothing).
local layouts = {}
local function build_layout(h)
  if not td.has(h, "shared") then return false end
  local sh, l = h.shared, {}
  -- Tasks in the global (inject) queue: multi_thread's inject::Shared { len }
  -- (1.24: Inject { pointers, len }); current_thread's Inject { shared, synced }.
  if td.has(sh, "inject") then
    local inject = sh.inject
    if td.has(inject, "shared") then inject = inject.shared end
    l.inject_len = int_field(inject, "len")
  end
  -- Alive and spawned tasks: ShardedList { count, added } (count from 1.35,
  -- added from 1.44); 1.29's CountedLinkedList { count } under a mutex;
  -- 1.24's plain LinkedList counts nothing.
  if td.has(sh, "owned") then
    local owned = sh.owned
    if td.has(owned, "list") and td.has(owned.list, "lists") then
      l.alive, l.spawned = int_field(owned.list, "count"), int_field(owned.list, "added")
    elseif td.has(owned, "inner") then
      local inner = peel(owned.inner)
      if td.has(inner, "list") then l.alive = int_field(inner.list, "count") end
    end
  end
  -- Multi-thread: one Remote per worker; its steal handle is the worker's
  -- local queue, Arc<queue::Inner { head (steal and real heads packed in
  -- one word), tail }>.
  if td.has(sh, "remotes") then
    local remote
    l.remotes, remote = slice_field(sh.remotes)
    td.try(function()
      local steps, inner_type = U.recipe(td.type_of(remote), { "steal", "__0" }, U.ARC)
      local inner = td.value(inner_type, 0)
      local head, tail = int_field(inner, "head"), int_field(inner, "tail")
      if head and tail then l.queue = { steps = steps, head = head, tail = tail } end
    end)
  end
  -- WorkerMetrics: a Box<[WorkerMetrics]> (multi-thread), or one inline
  -- (current_thread, where its queue_depth is the local queue's length).
  if td.has(sh, "worker_metrics") then
    local wm, elem = sh.worker_metrics, nil
    if td.has(wm, "data_ptr") then
      l.metrics_slice, elem = slice_field(wm)
    else
      l.metrics_inline, elem = td.addr(wm), wm
    end
    local counters, any = {}, false
    for key, name in pairs(WORKER_COUNTERS) do
      counters[key] = int_field(elem, name)
      any = any or counters[key] ~= nil
    end
    if l.metrics_inline then
      counters.local_queue_depth = int_field(elem, "queue_depth")
      any = any or counters.local_queue_depth ~= nil
    end
    if any then
      -- offsets relative to the WorkerMetrics itself
      local base = l.metrics_inline or 0
      for _, f in pairs(counters) do f.off = f.off - base end
      l.counters = counters
    end
  end
  return l
end

local function layout_of(handle)
  local id = td.id(handle)
  local l = layouts[id]
  if l == nil then
    -- A layout this module does not know costs its counters, not the walk.
    local ok, built = pcall(build_layout, td.value(td.type_of(handle), 0))
    l = ok and built or false
    layouts[id] = l
  end
  return l
end

local function read_int(addr, f)
  if not f then return nil end
  return (td.try_read(addr + f.off, f.size))
end

-- The counters of one WorkerMetrics at addr into rec (only those present).
local function read_counters(rec, addr, counters)
  for key, f in pairs(counters) do rec[key] = read_int(addr, f) end
end

-- The length of a worker's local queue from its Remote at addr: tail - real
-- head, in the width of the tail (u32 on 64-bit targets).
local function local_queue_depth(remote, q)
  local inner = td.follow(remote, q.steps)
  if not inner or inner == 0 then return nil end
  local head, tail = read_int(inner, q.head), read_int(inner, q.tail)
  if not (head and tail) then return nil end
  local mask = (1 << (8 * q.tail.size)) - 1
  return (tail - (head & mask)) & mask
end

-- One runtime: rt.metrics (runtime-wide counters) and rt.worker_details
-- (one record per worker, in index order).
local function read_runtime(rt, handle)
  local l = layout_of(handle)
  if not l then return end
  local base = td.addr(handle)
  local metrics = {
    num_alive_tasks = read_int(base, l.alive),
    global_queue_depth = read_int(base, l.inject_len),
    spawned_tasks_count = read_int(base, l.spawned),
  }
  local workers = setmetatable({}, { __array = true })
  if rt.flavor == "multi_thread" and l.remotes then
    local n = td.try_read(base + l.remotes.len)
    if not n or n > MAX_WORKERS then return end
    local remotes = td.try_read(base + l.remotes.ptr)
    local wm_n = l.metrics_slice and l.counters and td.try_read(base + l.metrics_slice.len)
    local wm = wm_n == n and td.try_read(base + l.metrics_slice.ptr)
    for i = 0, n - 1 do
      local rec = { index = i, tid = td.null, task = td.null }
      if remotes and l.queue then rec.local_queue_depth = local_queue_depth(remotes + i * l.remotes.size, l.queue) end
      if wm then read_counters(rec, wm + i * l.metrics_slice.size, l.counters) end
      workers[i + 1] = rec
    end
    -- The thread of each worker: its scheduler Context names the index.
    -- (A worker whose core another thread took over in block_in_place is
    -- named by both: the first one found is kept.)
    for _, tid in ipairs(rt.workers) do
      local index, tick = D.worker_of_thread(tid)
      local rec = index and workers[index + 1]
      if rec and rec.tid == td.null then rec.tid, rec.tick = tid, tick end
    end
    metrics.num_workers = n
  elseif rt.flavor == "current_thread" then
    -- One worker: the thread in its block_on, if exactly one is.
    local tid = #rt.workers == 1 and rt.workers[1] or nil
    local rec = { index = 0, tid = tid or td.null, task = td.null, tick = tid and D.scheduler_tick(tid) or nil }
    if l.metrics_inline and l.counters then read_counters(rec, base + l.metrics_inline, l.counters) end
    workers[1] = rec
    metrics.num_workers = 1
  else
    return
  end
  rt.worker_details = workers
  rt.metrics = metrics
end

-- While the target is stopped, after the walk: every runtime with a
-- scheduler Handle gets its workers and counters. The Handle values the
-- discovery kept (rt.handle) are dropped here: no userdata in the model.
function M.read(result)
  for _, rt in ipairs(result.runtimes or U.EMPTY) do
    local handle = rt.handle
    rt.handle = nil
    if handle then read_runtime(rt, handle) end
  end
end

-- After finish() made the task records: each worker's task, the one whose
-- running_on is its thread (null while it polls none).
function M.finish(result)
  for _, rt in ipairs(result.runtimes or U.EMPTY) do
    if rt.worker_details then
      local on = {}
      for _, t in ipairs(rt.tasks or U.EMPTY) do
        if type(t.running_on) == "number" then on[t.running_on] = t.id end
      end
      for _, w in ipairs(rt.worker_details) do
        if type(w.tid) == "number" and on[w.tid] then w.task = on[w.tid] end
      end
    end
  end
end

return M
