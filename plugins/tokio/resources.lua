-- What an awaited future waits on and what a suspended state holds, as
-- resources (docs/plugins.md: waiting_on, holds[].resource): locks,
-- semaphores, channels, oneshots, Notify and watch, broadcast, a child
-- process, a signal, a JoinSet, a Sleep's deadline, a timeout()'s; the
-- branches of select!/join! and the futures of a FuturesUnordered or
-- join_all as a level's children (with select!'s disabled mask); and the
-- records the model shows them as (resource_record). It owns caches of
-- DWARF facts, valid for the whole run: per type id, the resolver built for
-- it (builders), a Timeout's delay, whether it is a collection, select!'s
-- mask offset. What it reads from a stop goes into the lists it is given.

local U = require("tokio.util")
local K = require("tokio.sockets")
local peel, some, arc_data, slice_at, type_path = U.peel, U.some, U.arc_data, U.slice_at, U.type_path
local recipe, has_field, ARC, EMPTY = U.recipe, U.has_field, U.ARC, U.EMPTY
local hex, ptr, fmt = U.hex, U.ptr, U.fmt
local strip_generics = td.strip_generics   -- "a::B<c::D>::f" -> "a::B::f"
local socket_resource, socket_of_levels, int_field_offset = K.socket_resource, K.socket_of_levels, K.int_field_offset
local POLL_EVENTED = K.POLL_EVENTED

local R = {}

-- What a task waits on and what it holds, as resources: a key shared by the
-- waiters and the holders of one lock or channel ("sem:0x..", "chan:0x..",
-- "oneshot:0x..", "futex:0x.."), read while the target is stopped. Per type,
-- once: a builder turns the type's layout into paths of offsets and pointer
-- reads (td.follow), so each instance costs a few reads and no values. nil
-- for types that are no resource (a Sleep, a custom future).

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
  error(td.error("not_found", "no timespec in " .. tostring(td.type_name(t))))
end

-- An mpsc channel end (either side): its Chan, through the Arc.
local function mpsc_builder(t, side)
  local steps, ct = recipe(t, { "chan", "inner" }, ARC)
  return chan_builder(steps, ct, side)
end

-- A guard or permit: through the path (recipe's) to its lock, whose field
-- sem_field is the batch semaphore the lock's waiters queue on.
local function guard_builder(t, kind, sem_field, ...)
  local steps, lt = recipe(t, ...)
  return sem_builder(steps, kind, td.offset(lt, sem_field))
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
        local s, x = td.try(recipe, t, path)
        if s then steps, it = s, x; break end
      end
      if not steps then error(td.error("not_found", "no deadline in " .. type_path(t))) end
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
  { "^tokio::sync::mpsc::.*Receiver$", function(t) return mpsc_builder(t, "rx") end },
  { "^tokio::sync::mpsc::.*Sender$", function(t) return mpsc_builder(t, "tx") end },
  { "^tokio::sync::mutex::MutexGuard$", function(t)
      return guard_builder(t, "tokio::sync::Mutex", "s", { "lock", "*" }) end },
  { "^tokio::sync::mutex::OwnedMutexGuard$", function(t)
      return guard_builder(t, "tokio::sync::Mutex", "s", { "lock" }, ARC) end },
  { "^tokio::sync::rwlock::.*RwLock.*Guard$", function(t)
      return sem_builder(recipe(t, { "s", "*" }), "tokio::sync::RwLock") end },
  { "^tokio::sync::semaphore::SemaphorePermit$", function(t)
      return guard_builder(t, "tokio::sync::Semaphore", "ll_sem", { "sem", "*" }) end },
  { "^tokio::sync::semaphore::OwnedSemaphorePermit$", function(t)
      return guard_builder(t, "tokio::sync::Semaphore", "ll_sem", { "sem" }, ARC) end },
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
      if #sized == 1 and not td.try(td.pointee, t) then
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
          local off, dt = td.try(td.offset, t, "delay")
          if off then d = { off, td.id(dt) } end
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
    local f_off, ft = td.try(td.offset, t, "f")
    if f_off then
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

R.leaf_waits, R.resolve_chain, R.resolve = leaf_waits, resolve_chain, resolve

-- For each task waiting in a future that is a resource: what it waits on;
-- for each suspended state holding guards, permits, channel ends: what.
-- Per task only table lookups: what a chain awaits is worked out once per
-- chain table (tasks suspended at the same place share one), and the
-- resources of a BULK type are followed in one C call for all its tasks:
-- list.bulk = { { got = {[i] = reached address}, make = BULK make }, ... }.
-- While stopped, for one runtime's lists (td.await_chains' results):
-- list.timeouts, list.waits, list.bulk, and each chain's holds resolved.
local function follow_resources(lists)
  for _, list in ipairs(lists) do
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
R.follow_resources = follow_resources

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
-- now_ms: the target's monotonic clock at the stop (live only), for a
-- Sleep's time left.
function R.resource_record(res, backtrace, now_ms)
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

-- Before the stop, for each task future type (polls: tokio's poll
-- functions by address, each with its T): what the walk will ask of it
-- (C's per-type facts, the resolvers of the futures it awaits). A
-- service's first stop otherwise pays for its DWARF.
function R.prewarm(polls)
  local seen = {}
  for _, f in pairs(polls) do
    local leaves = td.try(td.prewarm, f.T, PREWARM_PREFIXES)
    for _, id in ipairs(leaves or EMPTY) do
      if not seen[id] then seen[id] = true; pcall(resolver_for, id) end
    end
  end
end

return R
