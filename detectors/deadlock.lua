-- deadlock: a wait-for graph over tasks, threads, resources and runtimes,
-- and the part of it that can never move again.
--
-- Nodes and what each needs to make progress:
--   task (not running)  needs what it awaits (a resource, or the task whose
--                       JoinHandle it awaits) AND a worker of its runtime
--   task (running)      needs the thread polling it
--   thread              blocked in futex on a lock: needs that lock's holders
--                       (a std mutex: the tasks whose state holds its guard;
--                       a pthread mutex: the thread whose tid it records);
--                       anything else: free (running, parked, external I/O)
--   runtime             needs ANY of its worker threads (none known: free)
--   resource            a lock: its holder(s) (an RwLock writer needs ALL
--                       readers); a channel: ANY task holding the other end;
--                       if some holders are unknown (outside any task's
--                       state), free: taskdbg cannot see them, so it claims
--                       nothing.
-- The stuck nodes are the greatest fixpoint (a node is free if its needs can
-- be met); every cycle among stuck nodes is a deadlock, and nothing outside
-- the snapshot can break it.

local lib = require("_lib")
local class_of, kind_of_class, advice, frame_index, is_id = lib.class_of, lib.kind_of_class, lib.advice, lib.frame_index, lib.is_id
local task_label, thread_label, task_ref, finding, at = lib.task_label, lib.thread_label, lib.task_ref, lib.finding, lib.at
local innermost, user_await, awaiting_text, holder_where = lib.innermost, lib.user_await, lib.awaiting_text, lib.holder_where
local strip_generics, short_fn, fn_of, array, user_call = lib.strip_generics, lib.short_fn, lib.fn_of, lib.array, lib.user_call

-- glibc's pthread_mutex_lock, with or without libc's debug info.
local PTHREAD_LOCK = { "pthread_mutex_lock$", "pthread_mutex_timedlock$", "^__lll_lock_wait" }

local function new_graph()
  return { nodes = {}, order = {} }
end

local function node(g, name, kind, label)
  local n = g.nodes[name]
  if not n then
    n = { name = name, kind = kind or "free", succ = {}, label = label }
    g.nodes[name] = n
    g.order[#g.order + 1] = name
  end
  return n
end

local function need(n, target) n.succ[#n.succ + 1] = target end

-- Greatest fixpoint: start with every and/or node stuck, free what can move.
local function stuck_nodes(g)
  local free = {}
  for name, n in pairs(g.nodes) do if n.kind == "free" then free[name] = true end end
  local changed = true
  while changed do
    changed = false
    for _, name in ipairs(g.order) do
      local n = g.nodes[name]
      if not free[name] then
        local f
        if #n.succ == 0 then f = true
        elseif n.kind == "or" then
          f = false
          for _, s in ipairs(n.succ) do if free[s] or not g.nodes[s] then f = true; break end end
        else
          f = true
          for _, s in ipairs(n.succ) do if not free[s] and g.nodes[s] then f = false; break end end
        end
        if f then free[name] = true; changed = true end
      end
    end
  end
  local stuck = {}
  for _, name in ipairs(g.order) do if not free[name] then stuck[name] = true end end
  return stuck
end

-- Strongly connected components of the stuck subgraph (Tarjan), in node order.
local function components(g, stuck)
  local index, low, on, stack, out, counter = {}, {}, {}, {}, {}, 0
  local function visit(v)
    counter = counter + 1
    index[v], low[v] = counter, counter
    stack[#stack + 1] = v
    on[v] = true
    for _, w in ipairs(g.nodes[v].succ) do
      if stuck[w] then
        if not index[w] then
          visit(w)
          low[v] = math.min(low[v], low[w])
        elseif on[w] then
          low[v] = math.min(low[v], index[w])
        end
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(stack)
        on[w] = false
        comp[#comp + 1] = w
      until w == v
      out[#out + 1] = comp
    end
  end
  for _, v in ipairs(g.order) do
    if stuck[v] and not index[v] then visit(v) end
  end
  return out
end

local function is_cycle(g, comp)
  if #comp > 1 then return true end
  for _, s in ipairs(g.nodes[comp[1]].succ) do if s == comp[1] then return true end end
  return false
end

-- Holders know a lock best (a guard leads to the Mutex itself; a waiter only
-- to its semaphore): one record per key, the holder's when there is one.
local canonical = {}
local function resource_name(r)
  r = canonical[r.key] or r
  if r.tasks then   -- a JoinSet: the tasks joining would free its waiter
    local ids = {}
    for i, id in ipairs(r.tasks) do ids[i] = tostring(id) end
    return string.format("%s %s (any of tasks %s)", r.kind, r.address, table.concat(ids, ", "))
  end
  return string.format("%s %s", r.kind, r.address)
end

-- What a future's suspended states hold, one phrase each: "the Sender of
-- a oneshot 0x..", "the JoinHandle of task 7". With the future's
-- backtrace, each says in which variable of which level: "(`cache` in
-- demo::warm_cache)".
local function held_phrases(holds, backtrace)
  local held = {}
  for _, h in ipairs(holds or {}) do
    if h.resource then
      local side = ({ tx = "the Sender of ", rx = "the Receiver of " })[h.resource.mode] or ""
      local phrase = side .. resource_name(h.resource)
      if backtrace then
        local aw = backtrace[(h.level or 0) + 1]
        phrase = string.format("%s (`%s` in %s)", phrase, h.name or "?", aw and aw.name or "?")
      end
      held[#held + 1] = phrase
    elseif is_id(h.task) then held[#held + 1] = "the JoinHandle of task " .. h.task end
  end
  return held
end

-- A future (a task's, or block_on's own) that waits: n needs what it awaits.
-- self_node: the graph node of the waiter (a task, or the thread of block_on).
local function await_edges(g, n, self_node, w, aw, holders, waits, ix)
  if aw and aw.children and #aw.children > 0 then
    -- A future polling several at once (select!, join!): it needs ALL of
    -- its pending branches (wait = "all") or ANY of them ("any"); a branch
    -- whose wait taskdbg cannot see (a timer, a socket) is free.
    local tn = node(g, n.name .. "/tree", aw.wait == "all" and "and" or "or")
    for k, child in ipairs(aw.children) do
      local cn = node(g, tn.name .. "/" .. k, "and")
      local cw = child[#child]
      await_edges(g, cn, self_node, cw.waiting_on, cw, holders, waits, ix)
      if #cn.succ == 0 then cn.kind = "free" end
      need(tn, cn.name)
    end
    if (aw.more or 0) > 0 and aw.wait ~= "all" then
      -- Children left unread (a FuturesUnordered's beyond the first 16) may be free.
      local fn = node(g, tn.name .. "/more", "free")
      need(tn, fn.name)
    end
    need(n, tn.name)
    waits[n.name] = { tree = aw, at = aw }
    return
  end
  if aw and is_id(aw.awaiting_task) then
    need(n, "task:" .. aw.awaiting_task)
    waits[n.name] = { task = aw.awaiting_task, at = aw }
  elseif w and w.tasks and #w.tasks > 0 then
    -- JoinSet::join_next: any of its tasks finishing frees it.
    local rn = node(g, "joinset:" .. w.key, "or")
    rn.resource = w
    for _, id in ipairs(w.tasks) do need(rn, "task:" .. id) end
    need(n, rn.name)
    waits[n.name] = { resource = w, at = aw }
  elseif w and w.key then
    local want = (w.mode == "rx") and "tx" or nil   -- a receiver waits for senders
    local found = {}
    for _, h in ipairs(holders[w.key] or {}) do
      if h.node ~= self_node or want then
        if not want or h.side == want then found[#found + 1] = h end
      end
    end
    local unknown = #found == 0
    local class = class_of(ix, w)
    if class == "channel" and w.mode == "rx" and w.senders and w.senders > #found then
      unknown = true
    end
    if not unknown then
      local rname = "res:" .. w.key .. ":" .. (w.mode or "")
      local all = class == "mutex" or (class == "rwlock" and w.mode == "write")
      local rn = node(g, rname, all and "and" or "or")
      rn.resource = w
      for _, h in ipairs(found) do need(rn, h.node) end
      need(n, rname)
    end
    waits[n.name] = { resource = w, at = aw }
  end
end

-- What a future waiting on several branches waits for, as evidence: every
-- branch when it needs any of them (each is stuck), the stuck ones when it
-- needs them all.
local function tree_phrase(name, tree, waits, stuck, ix)
  local parts = {}
  for k in ipairs(tree.children) do
    local cname = name .. "/tree/" .. k
    local w = waits[cname]
    if tree.wait ~= "all" or stuck[cname] then
      local what = "?"
      if w and w.resource then
        what = (w.resource.mode == "rx" and "a message on " or "") .. resource_name(w.resource)
      elseif w and w.task then
        what = "the JoinHandle of " .. task_label(ix.tasks[w.task])
      end
      parts[#parts + 1] = string.format("%s (branch %d)", what, k)
    end
  end
  local where = at(tree) and (" at " .. at(tree)) or ""
  if tree.wait == "all" then
    local n = tree.branches or #tree.children
    return string.format(" waits%s for all of its %d branches (%d still pending), and cannot finish: %s", where,
      n, #tree.children, table.concat(parts, ", "))
  end
  return string.format(" waits%s for any of its %d branches, and none can proceed: %s", where,
    #tree.children, table.concat(parts, ", "))
end

local function run(ctx, ix)
  local g = new_graph()
  -- Holders know a lock best: the first holder's record of each key.
  canonical = {}
  for key, r in pairs(ix.held) do canonical[key] = r end
  local holders = ix.holders
  local waits = {}   -- node name -> { resource record, where (await) }

  -- Runtimes: one of their workers must be free to poll a task.
  for _, rt in ipairs(ix.runtimes) do
    local n = node(g, "rt:" .. rt.address, #rt.workers > 0 and "or" or "free",
      string.format("runtime %d (%s)", rt.id, rt.flavor))
    n.runtime = rt
    for _, tid in ipairs(rt.workers) do need(n, "thread:" .. tid) end
  end

  -- Threads blocked on a lock: a std mutex whose guard lives in some task's
  -- state, or a pthread mutex, whose holder's tid the mutex itself records.
  local sample = ix.last_sample
  for _, th in ipairs(ctx.threads) do
    local s = sample and sample.threads[th.tid]
    local futex = s and s.futex
    local key = futex and string.format("futex:0x%x", futex)
    local owner = s and s.mutex_owner
    if not (owner and ix.threads[owner] and frame_index(th, PTHREAD_LOCK)) then owner = nil end
    local blocked = key and (holders[key] or owner)
    -- A thread parked in block_on, whose future waits on a lock, a channel
    -- or a task, needs what it waits on (it is polled again only then).
    local b = ix.block_on[th.tid]
    local parked = not blocked and b and b.state == "idle" and (b.waiting_on or is_id((innermost(b) or {}).awaiting_task))
    local n = node(g, "thread:" .. th.tid, (blocked or parked) and "and" or "free", thread_label(th))
    n.thread = th
    if parked then
      n.block_on = b
      await_edges(g, n, n.name, b.waiting_on, innermost(b), holders, waits, ix)
    end
    if blocked then
      local rn = node(g, "res:" .. key, "or")
      if holders[key] then
        for _, h in ipairs(holders[key]) do need(rn, h.node) end
        rn.resource = canonical[key]
      else
        need(rn, "thread:" .. owner)
        rn.resource = { key = key, kind = "pthread_mutex_t", class = "pthread_mutex", address = string.format("0x%x", futex),
                        owner = owner }
        canonical[key] = rn.resource
      end
      need(n, "res:" .. key)
      waits[n.name] = { resource = rn.resource }
    end
  end

  -- Tasks.
  for _, t in pairs(ix.tasks) do
    local name = "task:" .. t.id
    local rt = ix.runtime_of[t.id]
    if t.state == "complete" or t.state == "cancelled" then
      node(g, name, "free", task_label(t)).task = t
    elseif t.state == "running" and is_id(t.running_on) then
      local n = node(g, name, "and", task_label(t))
      n.task = t
      need(n, "thread:" .. t.running_on)
    elseif t.state == "notified" then
      -- Woken already: what it awaited has happened (a consumer whose channel
      -- got a message, its producer now blocked on the full channel). It waits
      -- only for a worker to poll it, never on its awaited resource.
      local n = node(g, name, "and", task_label(t))
      n.task = t
      need(n, "rt:" .. rt.address)
    else
      local n = node(g, name, "and", task_label(t))
      n.task = t
      need(n, "rt:" .. rt.address)
      await_edges(g, n, name, t.waiting_on, innermost(t), holders, waits, ix)
    end
  end

  local stuck = stuck_nodes(g)
  local out = {}
  for _, comp in ipairs(components(g, stuck)) do
    if is_cycle(g, comp) then
      local tasks, threads, resources, evidence, seen = {}, {}, {}, {}, {}
      local kinds, classes = {}, {}   -- the resources' display names; their classes
      table.sort(comp)
      -- Resources the cycle goes through, named by their holders' records.
      for _, name in ipairs(comp) do
        local n = g.nodes[name]
        if n.task and not seen["task" .. n.task.id] then
          seen["task" .. n.task.id] = true
          tasks[#tasks + 1] = task_ref(n.task)
        end
        if n.thread then
          threads[#threads + 1] = n.thread.tid
          local polled = ix.polling[n.thread.tid]
          if polled and not seen["task" .. polled.id] then
            seen["task" .. polled.id] = true
            tasks[#tasks + 1] = task_ref(polled)
          end
        end
        local w = waits[name]
        if w and w.resource and not seen[w.resource.key] then
          seen[w.resource.key] = true
          local r = canonical[w.resource.key] or w.resource
          resources[#resources + 1] = { kind = r.kind, address = r.address }
          kinds[r.kind] = true
          classes[class_of(ix, r) or "?"] = true
        end
        if w and w.task then
          kinds.JoinHandle, classes.join = true, true
          if not seen["join" .. w.task] then
            seen["join" .. w.task] = true
            resources[#resources + 1] = { kind = kind_of_class(ix, "join", "JoinHandle"), address = ix.tasks[w.task] and ix.tasks[w.task].address or "?" }
          end
        end
      end
      table.sort(tasks, function(a, b) return a.id < b.id end)
      -- One line per member: what it holds, what it waits for, where.
      for _, name in ipairs(comp) do
        local n = g.nodes[name]
        if n.task then
          local t = n.task
          local held = held_phrases(t.holds)
          local w, aw = waits[name], user_await(t)
          local line = task_label(t)
          if #held > 0 then line = line .. " holds " .. table.concat(held, ", ") .. " and" end
          if w and w.tree then
            line = line .. tree_phrase(name, w.tree, waits, stuck, ix)
            aw = nil
          elseif w and w.resource then
            line = line .. " waits for " .. resource_name(w.resource)
          elseif w and w.task then
            line = line .. " awaits the JoinHandle of " .. task_label(ix.tasks[w.task])
          elseif t.state == "running" then
            line = line .. " is being polled by thread " .. tostring(t.running_on)
          else
            line = line .. " waits for a worker of its runtime to poll it"
          end
          if aw and at(aw) and t.state ~= "running" then line = line .. " at " .. at(aw) end
          evidence[#evidence + 1] = line
        elseif n.block_on then
          -- A thread parked in block_on: its future holds and waits.
          local b, th = n.block_on, n.thread
          local held = held_phrases(b.holds, b.backtrace)
          local w, aw = waits[name], user_await(b)
          local line = string.format("%s runs block_on's future %s, which%s", thread_label(th), b.name,
            #held > 0 and (" holds " .. table.concat(held, ", ") .. " and") or "")
          if w and w.resource then
            local side = ({ rx = "the Receiver of " })[w.resource.mode] or ""
            line = line .. " awaits " .. side .. resource_name(w.resource)
          elseif w and w.task then
            line = line .. " awaits the JoinHandle of " .. task_label(ix.tasks[w.task])
          end
          if aw and at(aw) then line = line .. " at " .. at(aw) .. " (" .. aw.name .. ")" end
          evidence[#evidence + 1] = line
        elseif n.thread then
          local th = n.thread
          local user, api = user_call(th, nil)
          local w = waits[name]
          local polled = ix.polling[th.tid]
          local held = {}
          for _, h in ipairs((ctx.thread_holds or {})[th.tid] or {}) do
            if h.resource and h.resource.key and holders[h.resource.key] then
              held[#held + 1] = string.format("%s (%s)", resource_name(h.resource), holder_where(h))
            end
          end
          evidence[#evidence + 1] = string.format("%s%s%s is blocked in %s on %s%s",
            thread_label(th), polled and (", polling " .. task_label(polled) .. ",") or "",
            #held > 0 and (" holds " .. table.concat(held, ", ") .. " and") or "",
            api and short_fn(fn_of(api)) or th.syscall or "?",
            w and w.resource and resource_name(w.resource) or "a lock",
            user and (" at " .. (at(user) or "?") .. " (" .. short_fn(fn_of(user)) .. ")") or "")
          if w and w.resource and w.resource.owner then
            evidence[#evidence] = evidence[#evidence] .. ", held by " .. thread_label(ix.threads[w.resource.owner])
          end
        elseif n.runtime then
          local rt = n.runtime
          local tids = {}
          for _, tid in ipairs(rt.workers) do tids[#tids + 1] = tostring(tid) end
          evidence[#evidence + 1] = string.format(
            "runtime %d (%s) has no worker free to poll: its worker thread%s %s %s blocked",
            rt.id, rt.flavor, #tids == 1 and "" or "s", table.concat(tids, ", "),
            #tids == 1 and "is" or "are")
        end
      end
      local names = {}
      for _, t in ipairs(tasks) do
        local root = ix.tasks[t.id] and ix.tasks[t.id].root
        names[#names + 1] = string.format("%d `%s`", t.id, type(root) == "string" and root or t.name)
      end
      local who = #names > 0 and ("task" .. (#names > 1 and "s " or " ") .. table.concat(names, ", ")) or ""
      if #threads > 0 then
        who = who .. (who ~= "" and " and " or "") .. "thread" .. (#threads > 1 and "s " or " ")
        local tids = {}
        for _, tid in ipairs(threads) do
          local th = ix.threads[tid]
          tids[#tids + 1] = th and th.name and string.format("%d (%s)", tid, th.name) or tostring(tid)
        end
        who = who .. table.concat(tids, ", ")
      end
      local via = {}
      for k in pairs(kinds) do via[#via + 1] = k end
      table.sort(via)
      local summary = string.format("%s wait for each other (%s): none can ever proceed",
        who, table.concat(via, ", "))
      if #tasks + #threads == 1 then
        summary = string.format("%s waits on itself (%s): it can never proceed", who, table.concat(via, ", "))
      end
      -- Futures in the cycle: tasks, and block_on's own.
      local futures = #tasks
      for _, name in ipairs(comp) do if g.nodes[name].block_on then futures = futures + 1 end end
      local async_locks = classes.mutex or classes.rwlock or classes.semaphore
      local locks = async_locks or classes.blocking_mutex or classes.pthread_mutex
      local fix
      if futures == 0 and classes.pthread_mutex then
        fix = "take the mutexes in one global order everywhere (or pthread_mutex_trylock and back off, releasing what is held)"
      elseif futures == 0 then
        fix = "take the locks in one global order everywhere (or try_lock and back off, releasing what is held)"
      elseif not locks and not classes.join then
        fix = "a future waits on a channel whose other end it (or a future it waits for) keeps open: drop or use that end before the .await"
      elseif classes.blocking_mutex then
        fix = "do not hold a std::sync::MutexGuard across .await: drop it before the .await, or use "
          .. advice(ix, "mutex", "an async mutex")
      elseif classes.join then
        fix = "tasks await each other's JoinHandle: break the cycle (one side must not join the other)"
      elseif async_locks then
        fix = "take the locks in one global order everywhere, or never hold one while awaiting another"
      else
        fix = "a task waits on a channel whose other end it (or a task it waits for) keeps open: drop that end first"
      end
      out[#out + 1] = finding("deadlock", summary, {
        tasks = tasks, threads = threads, resources = resources, evidence = evidence, fix = fix })
    end
  end
  return out
end

return { name = "deadlock", severity = 1, run = run }
