-- The detectors on synthetic models: no target, no tokio. A made-up runtime
-- ("toy") declares its frames, resource classes and advice as a plugin
-- would; the detectors must find what is wrong from the runtime-neutral
-- model alone, and nothing where nothing is wrong.
-- Run by tests/unit/test_detectors.c: `diagnose(ctx)` runs every detector.

local function array(t) return setmetatable(t or {}, { __array = true }) end

local TOY = {
  name = "toy",
  frames = {
    worker = { "toy::worker::run" }, blocking = { "toy::pool::run" }, poll = { "toy::Task::poll" },
    blocking_task = { "toy::Blocking" }, shutdown = { "toy::Runtime::shutdown" },
    driver_park = { "toy::Driver::park" },
  },
  resources = { ["toy::Lock"] = "mutex", ["toy::Chan"] = "channel", ["toy::Timer"] = "timer",
                ["toy::Join"] = "join" },
  advice = { sleep = "toy::sleep(..).await", mutex = "toy::Lock", spawn_blocking = "toy::blocking" },
}

local function eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %s, want %s", what, tostring(got), tostring(want)), 2)
  end
end

-- The kinds of the findings, in order.
local function kinds(doc)
  local out = {}
  for _, f in ipairs(doc.findings) do out[#out + 1] = f.kind end
  return table.concat(out, ",")
end

local function ids(list)
  local out = {}
  for _, t in ipairs(list) do out[#out + 1] = tostring(t.id or t) end
  return table.concat(out, ",")
end

-- An .await of the user's code.
local function await(fn, line, awaiting)
  return { name = fn, state = "Suspend0", file = "src/main.rs", line = line, own = true, awaiting = awaiting }
end

local function lock(n)
  return { kind = "toy::Lock", key = "lock:" .. n, address = string.format("0x%x", 0x1000 * n) }
end

-- A parked worker: in the driver, as a healthy idle runtime's are.
local function parked(tid)
  return { tid = tid, name = "toy-worker", role = "worker", syscall = "epoll_wait",
           frames = array{ { ["function"] = "epoll_wait" }, { ["function"] = "toy::Driver::park" },
                           { ["function"] = "toy::worker::run" } } }
end

local function ctx_of(runtime, threads, extra)
  local ctx = {
    model = { runtimes = array{ runtime } }, threads = array(threads), samples = array{},
    options = { live = false, window_ms = 0, interval_ms = 25, greedy_threshold_ms = 100 },
    runtime = TOY, thread_holds = {}, blocking_pools = {},
  }
  for k, v in pairs(extra or {}) do ctx[k] = v end
  return ctx
end

local function runtime(tasks, workers)
  return { id = 1, flavor = "multi_thread", address = "0xr1", workers = array(workers or { 101, 102 }),
           tasks = array(tasks) }
end

local cases = {}

-- Three tasks, each holding one lock and waiting for the next: one deadlock
-- naming all three tasks and locks, classes from the plugin's declaration.
cases.cycle_of_three = function()
  local tasks = {}
  for i = 1, 3 do
    local next = i % 3 + 1
    tasks[i] = { id = i, name = "app::transfer", state = "idle",
                 backtrace = array{ await("app::transfer", 10 + i, "toy::Acquire") },
                 waiting_on = lock(next), holds = array{ { name = "guard", resource = lock(i) } } }
  end
  local doc = diagnose(ctx_of(runtime(tasks), { parked(101), parked(102) }))
  eq(kinds(doc), "deadlock", "findings")
  local f = doc.findings[1]
  eq(ids(f.tasks), "1,2,3", "deadlock tasks")
  eq(#f.resources, 3, "deadlock resources")
  for _, r in ipairs(f.resources) do eq(r.kind, "toy::Lock", "resource kind") end
  eq(f.summary, "tasks 1 `app::transfer`, 2 `app::transfer`, 3 `app::transfer` wait for each other (toy::Lock): none can ever proceed",
     "summary")
  eq(f.fix, "take the locks in one global order everywhere, or never hold one while awaiting another", "fix")
end

-- The same shape with one lock held outside any task (unknown holder): no
-- deadlock is claimed that is not proved.
cases.cycle_with_unknown_holder = function()
  local tasks = {
    { id = 1, name = "app::a", state = "idle", backtrace = array{ await("app::a", 1) }, waiting_on = lock(2),
      holds = array{ { resource = lock(1) } } },
    { id = 2, name = "app::b", state = "idle", backtrace = array{ await("app::b", 2) }, waiting_on = lock(3),
      holds = array{} },
  }
  local doc = diagnose(ctx_of(runtime(tasks), { parked(101), parked(102) }))
  eq(kinds(doc), "", "findings")
end

-- An idle task suspended at an .await, no waker of it anywhere.
cases.lost_waker = function()
  local t = { id = 4, name = "app::wait_flag", state = "idle", refs = 1, wakers = 0,
              refs_held = "its runtime's", backtrace = array{ await("app::wait_flag", 30, "app::Flag") } }
  local doc = diagnose(ctx_of(runtime({ t }), { parked(101), parked(102) }))
  eq(kinds(doc), "lost_waker", "findings")
  local f = doc.findings[1]
  eq(f.summary, "task 4 `app::wait_flag` waits at src/main.rs:30 and nothing can ever wake it (no waker of it exists)",
     "summary")
  eq(f.evidence[1], "task 4 `app::wait_flag` is idle with 1 reference: its runtime's, none for a waker", "evidence")
end

-- A thread polling a task sits in std::thread::sleep: blocking_in_async,
-- with the runtime's own advice; its runtime's other task, ready, starves
-- when that was the only worker.
cases.blocking_and_starvation = function()
  local sleeper = { tid = 101, name = "toy-worker", role = "worker", syscall = "clock_nanosleep",
    frames = array{
      { ["function"] = "clock_nanosleep" },
      { ["function"] = "std::thread::sleep" },
      { ["function"] = "app::handler::{async_fn#0}", own = true, file = "src/main.rs", line = 20 },
      { ["function"] = "toy::Task::poll" },
      { ["function"] = "toy::worker::run" },
    } }
  local tasks = {
    { id = 5, name = "app::handler", state = "running", running_on = 101,
      backtrace = array{ { name = "app::handler", state = "Unresumed", file = "src/main.rs", line = 18, own = true } } },
    { id = 6, name = "app::report", state = "notified", backtrace = array{} },
  }
  local doc = diagnose(ctx_of(runtime(tasks, { 101 }), { sleeper }))
  eq(kinds(doc), "starvation,blocking_in_async", "findings")
  local b = doc.findings[2]
  eq(b.summary, "task 5 `app::handler` blocks thread 101 (toy-worker) in std::thread::sleep (clock_nanosleep) at src/main.rs:20",
     "blocking summary")
  eq(b.fix, "use toy::sleep(..).await instead of std::thread::sleep", "blocking fix")
  eq(ids(doc.findings[1].tasks), "6", "starving tasks")
  -- A blocking-pool task (the plugin's frames.blocking_task) may block: that is its job.
  tasks[1].name = "toy::Blocking<app::work>"
  tasks[2].state = "idle"
  eq(kinds(diagnose(ctx_of(runtime(tasks, { 101 }), { sleeper }))), "", "a blocking task's findings")
end

-- A busy, healthy runtime: tasks waiting on channels whose senders live,
-- tasks running, timers ahead, workers parked or polling: nothing found.
cases.healthy_busy = function()
  local tasks, n = {}, 0
  for i = 1, 50 do
    n = n + 1
    local chan = { kind = "toy::Chan", key = "chan:" .. i, address = string.format("0x%x", 0x9000 + i), mode = "rx", senders = 1 }
    tasks[n] = { id = n, name = "app::consumer", state = "idle", refs = 2, backtrace = array{ await("app::consumer", 40, "toy::Recv") },
                 waiting_on = chan }
    n = n + 1
    tasks[n] = { id = n, name = "app::producer", state = i % 2 == 0 and "notified" or "idle", refs = 3,
                 backtrace = array{ await("app::producer", 50, "toy::Sleep") },
                 waiting_on = { kind = "toy::Timer", address = "0x77", deadline_ms = 1e9, remaining_ms = 5 },
                 holds = array{ { name = "tx", resource = { kind = "toy::Chan", key = "chan:" .. i, address = chan.address, mode = "tx" } } } }
  end
  n = n + 1
  tasks[n] = { id = n, name = "app::crunch", state = "running", running_on = 102, backtrace = array{} }
  local busy = { tid = 102, name = "toy-worker", role = "worker",
                 frames = array{ { ["function"] = "app::crunch::{async_fn#0}", own = true, file = "src/main.rs", line = 60 },
                                 { ["function"] = "toy::Task::poll" }, { ["function"] = "toy::worker::run" } } }
  local doc = diagnose(ctx_of(runtime(tasks), { parked(101), busy }))
  eq(kinds(doc), "", "findings")
  eq(doc.tasks, n, "tasks counted")
end

-- A producer blocked on a full channel and its consumer at recv: a cycle
-- only while neither has been woken. Caught as the consumer takes a message,
-- the producer is notified already (diag_healthy under load showed it): no
-- deadlock then; the same two both idle are one.
cases.channel_pair_notified_is_no_deadlock = function()
  local function chan(mode, senders)
    return { kind = "toy::Chan", key = "chan:1", address = "0x5000", mode = mode, senders = senders }
  end
  local function pair(producer_state)
    return {
      { id = 3, name = "app::produce", state = producer_state, backtrace = array{ await("app::produce", 16, "toy::Send") },
        waiting_on = chan("tx"), holds = array{ { name = "tx", resource = chan("tx") } } },
      { id = 4, name = "app::consume", state = "idle", backtrace = array{ await("app::consume", 24, "toy::Recv") },
        waiting_on = chan("rx", 1), holds = array{ { name = "rx", resource = chan("rx") } } },
    }
  end
  local doc = diagnose(ctx_of(runtime(pair("idle")), { parked(101), parked(102) }))
  eq(kinds(doc), "deadlock", "both idle")
  eq(ids(doc.findings[1].tasks), "3,4", "deadlock tasks")
  doc = diagnose(ctx_of(runtime(pair("notified")), { parked(101), parked(102) }))
  eq(kinds(doc), "", "producer notified")
end

-- No runtime at all (a C program): nothing found, no error.
cases.no_runtime = function()
  local ctx = ctx_of(runtime({}), { parked(101) })
  ctx.model = { runtimes = array{} }
  ctx.runtime = {}
  local doc = diagnose(ctx)
  eq(kinds(doc), "", "findings")
  eq(doc.runtimes, 0, "runtimes")
end

local names = {}
for name in pairs(cases) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local ok, err = pcall(cases[name])
  if not ok then error(string.format("case %s: %s", name, tostring(err)), 0) end
end
return #names
