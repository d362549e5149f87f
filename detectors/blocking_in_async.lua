-- blocking_in_async: a thread that is polling a task (or running a block_on
-- future) sits in a blocking system call, so every other task of its worker
-- waits. Reported with the task, the system call, and the user's frame that
-- made the call. On a live target the thread must be in one poll (same
-- task, same scheduler tick) over at least two samples and blocked in most
-- of them, so a short system call caught once is not reported, and a loop of
-- blocking calls caught once between two of them still is.

local lib = require("_lib")
local blocking = require("_blocking")
local task_label, thread_label, at, short_fn, fn_of = lib.task_label, lib.thread_label, lib.at, lib.short_fn, lib.fn_of
local user_await, holder_where, innermost, chain_lines = lib.user_await, lib.holder_where, lib.innermost, lib.chain_lines
local finding, task_ref = lib.finding, lib.task_ref

-- The advice for a blocking call: the runtime's own way (ix.advice) where it declares one.
local function suggestion(ix, api_name)
  local function use(what, generic, fmt)
    local a = lib.advice(ix, what, nil)
    return a and string.format(fmt, a) or generic
  end
  local fixes = {
    { "^std::thread::.*sleep", function() return use("sleep", "use the runtime's async sleep instead of std::thread::sleep",
        "use %s instead of std::thread::sleep") end },
    { "^std::fs::", function()
        local a, b = lib.advice(ix, "fs", nil), lib.advice(ix, "spawn_blocking", nil)
        return a and b and string.format("use %s, or run the file work in %s", a, b)
          or "use the runtime's async file API, or run the file work on a blocking thread" end },
    { "Mutex", function() return use("mutex", "do not hold a std::sync::MutexGuard across .await; use an async mutex, or make the critical section short and synchronous",
        "do not hold a std::sync::MutexGuard across .await; use %s, or make the critical section short and synchronous") end },
    { "^std::sync::mpsc", function() return use("channel", "use an async channel and .await the receive",
        "use %s and .await the receive") end },
    { "^std::net::", function() return use("net", "use the runtime's async sockets", "use %s") end },
    { "^std::process::", function() return use("process", "use the runtime's async processes", "use %s") end },
  }
  for _, f in ipairs(fixes) do
    if api_name and api_name:find(f[1]) then return f[2]() end
  end
  return use("spawn_blocking", "move the blocking call onto a blocking thread, or use its async equivalent",
    "move the blocking call into %s, or use its async equivalent")
end

local function run(ctx, ix)
  local out = {}
  for _, th in ipairs(ctx.threads) do
    local b = blocking.blocked_poll(ctx, th, ix)
    if b then
      local user, api, task, syscall = b.user, b.api, b.task, b.syscall
      local api_name = api and short_fn(fn_of(api)) or syscall
      local who = task and task_label(task) or "the block_on future"
      local summary = string.format("%s blocks %s in %s (%s) at %s",
        who, thread_label(th), api_name, syscall, at(user) or "?")
      local evidence = {
        string.format("%s %s in system call %s, called from %s at %s",
          thread_label(th), blocking.BLOCKING[syscall], syscall, api_name, at(user) or "?"),
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
        evidence = evidence, fix = suggestion(ix, api_name),
      })
    end
  end
  return out
end

return { name = "blocking_in_async", severity = 4, run = run }
