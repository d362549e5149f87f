-- blocking_in_async: a thread that is polling a task (or running a block_on
-- future) sits in a blocking system call, so every other task of its worker
-- waits. Reported with the task, the system call, and the user's frame that
-- made the call. On a live target the thread must be in the same poll
-- (same task, same scheduler tick) and blocked in the last two samples, so a
-- short system call caught once is not reported.

local BLOCKING = {
  nanosleep = "sleeps", clock_nanosleep = "sleeps", read = "reads", pread64 = "reads",
  readv = "reads", write = "writes", pwrite64 = "writes", writev = "writes",
  futex = "waits on a lock or condition variable", poll = "polls", ppoll = "polls",
  select = "selects", pselect6 = "selects", wait4 = "waits for a process",
  waitid = "waits for a process", accept = "accepts", accept4 = "accepts",
  connect = "connects", recvfrom = "receives", recvmsg = "receives", sendto = "sends",
  sendmsg = "sends", open = "opens a file", openat = "opens a file", flock = "locks a file",
  fsync = "syncs a file", fdatasync = "syncs a file", epoll_wait = "waits for events",
  epoll_pwait = "waits for events", sched_yield = "yields the CPU",
}

local FIXES = {
  { "^std::thread::.*sleep", "use tokio::time::sleep(..).await instead of std::thread::sleep" },
  { "^std::fs::", "use tokio::fs, or run the file work in tokio::task::spawn_blocking" },
  { "Mutex", "do not hold a std::sync::MutexGuard across .await; use tokio::sync::Mutex, or make the critical section short and synchronous" },
  { "^std::sync::mpsc", "use tokio::sync::mpsc and .await the receive" },
  { "^std::net::", "use tokio::net" },
  { "^std::process::", "use tokio::process" },
}

local function suggestion(api_name)
  for _, f in ipairs(FIXES) do
    if api_name and api_name:find(f[1]) then return f[2] end
  end
  return "move the blocking call into tokio::task::spawn_blocking, or use its async equivalent"
end

-- Whether the thread was blocked in the same poll in the last two samples.
local function persisted(ctx, tid, task_id)
  local n = #ctx.samples
  if not ctx.options.live then return true end
  if n < 2 then return false end
  local a, b = ctx.samples[n - 1].threads[tid], ctx.samples[n].threads[tid]
  if not a or not b or not a.syscall or not b.syscall then return false end
  if a.task ~= b.task or a.task ~= task_id then return false end
  return a.tick == b.tick
end

-- The thread's blocking call inside a task poll or block_on, if any:
-- returns the user frame, the library call, the kind of entry and the task.
function blocking_call(th, ix)
  if not th.syscall or not BLOCKING[th.syscall] then return nil end
  local entry, how = poll_entry(th)
  if not entry then return nil end
  local task = ix.polling[th.tid]
  if how == "task" and not task then return nil end
  -- A spawn_blocking closure runs as a task too, on the blocking pool: blocking is its job.
  if how == "task" and (task.name or ""):find("^tokio::runtime::blocking::task::BlockingTask") then
    return nil
  end
  if how == "block_on" then task = nil end
  -- tokio parking inside block_on (the future is pending) is no blocking call.
  local user, api = user_call(th, entry)
  if not user then return nil end
  return user, api, how, task
end

detectors.blocking_in_async = function(ctx, ix)
  local out = {}
  for _, th in ipairs(ctx.threads) do
    local user, api, how, task = blocking_call(th, ix)
    if user and persisted(ctx, th.tid, task and task.id) then
      local api_name = api and short_fn(fn_of(api)) or th.syscall
      local who = task and task_label(task) or "the block_on future"
      local summary = string.format("%s blocks %s in %s (%s) at %s",
        who, thread_label(th), api_name, th.syscall, at(user) or "?")
      local evidence = {
        string.format("%s %s in system call %s, called from %s at %s",
          thread_label(th), BLOCKING[th.syscall], th.syscall, api_name, at(user) or "?"),
        string.format("user frame: %s", short_fn(fn_of(user))),
      }
      -- A lock: who holds it (a task's suspended state, a thread's locals).
      local s = ix.last_sample and ix.last_sample.threads[th.tid]
      local key = th.syscall == "futex" and s and s.futex and string.format("futex:0x%x", s.futex)
      for _, h in ipairs(key and ix.holders[key] or {}) do
        local r = h.resource
        if h.task then
          evidence[#evidence + 1] = string.format("the lock (%s %s) is held by %s, suspended at %s",
            r.kind, r.address, task_label(h.task), at(user_await(h.task)) or "?")
        elseif h.thread ~= th.tid then
          evidence[#evidence + 1] = string.format("the lock (%s %s) is held by %s (%s)",
            r.kind, r.address, thread_label(ix.threads[h.thread]), holder_where(h))
        end
      end
      local aw = task and innermost(task)
      if aw and aw.state == "Unresumed" then
        -- Suspended nowhere yet: its chain would only show the fn's own line.
        evidence[#evidence + 1] = string.format("%s is in its first poll on this thread", task_label(task))
      elseif task then
        evidence[#evidence + 1] = string.format("%s, polled by this thread; its await chain:", task_label(task))
        for _, l in ipairs(chain_lines(task, "  ")) do evidence[#evidence + 1] = l end
      end
      out[#out + 1] = finding("blocking_in_async", summary, {
        tasks = task and { task_ref(task) } or {}, threads = { th.tid },
        evidence = evidence, fix = suggestion(api_name),
      })
    end
  end
  return out
end
