-- Sockets and pipes a future waits on: tokio's PollEvented (its fd, the
-- ScheduledIo whose reader and writer wakers say the direction), the peer
-- and local addresses beside it, and the socket of a readiness future found
-- from the levels of its chain. It owns one cache of DWARF facts, valid for
-- the whole run: each PollEvented type's offsets (socket_layout).

local U = require("tokio.util")
local peel, recipe, has_field, fmt, ARC = U.peel, U.recipe, U.has_field, U.fmt, U.ARC

local K = {}

-- Sockets and pipes. tokio registers every one as a PollEvented { io:
-- Option<E>, registration: Registration { shared: ScheduledIo } }: E (a mio
-- socket or pipe) leads to its fd; the ScheduledIo keeps the waker of the
-- task waiting to read (reader) and to write (writer). A future that holds or
-- borrows one (a hyper connection, AddrIncoming's listener, a read future's
-- &mut TcpStream) waits on it; struct fields beside it on the way down named
-- like addresses (hyper's AddrStream.remote_addr, AddrIncoming.addr) give the
-- peer or local address.
local POLL_EVENTED = "tokio::io::poll_evented::PollEvented<"
local ADDRESS_FIELDS = { remote_addr = "peer", peer_addr = "peer", peer = "peer",
                         local_addr = "local", addr = "local" }
K.POLL_EVENTED = POLL_EVENTED

-- Offset of the first 4-byte field called name, depth first through struct
-- fields (mio's TcpStream -> IoSource -> std's TcpStream -> ... -> OwnedFd.fd;
-- std's Child -> Process.pid).
local function int_field_offset(t, name, depth)
  depth = depth or 0
  for _, f in ipairs(td.fields(t)) do
    local off, ft = td.try(td.offset, t, f.name)
    if off and f.type ~= "*" and not (f.type or ""):find("^[&*]") and not td.try(td.pointee, ft) then
      if f.name == name and f.size == 4 then return off end
      if depth < 10 then
        local o = int_field_offset(ft, name, depth + 1)
        if o then return off + o end
      end
    end
  end
  return nil
end

-- "127.0.0.1:8080" from a SocketAddr value (core::net's V4/V6 { ip: { octets },
-- port }; Rust 1.63's std::net wraps libc's sockaddr_in/sockaddr_in6 instead:
-- { inner: { sin_port, sin_addr } }, in network byte order).
local function socket_addr_text(v)
  local payload, variant = td.variant(v)
  local a = payload.__0
  local b, port = {}, nil
  if td.has(a, "inner") then
    local sa = a.inner
    local bytes = variant == "V4" and td.read_bytes(td.addr(sa.sin_addr), 4)
                  or td.read_bytes(td.addr(sa.sin6_addr), 16)
    for i = 1, #bytes do b[i] = bytes:byte(i) end
    local p = td.read_bytes(td.addr(variant == "V4" and sa.sin_port or sa.sin6_port), 2)
    port = p:byte(1) * 256 + p:byte(2)
  else
    local o = a.ip.octets
    for i = 0, (variant == "V4" and 3 or 15) do b[#b + 1] = td.uint(o[i]) end
    port = td.uint(a.port)
  end
  if variant == "V4" then return string.format("%d.%d.%d.%d:%d", b[1], b[2], b[3], b[4], port) end
  local words = {}
  for i = 1, 16, 2 do words[#words + 1] = string.format("%x", b[i] * 256 + b[i + 1]) end
  return string.format("[%s]:%d", table.concat(words, ":"), port)
end

local function addr_text(v)
  return (td.try(socket_addr_text, v))
end

local socket_facts = {}   -- PollEvented type id -> { fd =, shared = steps, reader =, writer =, vtable = }
local function socket_layout(pe)
  pe = td.type_of(pe)
  local id = td.id(pe)
  local f = socket_facts[id]
  if f ~= nil then return f end
  f = false
  local ok = pcall(function()
    local _, io_t = td.offset(pe, "io")
    local e = td.template(io_t, "T") or error(td.error("not_found", "no T in " .. tostring(td.type_name(io_t))))
    local io_off = td.offset(pe, "io") + (int_field_offset(e, "fd") or error(td.error("not_found", "no fd field")))
    -- The ScheduledIo: a slab::Ref's Value (tokio < 1.35), else an Arc.
    local shared, sio
    for _, path in ipairs({ { { "registration", "shared", "value", "*", "value" } },
                            { { "registration", "shared" }, ARC } }) do
      local steps, t = td.try(recipe, pe, table.unpack(path))
      if steps and has_field(t, "waiters") then shared, sio = steps, t; break end
    end
    local wo, wt = td.offset(sio or error(td.error("not_found", "no ScheduledIo")), "waiters")
    -- Mutex<Waiters>: through the lock's wrappers to the data.
    local waiters = peel(td.value(wt, 0))
    local base = wo + td.addr(waiters)
    waiters = td.type_of(waiters)
    local ro, opt = td.offset(waiters, "reader")
    local wr = td.offset(waiters, "writer")
    -- Option<Waker>: None is a null vtable pointer (the niche).
    local waker = td.template(opt, "T") or error(td.error("not_found", "no T in " .. tostring(td.type_name(opt))))
    local vo = 0
    for _ = 1, 4 do
      if has_field(waker, "vtable") then vo = vo + td.offset(waker, "vtable"); break end
      local name = td.fields(waker)[1].name
      local o, ft = td.offset(waker, name)
      vo, waker = vo + o, ft
    end
    f = { fd = io_off, shared = shared, reader = base + ro + vo, writer = base + wr + vo }
  end)
  if not ok then f = false end
  socket_facts[id] = f
  return f
end

-- What a future found to hold or borrow a socket waits on, or nil
-- (past_async: t is an async fn's state, searched for what it borrows).
local function socket_resource(t, addr, past_async)
  local pe, path = td.find_inside(td.value(t, addr), POLL_EVENTED, past_async)
  if not pe then return nil end
  local lay = socket_layout(pe)
  if not lay then return nil end
  local a = td.addr(pe)
  local sio = td.follow(a, lay.shared)
  local res = { kind = "socket", fd = td.try_read(a + lay.fd, 4), address = sio or a,
                key = sio and fmt("io", sio) or nil }
  if sio then
    local r, w = td.try_read(sio + lay.reader), td.try_read(sio + lay.writer)
    res.direction = (r and r ~= 0) and ((w and w ~= 0) and "read+write" or "read")
                    or ((w and w ~= 0) and "write" or nil)
  end
  -- Address fields beside the way down, innermost first.
  for i = #path, 1, -1 do
    local v = path[i]
    for _, fl in ipairs(td.fields(v)) do
      local which = ADDRESS_FIELDS[fl.name]
      if which and not res[which] and (fl.type or ""):find("SocketAddr$") then
        res[which] = addr_text(v[fl.name])
      end
    end
  end
  return res
end

-- A readiness future's socket: the innermost level of its (per-task)
-- chain that holds or borrows one (TcpListener::accept's &self).
local function socket_of_levels(chain, res)
  for k = #chain, 1, -1 do
    local level = chain[k]
    local found = level.addr and socket_resource(td.type_by_id(level.type), level.addr, true)
    if found then
      res.fd, res.peer, res["local"] = found.fd, found.peer, found["local"]
      break
    end
  end
  res.via_levels = nil
end

K.int_field_offset = int_field_offset
K.socket_resource = socket_resource
K.socket_of_levels = socket_of_levels

return K
