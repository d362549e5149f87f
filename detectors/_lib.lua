-- What every detector shares: an index of the model, how to read a stack,
-- how a finding is made, and run_detectors, which `taskdbg diagnose` calls.
--
-- A module (`local lib = require("_lib")`). A detector is a file of
-- detectors/ that returns { name = KIND, severity = N, run = function(ctx, ix) }:
-- run returns { FINDING, ... }; severity orders the findings (1 first).
-- ctx = { model = the runtime plugin's model (runtimes, tasks), samples = the
-- plugin's samples (live targets), threads = THREAD objects of docs/cli-contract.md with
-- frames, options = { live, window_ms, interval_ms, greedy_threshold_ms },
-- runtime = what the plugin declares (frames, resources, advice: docs/plugins.md) };
-- ix = the index built below. Detectors see the runtime-neutral model only:
-- no runtime is named here or in them. See docs/diagnose.md.

local lib = setmetatable({}, { __index = _ENV })
local _ENV = lib

local function array(t) return setmetatable(t or {}, { __array = true }) end
_ENV.array = array

function is_id(x) return math.type(x) == "integer" end

-- Tasks by id, threads by tid, the runtime of each task, the task each
-- thread polls; what the plugin declares (ix.frames, ix.classes, ix.advice).
function index_model(ctx)
  local declared = ctx.runtime or {}
  local ix = { tasks = {}, threads = {}, runtime_of = {}, polling = {}, runtimes = {},
               ntasks = 0, last_sample = ctx.samples[#ctx.samples],
               frames = declared.frames or {}, classes = declared.resources or {}, advice = declared.advice or {} }
  for _, rt in ipairs(ctx.model.runtimes or {}) do
    ix.runtimes[#ix.runtimes + 1] = rt
    for _, t in ipairs(rt.tasks or {}) do
      ix.tasks[t.id] = t
      ix.runtime_of[t.id] = rt
      ix.ntasks = ix.ntasks + 1
      if is_id(t.running_on) then ix.polling[t.running_on] = t end
    end
  end
  for _, th in ipairs(ctx.threads) do ix.threads[th.tid] = th end
  -- block_on's own futures, by the thread running them.
  ix.block_on = {}
  for _, rt in ipairs(ix.runtimes) do
    for _, b in ipairs(rt.block_on or {}) do ix.block_on[b.thread] = b end
  end
  ix.holders, ix.held = holders_by_key(ctx, ix)
  return ix
end

-- Who holds each resource key (a lock, a channel end): tasks whose suspended
-- state holds it, threads whose local variables do. Returns
-- { [key] = { {node = "task:ID" | "thread:TID", task = | thread =, side =,
-- name =, function = (a thread's variable)}, ... } } and the first holder's
-- record of each key.
function holders_by_key(ctx, ix)
  local by, held = {}, {}
  local function add(r, side, holder)
    held[r.key] = held[r.key] or r
    holder.side = side
    by[r.key] = by[r.key] or {}
    table.insert(by[r.key], holder)
    -- A receiver frees capacity on its channel's semaphore.
    if r.capacity_key and r.mode == "rx" then
      by[r.capacity_key] = by[r.capacity_key] or {}
      table.insert(by[r.capacity_key], { node = holder.node, task = holder.task,
                                          thread = holder.thread, side = "rx" })
    end
  end
  for _, t in pairs(ix.tasks) do
    if t.state ~= "complete" and t.state ~= "cancelled" then
      for _, h in ipairs(t.holds or {}) do
        local r = h.resource
        if r and r.key then add(r, r.mode, { node = "task:" .. t.id, task = t, resource = r }) end
      end
    end
  end
  -- Guards and channel ends in the local variables of threads' stack frames.
  for tid, list in pairs(ctx.thread_holds or {}) do
    for _, h in ipairs(list) do
      local r = h.resource
      if r and r.key and ix.threads[tid] then
        add(r, r.mode, { node = "thread:" .. tid, thread = tid, resource = r, name = h.name,
                         ["function"] = h["function"], block_on = h.block_on, at = h.at })
      end
    end
  end
  return by, held
end

strip_generics = td.strip_generics

-- A finding's task: its id and name, and the user's async fn in it where the
-- task's own future is not (a wrapper, a framework's connection).
function task_ref(t)
  return { id = t.id, name = t.name, root = type(t.root) == "string" and t.root ~= t.name and t.root or nil }
end

-- "task 4 `app::refund`", and where the task's own future is not the user's
-- code (a framework's connection, a wrapper), the user's async fn in it
-- first: "task 4 `app::handle` (in `hyper::...::NewSvcTask`)".
function task_label(t)
  if not t then return "a task" end
  -- A task spawned inside .instrument(span) says which span (and its fields).
  local span = ""
  if type(t.span) == "string" then
    span = string.format(" [span %s%s]", t.span, type(t.span_fields) == "string" and ("{" .. t.span_fields .. "}") or "")
  end
  if type(t.root) == "string" and t.root ~= t.name then
    return string.format("task %d `%s` (in `%s`)%s", t.id, t.root, t.name, span)
  end
  return string.format("task %d `%s`%s", t.id, t.name, span)
end

function thread_label(th)
  if not th then return "a thread" end
  return string.format("thread %d%s", th.tid, th.name and (" (" .. th.name .. ")") or "")
end

-- "src/main.rs:12" of a source location table, or nil.
function at(loc)
  if loc and type(loc.file) == "string" then
    return string.format("%s:%s", loc.file, tostring(loc.line))
  end
  return nil
end

-- The innermost .await of a task: where it is suspended.
function innermost(t)
  local bt = t and t.backtrace
  return bt and bt[#bt] or nil
end

-- The innermost .await in the user's own code (not in tokio's or std's):
-- where a person would look. Falls back to the innermost.
function user_await(t)
  local bt = t and t.backtrace or {}
  for i = #bt, 1, -1 do
    if bt[i].own then return bt[i] end
  end
  return bt[#bt]
end

-- What an .await waits for, in words: the future's type, or for a level
-- whose future polls several (select!, join!, FuturesUnordered) how many and
-- where each child chain ends ("any of 2 branches: 2 x my::FlagSet").
function awaiting_text(aw)
  if type(aw.children) == "table" and #aw.children > 0 then
    local counts, order = {}, {}
    for _, child in ipairs(aw.children) do
      local last = child[#child]
      local what = last and (type(last.awaiting) == "string" and last.awaiting or last.name) or "?"
      what = strip_generics(what)
      if not counts[what] then order[#order + 1] = what end
      counts[what] = (counts[what] or 0) + 1
    end
    local parts = {}
    for _, what in ipairs(order) do parts[#parts + 1] = string.format("%d x %s", counts[what], what) end
    local n = math.tointeger(aw.branches) or #aw.children
    return string.format("%s of %d branch%s: %s%s", aw.wait == "all" and "all" or "any", n, n == 1 and "" or "es",
      table.concat(parts, ", "), n > #aw.children and string.format(", and %d more", n - #aw.children) or "")
  end
  return type(aw.awaiting) == "string" and strip_generics(aw.awaiting) or nil
end

-- One line per .await of a task, outermost first.
function chain_lines(t, indent)
  local out = {}
  for _, aw in ipairs(t.backtrace or {}) do
    local line = string.format("%s%s at %s", indent or "  ", aw.name, at(aw) or "?")
    local what = awaiting_text(aw)
    if what then line = line .. " awaiting " .. what end
    out[#out + 1] = line
  end
  return out
end

-- Frames of code that is not the user's: the standard library, the runtime,
-- every dependency, libc. taskdbg tells them by where their source lives
-- (a frame's `own`, from cargo's and rustc's layout: debuginfo/source.h),
-- not by a list of crate names.
function is_library_frame(f)
  return f.own ~= true
end

local function fn_of(f) return type(f["function"]) == "string" and f["function"] or "?" end
_ENV.fn_of = fn_of

-- The class of a resource record (waiting_on, holds[i].resource): "mutex",
-- "channel", "timer", ... as the plugin declares its kinds, or the record's own.
function class_of(ix, r)
  return r and (r.class or ix.classes[r.kind]) or nil
end

-- The kind (display name) the plugin gives a class, or fallback.
function kind_of_class(ix, class, fallback)
  for kind, c in pairs(ix.classes) do
    if c == class then return kind end
  end
  return fallback
end

-- The runtime's own way to do `what` (ix.advice: "sleep", "mutex", ...), or fallback.
function advice(ix, what, fallback)
  local a = ix.advice[what]
  return type(a) == "string" and a or fallback
end

-- A function name without < and >: "a::B::f" and the v0 "<a::B>::f" alike.
local plain_cache = {}   -- per distinct function name: a few thousand strings at most
local function plain(s)
  local p = plain_cache[s]
  if not p then p = s:gsub("[<>]", ""); plain_cache[s] = p end
  return p
end

-- The index of a thread's first (innermost) frame in one of the plugin's
-- declared frame lists (ix.frames[role]: function-name beginnings), or nil.
function runtime_frame(ix, th, role)
  local list = ix.frames[role]
  if not list then return nil end
  for i, f in ipairs(th.frames or {}) do
    local fn = plain(fn_of(f))
    for _, p in ipairs(list) do
      p = plain(p)
      if fn:sub(1, #p) == p then return i end
    end
  end
  return nil
end

-- Whether a name begins with one of the plugin's declared names of a role.
function declared_name(ix, role, name)
  if type(name) ~= "string" then return false end
  for _, p in ipairs(ix.frames[role] or {}) do
    if name:sub(1, #p) == p then return true end
  end
  return false
end

-- The index of a thread's first (innermost) frame whose function matches
-- one of the Lua patterns, or nil.
function frame_index(th, patterns)
  for i, f in ipairs(th.frames or {}) do
    local fn = fn_of(f)
    for _, p in ipairs(patterns) do
      if fn:find(p) then return i end
    end
  end
  return nil
end

-- Where a thread entered the code that polls: the frame index of a task's
-- poll (the plugin's frames.poll) or of block_on, whichever is innermost.
function poll_entry(ix, th)
  local task = runtime_frame(ix, th, "poll")
  for i, f in ipairs(th.frames or {}) do
    if task and i >= task then return task, "task" end
    if fn_of(f):find("block_on") then return i, "block_on" end
  end
  return task, task and "task" or nil
end

-- The innermost frame of the user's own code, with the library call it made
-- (the outermost library frame inside it): for "blocked in std::thread::sleep
-- called at src/main.rs:30". limit: only frames before this index count.
function user_call(th, limit)
  local frames = th.frames or {}
  for i, f in ipairs(frames) do
    if limit and i >= limit then return nil end
    if not is_library_frame(f) then
      local api = nil
      for j = i - 1, 1, -1 do
        if type(frames[j]["function"]) == "string" then api = frames[j]; break end
      end
      return f, api, i
    end
  end
  return nil
end

function short_fn(name)
  return strip_generics(name or "?")
end

-- Where a thread holds a resource (an entry of ctx.thread_holds): "`guard` in move_stock".
function holder_where(h)
  if h.block_on then
    return string.format("`%s` in %s, in its block_on future suspended at %s", h.name or "?",
      short_fn(h["function"]), h.at or "?")
  end
  return string.format("`%s` in %s", h.name or "?", short_fn(h["function"]))
end

-- A finding as docs/cli-contract.md defines it (extra key: fix).
function finding(kind, summary, f)
  return {
    kind = kind, summary = summary,
    tasks = array(f.tasks), threads = array(f.threads), resources = array(f.resources),
    evidence = array(f.evidence), fix = f.fix,
  }
end

-- Runs every detector ({name, severity, run}, by name) on ctx and merges
-- what they find, most severe first.
function run_detectors(ctx, detectors)
  local ix = index_model(ctx)
  local list, severity = {}, {}
  for _, d in ipairs(detectors) do list[#list + 1] = d; severity[d.name] = d.severity end
  table.sort(list, function(a, b) return a.name < b.name end)
  local all = {}
  for _, d in ipairs(list) do
    for _, f in ipairs(d.run(ctx, ix) or {}) do
      f.order = #all
      all[#all + 1] = f
    end
  end
  -- A finding that is only a consequence (f.explained_by = a kind) keeps
  -- just the tasks no finding of that kind names; with none left, it goes.
  local named = {}
  for _, f in ipairs(all) do
    for _, t in ipairs(f.tasks) do named[f.kind .. ":" .. t.id] = true end
  end
  local kept = {}
  for _, f in ipairs(all) do
    if f.explained_by then
      local tasks = {}
      for _, t in ipairs(f.tasks) do
        if not named[f.explained_by .. ":" .. t.id] then tasks[#tasks + 1] = t end
      end
      if #tasks > 0 and #tasks < #f.tasks and f.retell then f = f.retell(tasks) end
      if #tasks == 0 then f = nil end
    end
    if f then f.explained_by, f.retell = nil, nil; kept[#kept + 1] = f end
  end
  all = kept
  table.sort(all, function(a, b)
    local sa, sb = severity[a.kind] or 99, severity[b.kind] or 99
    if sa ~= sb then return sa < sb end
    return a.order < b.order
  end)
  for _, f in ipairs(all) do f.order = nil end
  return { findings = array(all), tasks = ix.ntasks, runtimes = #ix.runtimes }
end

return lib
