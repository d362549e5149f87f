-- blocking_in_async: a thread that is polling a task (or running a block_on
-- future) sits in a blocking system call, so every other task of its worker
-- waits. Reported with the task, the system call, and the user's frame that
-- made the call. On a live target the thread must be in one poll (same
-- task, same scheduler tick) over at least two samples and blocked in most
-- of them, so a short system call caught once is not reported, and a loop of
-- blocking calls caught once between two of them still is.

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

-- The blocking system call a thread sits in while it polls task_id (nil:
-- block_on), and on a live target how often it was seen there. Live, the
-- samples of its current poll count (the same task at the same scheduler
-- tick, back from the last sample): it is blocked if it was in a blocking
-- call in most of them (at least two). A thread that blocks in a loop (a
-- sleep, a lock taken again and again) is now and then caught between two
-- calls, or on its way back into one interrupted by the previous stop
-- (restart_syscall): one such sample, or a final stop that lands there, must
-- not hide it. Returns the call, the samples blocked, the samples of the poll.
local function blocked_in_poll(ctx, th, task_id)
  if not ctx.options.live then
    return th.syscall and BLOCKING[th.syscall] and th.syscall or nil
  end
  local n = #ctx.samples
  local last = n > 0 and ctx.samples[n].threads[th.tid]
  if not last or last.task ~= task_id then return nil end
  local run, blocked, seen = 0, 0, {}
  for i = n, 1, -1 do
    local s = ctx.samples[i].threads[th.tid]
    if not s or s.task ~= last.task or s.tick ~= last.tick then break end
    run = run + 1
    if s.syscall and (BLOCKING[s.syscall] or s.syscall == "restart_syscall") then
      blocked = blocked + 1
      if BLOCKING[s.syscall] then seen[s.syscall] = (seen[s.syscall] or 0) + 1 end
    end
  end
  if run < 2 or blocked * 2 <= run then return nil end
  -- Named as the final stop saw it, else as the samples most often did.
  local call = th.syscall and BLOCKING[th.syscall] and th.syscall
  if not call then
    for name, k in pairs(seen) do
      if not call or k > seen[call] or (k == seen[call] and name < call) then call = name end
    end
  end
  return call, blocked, run
end

-- Where a thread that is blocked (blocked_in_poll) made the call, inside a
-- task poll or block_on: the user frame, the library call, the kind of entry
-- and the task; nil if no user code is between the call and the poll.
local function blocking_call(th, ix)
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

-- The blocking call a thread is in while polling a task or running a block_on
-- future (see blocked_in_poll), or nil: { user =, api =, how =, task =,
-- syscall =, blocked =, run = }.
function blocked_poll(ctx, th, ix)
  local polled = ix.polling[th.tid]
  local syscall, blocked, run = blocked_in_poll(ctx, th, polled and polled.id)
  if not syscall then return nil end
  local user, api, how, task = blocking_call(th, ix)
  if not user then return nil end
  return { user = user, api = api, how = how, task = task, syscall = syscall, blocked = blocked, run = run }
end

detectors.blocking_in_async = function(ctx, ix)
  local out = {}
  for _, th in ipairs(ctx.threads) do
    local b = blocked_poll(ctx, th, ix)
    if b then
      local user, api, task, syscall = b.user, b.api, b.task, b.syscall
      local api_name = api and short_fn(fn_of(api)) or syscall
      local who = task and task_label(task) or "the block_on future"
      local summary = string.format("%s blocks %s in %s (%s) at %s",
        who, thread_label(th), api_name, syscall, at(user) or "?")
      local evidence = {
        string.format("%s %s in system call %s, called from %s at %s",
          thread_label(th), BLOCKING[syscall], syscall, api_name, at(user) or "?"),
        string.format("user frame: %s", short_fn(fn_of(user))),
      }
      if b.run then
        evidence[#evidence + 1] = string.format("blocked in %d of the %d samples of this one poll%s", b.blocked, b.run,
          th.syscall == syscall and "" or "; the last stop caught it between two blocking calls")
      end
      -- A lock: who holds it (a task's suspended state, a thread's locals).
      local s = ix.last_sample and ix.last_sample.threads[th.tid]
      local key = syscall == "futex" and s and s.futex and string.format("futex:0x%x", s.futex)
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
