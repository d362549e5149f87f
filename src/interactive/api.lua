-- The Lua half of the `taskdbg` table (docs/lua-api.md): what a session's
-- commands, `lua`, `source` and `taskdbg run` scripts use. The C half
-- (src/lua/session.c) gives snapshots, threads, the runtime plugin's model,
-- the detectors, JSON and dump; this file gives tasks, resources and the
-- history of snapshots. Compiled into taskdbg (src/interactive/embed.sh).
local T = taskdbg
local lib = {}

local EMPTY = {}

-- ---- snapshots and the history ----

-- The history: one summary per snapshot kept (at most target.keep), and per
-- task what it did at each snapshot where it changed.
local hist = {
  seq = 0,        -- snapshots taken
  snaps = {},     -- { {seq=, t=, stopped_ms=, tasks=, moved=}, ... } oldest first
  now = {},       -- task id -> { key=, since= (seq of its last change), log = { {seq=, t=, state=, at=}... } }
}
local cache = {}  -- per snapshot: threads, tasks, resources

-- Where a task is suspended, for a person: the innermost .await of its chain.
local function at_of(t)
  local bt = t.backtrace or EMPTY
  local last = bt[#bt]
  if not last then return "-" end
  -- the innermost level of the program's own code, else the innermost
  local own
  for i = #bt, 1, -1 do
    if bt[i].own then own = bt[i]; break end
  end
  local l = own or last
  return string.format("%s:%s", l.file or "?", l.line or 0)
end
lib.at_of = at_of

-- Whether a task moved between two snapshots: its state, any level of its
-- chain (state and line), the children of a join or select, or the deadline
-- of what it waits on differ.
local function key_of(t)
  local parts = { t.state or "?" }
  local function chain(bt)
    for _, l in ipairs(bt or EMPTY) do
      parts[#parts + 1] = (l.name or "?") .. "@" .. (l.state or "?") .. ":" .. (l.line or 0)
      for _, c in ipairs(l.children or EMPTY) do parts[#parts + 1] = "("; chain(c); parts[#parts + 1] = ")" end
    end
  end
  chain(t.backtrace)
  local w = t.waiting_on
  if type(w) == "table" and w.deadline_ms then parts[#parts + 1] = "d" .. tostring(w.deadline_ms) end
  if t.progress then parts[#parts + 1] = "p" .. tostring(t.progress) end
  return table.concat(parts, " ")
end

-- The records of every runtime's list `field` (tasks, block_on) in one list, each told its runtime's id.
local function records_of(model, field)
  local out = {}
  for _, rt in ipairs((model and model.runtimes) or EMPTY) do
    for _, r in ipairs(rt[field] or EMPTY) do
      r.runtime = rt.id
      out[#out + 1] = r
    end
  end
  return out
end
local function all_tasks(model) return records_of(model, "tasks") end

-- Called by C after each snapshot (td_lua_session_snapshot).
function lib._record()
  local target = T._target()
  local keep = target.keep or 60
  hist.seq = hist.seq + 1
  cache = {}
  local seq, t = hist.seq, T.time()
  local tasks = all_tasks(T._model())
  cache.tasks = tasks
  local now, moved = {}, 0
  for _, task in ipairs(tasks) do
    local key = key_of(task)
    local before = hist.now[task.id]
    local rec = before
    if not before or before.key ~= key then
      rec = { key = key, since = seq, log = before and before.log or {} }
      rec.log[#rec.log + 1] = { seq = seq, t = t, state = task.state, at = at_of(task) }
      if before then moved = moved + 1 end
    end
    rec.name = task.name
    rec.first = rec.first or seq
    -- the log keeps changes within the history only
    while #rec.log > 1 and rec.log[2].seq <= seq - keep do table.remove(rec.log, 1) end
    now[task.id] = rec
  end
  hist.now = now
  local snaps = hist.snaps
  snaps[#snaps + 1] = { seq = seq, t = t, stopped_ms = target.stopped_ms, tasks = #tasks, moved = moved }
  while #snaps > keep do table.remove(snaps, 1) end
  -- diagnose's samples: those of the snapshots kept (and of a window's sampling)
  local samples = T._samples()
  local horizon = (snaps[1].t - t) * 1000   -- ms, <= 0
  local cut = 0
  local newest = samples[#samples] and samples[#samples].t
  for i, s in ipairs(samples) do
    if newest and s.t - newest < horizon - 1 then cut = i else break end
  end
  if cut > 0 then
    local kept = {}
    for i = cut + 1, #samples do kept[#kept + 1] = samples[i] end
    T._set_samples(kept)
  end
end

--- taskdbg.snapshot() -> {seq, t, stopped_ms, tasks, moved}: the latest snapshot.
function T.snapshot()
  return hist.snaps[#hist.snaps]
end

--- taskdbg.target() -> {kind="live"|"core", pid, exe, comm, snapshots, interval_ms, keep, ...}
function T.target() return T._target() end

--- taskdbg.threads() -> the threads of the latest snapshot, as `bt --json` gives them.
function T.threads()
  if not cache.threads then
    local threads = T._threads()
    -- the task each worker polls, from the runtime's model
    local on = {}
    for _, t in ipairs(T.tasks()) do
      if type(t.running_on) == "number" then on[t.running_on] = t.id end
    end
    for _, th in ipairs(threads) do
      if on[th.tid] then th.task = on[th.tid] end
    end
    cache.threads = threads
  end
  return cache.threads
end

--- taskdbg.thread(tid) -> one THREAD of the latest snapshot, or nil.
function T.thread(tid)
  tid = tonumber(tid)
  for _, th in ipairs(T.threads()) do if th.tid == tid then return th end end
  return nil
end

--- taskdbg.frames(tid) -> the frames of a thread (innermost first, as `bt --json`), or nil, "no thread TID".
function T.frames(tid)
  local th = T.thread(tid)
  if not th then return nil, string.format("no thread %s", tostring(tid)) end
  return th.frames
end

--- taskdbg.runtimes() -> the runtime plugin's model: runtimes with their tasks (tasks --json's RUNTIME).
function T.runtimes()
  local m = T._model()
  return (m and m.runtimes) or {}
end

--- taskdbg.workers() -> every worker of every runtime (RUNTIME's worker_details records:
--- index, tid, task, tick, local_queue_depth, busy_ns, park_count, ... where known), each with .runtime.
function T.workers()
  return records_of(T._model(), "worker_details")
end

--- taskdbg.runtime_info() -> {name=, frames=, resources=, advice=}: what the plugin declares.
function T.runtime_info() return T._runtime() end

--- Why there are no tasks (no runtime found), or nil.
function T.no_runtime()
  local m = T._model()
  return m and m.none_found or nil
end

--- taskdbg.tasks() -> every task of every runtime (TASK objects, with .runtime).
function T.tasks()
  cache.tasks = cache.tasks or all_tasks(T._model())
  return cache.tasks
end

--- taskdbg.block_on() -> the futures threads of the program drive with block_on (BLOCK_ON objects, with .runtime).
function T.block_on()
  return records_of(T._model(), "block_on")
end

--- taskdbg.task(id) -> one TASK, or nil.
function T.task(id)
  id = tonumber(id)
  for _, t in ipairs(T.tasks()) do if t.id == id then return t end end
  return nil
end

--- taskdbg.await_point(task) -> "file:line" of the innermost .await of the program's own code.
T.await_point = at_of

--- taskdbg.display_name(task) -> what a person calls a task: the program's own async fn in it
--- (its `root`: a hyper connection's handler), else its future's name.
local function person_name(t)
  return type(t.root) == "string" and t.root or t.name
end
T.display_name = person_name

--- taskdbg.resources() -> locks, semaphores, channels, join handles: who holds, who waits.
-- { {key=, kind=, address=, info=, holders={ {task=id, name=, as=, type=} }, waiters={ {task=id, name=, at=} }, joins= }, ... }
function T.resources()
  if cache.resources then return cache.resources end
  local by_key, list = {}, {}
  local function get(r)
    if type(r) ~= "table" then return nil end
    local key = r.key or (r.kind and r.address and (r.kind .. "@" .. tostring(r.address)))
    if not key then return nil end
    local e = by_key[key]
    if not e then
      e = { key = key, kind = r.kind, address = r.address, holders = {}, waiters = {}, info = r }
      by_key[key] = e
      list[#list + 1] = e
    end
    return e
  end
  for _, t in ipairs(T.tasks()) do
    local w = get(t.waiting_on)
    if w then w.waiters[#w.waiters + 1] = { task = t.id, name = person_name(t), at = at_of(t) } end
    -- what the branches of a join/select wait on
    local function children(bt)
      for _, l in ipairs(bt or EMPTY) do
        for _, c in ipairs(l.children or EMPTY) do
          local last = c[#c]
          local cw = last and get(last.waiting_on)
          if cw and cw ~= w then cw.waiters[#cw.waiters + 1] = { task = t.id, name = person_name(t), at = at_of(t) } end
          children(c)
        end
      end
    end
    children(t.backtrace)
    for _, h in ipairs(t.holds or EMPTY) do
      local e = get(h.resource)
      if e then e.holders[#e.holders + 1] = { task = t.id, name = person_name(t), as = h.name, type = h.type } end
    end
    -- a JoinHandle awaited: the task joined is what it waits for
    if t.waiting_on and type(t.waiting_on.tasks) == "table" and w then
      w.joins = t.waiting_on.tasks
    end
  end
  table.sort(list, function(a, b)
    if (#a.waiters > 0) ~= (#b.waiters > 0) then return #a.waiters > 0 end
    return tostring(a.key) < tostring(b.key)
  end)
  cache.resources = list
  return list
end

--- taskdbg.history([task_id]) -> the snapshots kept, or one task's changes across them.
function T.history(id)
  if id == nil then return hist.snaps end
  local rec = hist.now[tonumber(id)]
  if not rec then return nil end
  return rec.log
end

--- taskdbg.stuck([n]) -> {[id]=true}: tasks that did not move across the last n
--- snapshots (default: the whole history; same state, same await points; needs two
--- snapshots or more), and the span those snapshots cover in seconds.
function T.stuck(n)
  if n ~= nil and (math.type(n) ~= "integer" or n < 2) then
    error(string.format("taskdbg.stuck: n is a number of snapshots, 2 or more (got %s)", tostring(n)), 2)
  end
  local snaps = hist.snaps
  local out = {}
  local count = n and math.min(n, #snaps) or #snaps
  if count < 2 or (n and #snaps < n) then return out, 0 end
  local from = snaps[#snaps - count + 1]
  local first = from.seq
  for id, rec in pairs(hist.now) do
    if rec.since <= first and rec.first <= first then out[id] = true end
  end
  return out, snaps[#snaps].t - from.t
end

--- taskdbg.unmoved(id) -> seconds since the task last changed (0 if it just did).
function T.unmoved(id)
  local rec = hist.now[tonumber(id)]
  if not rec then return nil end
  for _, s in ipairs(hist.snaps) do
    if s.seq == rec.since then return hist.snaps[#hist.snaps].t - s.t end
  end
  return hist.snaps[#hist.snaps].t - hist.snaps[1].t
end

-- ---- typed values ----

-- How a base type's bytes read (string.unpack formats), by DWARF name.
local BASE = {
  u8 = "<I1", u16 = "<I2", u32 = "<I4", u64 = "<I8", usize = "<I8",
  i8 = "<i1", i16 = "<i2", i32 = "<i4", i64 = "<i8", isize = "<i8",
  f32 = "<f", f64 = "<d", bool = "<I1", char = "<I4",
  ["unsigned char"] = "<I1", ["unsigned short"] = "<I2", ["unsigned int"] = "<I4",
  ["unsigned long"] = "<I8", ["long unsigned int"] = "<I8", ["short unsigned int"] = "<I2",
  ["signed char"] = "<i1", short = "<i2", int = "<i4", long = "<i8", ["long int"] = "<i8",
  ["long long int"] = "<i8", ["long long unsigned int"] = "<I8", float = "<f", double = "<d",
  _Bool = "<I1",
}

--- taskdbg.format_value(v [, depth]) -> text: a typed value as a person reads it
--- ({field: value, ...}, enums as Variant(...), pointers in hex), `depth` levels deep (default 4;
--- a struct of one field, as UnsafeCell or AtomicU32, costs none).
function T.format_value(v, depth)
  depth = depth or 4
  local function fmt(x, d)
    local name = td.type_name(x) or "?"
    local size = td.try(td.size, x)
    local base = BASE[name]
    if base and size and size <= 8 then
      local bytes = td.try(td.read_bytes, td.addr(x), size)
      if not bytes then return "<unreadable>" end
      local n = string.unpack(base, bytes)
      if name == "bool" or name == "_Bool" then return tostring(n ~= 0) end
      if name == "char" and n < 0x110000 then return string.format("'%s'", utf8.char(n)) end
      return tostring(n)
    end
    if td.is_enum(x) then
      local payload, variant = td.try(td.variant, x)
      if not payload then return name .. "::<unknown variant>" end
      local fields = td.fields(payload)
      if #fields == 0 or d <= 0 then return variant end
      return variant .. fmt(payload, d)
    end
    if name:find("^%*") or name:find("^&") then
      local p = td.try(td.pointer, x)
      return p and string.format("0x%x", p) or "<unreadable>"
    end
    local fields = td.fields(x)
    if #fields == 0 then
      if size and size <= 8 and size > 0 then
        local n = td.try(td.uint, x)
        return n and string.format("0x%x", n) or "<unreadable>"
      end
      return "{}"
    end
    -- a wrapper of one field (UnsafeCell, Atomic, Cell...) costs no depth
    local sized = {}
    for _, f in ipairs(fields) do if f.size ~= 0 and f.name ~= "<variants>" then sized[#sized + 1] = f end end
    if #sized == 1 then
      local ok, child = pcall(function() return x[sized[1].name] end)
      if ok and child then return "{" .. sized[1].name .. ": " .. fmt(child, d) .. "}" end
    end
    if d <= 0 then return "{...}" end
    local parts = {}
    for i, f in ipairs(fields) do
      if i > 24 then parts[#parts + 1] = "..."; break end
      if f.size ~= 0 and f.name ~= "<variants>" then
        local ok, child = pcall(function() return x[f.name] end)
        parts[#parts + 1] = f.name .. ": " .. (ok and child and fmt(child, d - 1) or "?")
      end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return fmt(v, depth)
end

--- taskdbg.diagnose{window=seconds, greedy_threshold_ms=, interval_ms=} -> findings (diagnose --json's FINDING).
-- On a live target, the history's samples serve when they cover the window;
-- otherwise the target is sampled for the window now (as `taskdbg diagnose`).
local DIAGNOSE_OPTIONS = { window = true, interval_ms = true, greedy_threshold_ms = true }

function T.diagnose(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("taskdbg.diagnose: options are a table: taskdbg.diagnose{window = 1}", 2)
  end
  opts = opts or {}
  for k, v in pairs(opts) do
    if not DIAGNOSE_OPTIONS[k] then
      error(string.format("taskdbg.diagnose: unknown option '%s' (window, interval_ms, greedy_threshold_ms)",
        tostring(k)), 2)
    end
    if type(v) ~= "number" or v ~= v or (k == "window" and v < 0) or (k ~= "window" and v <= 0) then
      error(string.format("taskdbg.diagnose: %s is a %s number (got %s)", k,
        k == "window" and "non-negative" or "positive", tostring(v)), 2)
    end
  end
  local target = T._target()
  local window_ms = (opts.window or 1) * 1000
  local interval_ms = opts.interval_ms or 25
  local live = target.kind == "live"
  local used = "snapshot"
  if live then
    local samples = T._samples()
    local span = #samples >= 2 and (samples[#samples].t - samples[1].t) or 0
    if span + 1 >= window_ms and target.age_ms < 2 * math.max(target.gap_ms or 0, target.interval_ms or 1000) + 100 then
      -- the history covers it: the samples of the window, and a fresh stop
      T.refresh()
      samples = T._samples()
      local newest = samples[#samples].t
      local kept = {}
      for _, s in ipairs(samples) do if newest - s.t <= window_ms + 1 then kept[#kept + 1] = s end end
      used = string.format("history (%d snapshots)", #kept)
      lib.last_diagnose_samples = kept
    else
      T._watch(window_ms, interval_ms)
      used = "sampled now"
    end
    cache = {}
  end
  local samples = T._samples()
  if lib.last_diagnose_samples then
    samples, lib.last_diagnose_samples = lib.last_diagnose_samples, nil
  elseif live and #samples > 0 then
    -- the window's samples only (the history may hold older ones)
    local newest, kept = samples[#samples].t, {}
    for _, s in ipairs(samples) do if newest - s.t <= window_ms + interval_ms then kept[#kept + 1] = s end end
    samples = kept
  end
  local options = {
    live = live, window_ms = live and window_ms or 0, interval_ms = interval_ms,
    greedy_threshold_ms = opts.greedy_threshold_ms or 100,
  }
  local result = T._diagnose(T._model(), samples, T.threads(), options)
  return result.findings or {}, used, #samples
end

--- taskdbg.write_json(path, value [, pretty]) -> true, or nil, message: value as JSON (taskdbg.json) into a file.
function T.write_json(path, value, pretty)
  if type(path) ~= "string" then
    error("taskdbg.write_json: the path is a string: taskdbg.write_json(path, value)", 2)
  end
  local text = T.json(value, pretty)
  local f, why = io.open(path, "w")
  if not f then return nil, why end
  local ok, werr = f:write(text, "\n")
  local closed, cerr = f:close()
  if not ok or not closed then return nil, string.format("%s: %s", path, werr or cerr) end
  return true
end

return lib
