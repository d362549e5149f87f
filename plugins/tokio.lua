-- taskdbg runtime plugin for tokio.
--
-- Finds every runtime through each thread's tokio CONTEXT thread-local, walks
-- each runtime's list of owned tasks, and decodes every task: id, state bits,
-- future type, the thread polling it, and the chain of .awaits it is suspended
-- at. It probes field names, never versions; the facts it relies on are in
-- docs/tokio-layout-notes.md. Everything it reads is bounded.
--
-- This file is the plugin itself: what it declares and the protocol's
-- entries (docs/plugins.md). The work is in modules, one concern each,
-- under plugins/tokio/: util (shared helpers), discovery (runtimes and what
-- threads run), tasks (the task walk), spans (tracing spans), sockets and
-- resources (what a future waits on and holds), block_on (what threads'
-- stacks say), metrics (workers and tokio's own counters) and model (the
-- records finish() returns). Modules keep only caches of DWARF facts, valid
-- for the whole run; what one stop read is in M.stop (below), handed to the
-- modules that need it.

-- Errors (docs/plugins.md "Errors"): reads that may fail are wrapped in
-- td.try (a fault or a missing field costs that one answer); a pcall is
-- kept only around the plugin's own probes of a layout it may not know (a
-- resource builder, a list walk, a socket's layout), where any error must
-- cost that one thing, not the walk. Budget and out of memory end the call
-- either way.

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
  -- Inside a poll, where the task's own future (or blocking closure) is
  -- called: what runs inside is the task's code (record's flame graphs).
  future = { "tokio::runtime::task::core::Core<T,S>::poll::{closure",
             "tokio::runtime::blocking::task::BlockingTask<T>::poll",
             "<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll" },
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

local discovery = require("tokio.discovery")
local tasks = require("tokio.tasks")
local resources = require("tokio.resources")
local block_on = require("tokio.block_on")
local model = require("tokio.model")
local metrics = require("tokio.metrics")

-- M.stop: the state of the latest stop, the one place it is kept between
-- entries. Made anew by snapshot() and by sample() (what an earlier stop
-- left is stale): { result = the walk's model in the making (finish()
-- completes it), late = the walk's runtimes and walker for what finish()
-- finds on stacks, now_ms = the target's monotonic clock at the stop (live
-- only: a Sleep's time left), locals_of = each thread's frame variables,
-- read once (block_on's futures, thread_holds and blocking_pools all use
-- them) }.
M.stop = nil
local function new_stop() return { locals_of = {} } end
local function stop()
  M.stop = M.stop or new_stop()
  return M.stop
end

-- Before the target is stopped: resolve every type and offset the walk needs.
-- Reads no target memory (it would be stale).
function M.prepare()
  discovery.prepare()
  if td.find_type("tokio::runtime::task::raw::Vtable") then
    tasks.prepare()
    resources.prewarm(tasks.poll_functions())
  end
end

-- For `bt`: only the thread-local it reads, resolved before the stop.
function M.prepare_threads()
  td.find_tls("tokio::runtime::context::CONTEXT")
end

-- For `bt`, while stopped: the task id each thread's CONTEXT names (raw: it
-- may be a blocking-pool task's; taskdbg tells them apart by the stack).
function M.current_tasks()
  local out = {}
  for _, t in ipairs(td.threads()) do
    local ctx = discovery.context(t.tid)
    if ctx then
      local id = td.try(discovery.current_task_id, ctx)
      if id then out[#out + 1] = { tid = t.tid, task = id } end
    end
  end
  return setmetatable(out, { __array = true })
end

-- While the target is stopped: read what the model needs, and nothing more.
function M.snapshot()
  local s = new_stop()
  M.stop = s
  s.result = M.walk(s)
  metrics.read(s.result)            -- workers and tokio's own counters, while stopped
  s.now_ms = td.target_clock_ms()   -- for a Sleep's time left (live only)
end

-- The walk itself (snapshot's), into stop (a new one if none is given).
function M.walk(s)
  return tasks.walk(s or new_stop())
end

-- What the host asks of the model (docs/plugins.md, "Options"): progress.
M.options = {}

-- After the target runs again: the model.
function M.finish()
  local result = model.finish(stop(), M.options)
  metrics.finish(result)
  return result
end

-- diagnose, at every stop of its window: each thread's task and scheduler
-- tick, each runtime's notified and running tasks (sample s).
function M.sample(s)
  M.stop = new_stop()
  local runtimes = discovery.sample_threads(s)
  tasks.sample_lists(s, runtimes)
end

-- diagnose only, after finish(): the guards, permits and channel ends
-- threads hold in local variables (and block_on's futures in their states).
function M.thread_holds()
  return block_on.thread_holds(stop())
end

-- diagnose only, after finish(): the blocking pool each thread runs in or shuts down.
function M.blocking_pools()
  return block_on.blocking_pools(stop())
end

-- What the user reads when this plugin fails: a tokio whose layout it cannot
-- read is a taskdbg limitation, said with the release and the structure or
-- field that was not found. Budgets and memory keep their own messages.
function M.explain(message, entry)
  if message:find("budget exhausted") or message:find("not enough memory") then return nil end
  local what = message:gsub("^[%w_./-]+%.lua:%d+: ", "")
  local release = td.try(discovery.tokio_release)
  return string.format(
    "cannot read the tokio runtime in this program (%s): %s.\n" ..
    "This is a limitation of taskdbg, not a fault of the program: please report it, with the tokio version.\n" ..
    "`taskdbg bt` still shows every thread's stack.",
    release and ("tokio " .. release) or "a tokio whose version its debug info does not tell", what)
end

return M
