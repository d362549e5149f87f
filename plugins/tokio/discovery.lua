-- Finding tokio in a stopped program: each thread's CONTEXT thread-local
-- (its runtime's scheduler handle, the task it polls), the scheduler loops
-- (worker::CURRENT, current_thread::CURRENT, CONTEXT.scheduler), the
-- LocalSet a thread polls (task::local::CURRENT), a scheduler's tick, and
-- tokio's release from the debug info (for explain). It owns the scheduler
-- Context types resolved in prepare() (DWARF facts, valid for the run); what
-- it finds in memory it returns, it keeps none of it.

local U = require("tokio.util")
local peel, some, arc_data, hex = U.peel, U.some, U.arc_data, U.hex

local D = {}

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

local TLS_ROOTS = {
  "tokio::runtime::context::CONTEXT",
  "tokio::task::local::CURRENT",
  "tokio::runtime::scheduler::multi_thread::worker::CURRENT",
  "tokio::runtime::scheduler::current_thread::CURRENT",
}

-- Before the stop: the thread-locals and the scheduler Context types.
function D.prepare()
  for _, path in ipairs(TLS_ROOTS) do td.find_tls(path) end
  for _, root in ipairs(TICK_ROOTS) do
    if root.type == nil then root.type = td.find_type(root.context) or false end
  end
  if SCHEDULER_CONTEXT.type == nil then
    SCHEDULER_CONTEXT.type = td.find_type("tokio::runtime::scheduler::Context") or false
  end
end

-- The CONTEXT of a thread, if it is initialised and alive.
local function context(tid)
  local storage = td.tls("tokio::runtime::context::CONTEXT", tid)
  if not storage then return nil end
  return (td.try(function() return U.tls_value(storage) end))
end
D.context = context

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
  local data = U.tls_value(storage)
  if not data then return nil end
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
D.current_task_id = current_task_id

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
    local p = ctx and td.try(function() return td.uint(peel(ctx.scheduler.inner)) end)
    return p ~= nil and p ~= 0
  end
  local p = td.try(function()
    return td.uint(U.tls_value(storage))
  end)
  return p ~= nil and p ~= 0
end

-- The runtimes threads are in (through CONTEXT) and the LocalSets being
-- polled (through task::local::CURRENT), and which task each thread polls.
function D.find_runtimes()
  local runtimes, by_handle = {}, {}
  local running_on, thread_runtime = {}, {}
  -- handle: the scheduler Handle value, for tokio/metrics.lua (which drops it).
  local function new_runtime(flavor, owned, key, handle)
    local rt = { id = #runtimes + 1, flavor = flavor, owned = owned, handle = handle,
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
      local handle, flavor = td.try(scheduler_handle, ctx)
      if handle then
        local key = td.addr(handle)
        local rt = by_handle[key] or new_runtime(flavor, handle.shared.owned, key, handle)
        thread_runtime[t.tid] = rt
        if in_scheduler_loop(t.tid, flavor) then rt.workers[#rt.workers + 1] = t.tid end
      end
      local id = td.try(current_task_id, ctx)
      if id then running_on[id] = t.tid end
    end
  end
  -- A LocalSet keeps its tasks in a list of its own, reachable while it is
  -- being polled (the common hang: a local task blocking its thread) through
  -- task::local::CURRENT on that thread.
  for _, t in ipairs(td.threads()) do
    local owned, key = td.try(local_set_owned, t.tid)
    if owned then
      local rt = by_handle[key] or new_runtime("local_set", owned, key)
      rt.workers[#rt.workers + 1] = t.tid
    end
  end
  return runtimes, by_handle, running_on, new_runtime, thread_runtime
end

-- The scheduler Context of a thread while it runs a scheduler's loop (a
-- multi-thread worker, or current_thread's block_on), as a value:
-- multi_thread::worker::Context { worker: Arc<Worker { index, .. }>, core }
-- or current_thread::Context { handle, core }; nil on any other thread.
-- tokio < 1.29 points to it from a scoped thread-local per scheduler; from
-- 1.29 CONTEXT.scheduler is a Scoped pointer to a scheduler::Context enum
-- (CurrentThread or MultiThread) whose payload is that Context. The types
-- are resolved in prepare().
local function scheduler_context(tid)
  for _, root in ipairs(TICK_ROOTS) do
    local storage = root.type and td.tls(root.tls, tid)
    if storage then
      local cx = td.try(function()
        local p = td.uint(U.tls_value(storage))
        if p == 0 then return nil end
        return td.value(root.type, p)
      end)
      if cx then return cx end
    end
  end
  if not SCHEDULER_CONTEXT.type then return nil end
  return (td.try(function()
    local ctx = context(tid)
    local p = ctx and td.uint(peel(ctx.scheduler.inner))
    if not p or p == 0 then return nil end
    return peel(td.variant(td.value(SCHEDULER_CONTEXT.type, p)))
  end))
end

-- A scheduler's tick on a thread: its worker (or current_thread) Core counts
-- every task it runs, so the same task with the same tick in two samples is
-- one poll that has not returned. The Core sits in the thread's scheduler
-- Context while a task is polled (and while a multi-thread worker parks).
local function tick_of(cx)
  return cx and (td.try(function()
    local core = some(peel(cx.core))
    return core and td.uint(td.deref(core).tick)
  end)) or nil
end
local function scheduler_tick(tid) return tick_of(scheduler_context(tid)) end
D.scheduler_tick = scheduler_tick

-- The index of the multi-thread worker a thread runs (its scheduler
-- Context's `worker.index`: the worker's slot in the runtime's `remotes` and
-- `worker_metrics`), and its tick; nil on a thread that runs no worker.
function D.worker_of_thread(tid)
  local cx = scheduler_context(tid)
  if not cx or not td.has(cx, "worker") then return nil end
  local index = td.try(function() return td.uint(arc_data(cx.worker).index) end)
  if not index then return nil end
  return index, tick_of(cx)
end

-- For diagnose's sample s: the runtimes, and per thread the task it polls
-- and its scheduler's tick.
function D.sample_threads(s)
  local runtimes, _, running_on = D.find_runtimes()
  local polling = {}
  for id, tid in pairs(running_on) do polling[tid] = id end
  for tid, th in pairs(s.threads) do
    th.task, th.tick = polling[tid], scheduler_tick(tid)
  end
  return runtimes
end

-- The release of tokio in the program, from the path of its sources in the
-- debug info (".../tokio-1.29.1/src/runtime/task/raw.rs"), or nil.
function D.tokio_release()
  local found
  td.each_function("tokio::runtime::task::raw", "poll", function(f)
    local fn = td.function_at(f.address)
    found = fn and fn.file and fn.file:match("tokio%-(%d+%.%d+%.%d+[%w.+-]*)/")
    return found ~= nil
  end)
  return found
end

return D
