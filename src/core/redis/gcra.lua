local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local mode = ARGV[1]
local budgets = (#ARGV - 3) / 2
-- After the budgets' keys: a Limiter's pause key and last-grant key (no
-- grant before either: a pause, and arrival order), then the key counting
-- reservations that wait (each is told its number, its ticket).
local extra = #KEYS - budgets
local pause_key, last_key, seq_key
if extra >= 2 then
  pause_key = KEYS[budgets + 1]
  last_key = KEYS[budgets + 2]
end
if extra == 1 or extra == 3 then seq_key = KEYS[#KEYS] end
local function store(key, tat)
  if tat <= now then
    redis.call('DEL', key)
  elseif ARGV[3] ~= '' then
    redis.call('SET', key, string.format('%.0f', tat))
  else
    -- The key lives until its bucket is full again: memory follows active keys.
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
end
if mode == 'pause' then
  local seconds = tonumber(ARGV[2])
  local until_ = now + seconds
  local old = tonumber(redis.call('GET', pause_key) or 0) or 0
  if until_ > old then store(pause_key, until_) else until_ = old end
  -- No herd (as Budgets::pause): each request budget (given the cost of one
  -- request) resumes empty at the pause's end, so grants leave one interval
  -- apart instead of a whole burst at one instant.
  if seconds > 0 then
    for i = 1, budgets do
      local cost = tonumber(ARGV[2 + 2 * i])
      if cost > 0 then
        local floor = until_ + tonumber(ARGV[3 + 2 * i]) - cost
        local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
        if floor > tat then store(KEYS[i], floor) end
      end
    end
  end
  return {0, 0}
end
local tats = {}
local due = now
local paused = 0
local last = 0
if pause_key then
  paused = tonumber(redis.call('GET', pause_key) or 0) or 0
  if paused > due then due = paused end
end
if last_key then
  last = tonumber(redis.call('GET', last_key) or 0) or 0
  if last > due then due = last end
end
for i = 1, budgets do
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  if tat < now then tat = now end
  tats[i] = tat
  local cost = tonumber(ARGV[2 + 2 * i])
  -- A budget this request does not use does not hold it back.
  if cost > 0 then
    local d = tat + cost - tonumber(ARGV[3 + 2 * i])
    if d > due then due = d end
  end
end
if mode == 'peek' then
  local reply = {due - now, tats[1] - now}
  for i = 1, budgets do reply[#reply + 1] = tats[i] - now end
  reply[#reply + 1] = math.max(paused - now, 0)
  return reply
end
if mode == 'adopt' then
  for i = 1, budgets do
    local floor = tonumber(ARGV[2 + 2 * i])
    if floor >= 0 and now + floor > tats[i] then store(KEYS[i], now + floor) end
  end
  return {0, 0}
end
if mode == 'refund' or mode == 'cancel' then
  -- A cancel (ARGV[2]: the ticket) of the latest reservation, nobody having
  -- reserved after it, is undone exactly: each state it moved, and has not
  -- moved since, goes back to what it was (the seq key holds that undo).
  local undo
  if mode == 'cancel' and seq_key and ARGV[2] ~= '0' then
    local fields = {}
    for f in string.gmatch(redis.call('GET', seq_key) or '', '[^:]+') do
      fields[#fields + 1] = f
    end
    if fields[1] == ARGV[2] and #fields == 3 + 2 * budgets then undo = fields end
  end
  if undo then
    if last_key and last == tonumber(undo[3]) then store(last_key, tonumber(undo[2])) end
    for i = 1, budgets do
      local prev, after = tonumber(undo[2 + 2 * i]), tonumber(undo[3 + 2 * i])
      if tats[i] == after then
        store(KEYS[i], prev)
        tats[i] = math.max(prev, now)
      end
    end
    redis.call('SET', seq_key, undo[1], 'KEEPTTL')
    return {0, tats[1] - now}
  end
  for i = 1, budgets do
    -- Otherwise a budget more than a full bucket ahead has reservations
    -- waiting, each already told its grant time: units given back now would
    -- let a newcomer in beside them. They are kept (the waiters cannot move
    -- up without a queue here); only a budget nobody waits on is refunded.
    if tats[i] <= now + tonumber(ARGV[3 + 2 * i]) then
      local tat = tats[i] - tonumber(ARGV[2 + 2 * i])
      if tat < now then tat = now end
      store(KEYS[i], tat)
      tats[i] = tat
    end
  end
  return {0, tats[1] - now}
end
local max_wait = tonumber(ARGV[2])
if max_wait >= 0 and due - now > max_wait then
  return {-1, due - now}
end
-- Every budget is charged at the common grant time `due`, not at now: a
-- budget charged early would count the grant before it happens, and grants
-- held back (by a pause or another budget) would then bunch up.
local before = {}
for i = 1, budgets do
  before[i] = tats[i]
  local cost = tonumber(ARGV[2 + 2 * i])
  if cost > 0 then
    if due > tats[i] then tats[i] = due end
    tats[i] = tats[i] + cost
    store(KEYS[i], tats[i])
  end
end
-- A grant at now holds nobody back: only a later one is remembered.
if last_key and due > now and due > last then store(last_key, due) end
local ticket = 0
if seq_key and due > now then
  -- The reservation waits: its ticket, and how to undo it while it is the
  -- latest ("ticket:last before:last after:tat before:tat after:...").
  local old = redis.call('GET', seq_key) or ''
  ticket = (tonumber(string.match(old, '^%d+')) or 0) + 1
  local undo = {tostring(ticket), string.format('%.0f', last),
    string.format('%.0f', math.max(due, last))}
  for i = 1, budgets do
    undo[#undo + 1] = string.format('%.0f', before[i])
    undo[#undo + 1] = string.format('%.0f', tats[i])
  end
  local value = table.concat(undo, ':')
  if ARGV[3] == '' then
    redis.call('SET', seq_key, value, 'PX', math.ceil((due - now) / 1000) + 1)
  else
    redis.call('SET', seq_key, value)
  end
end
return {due - now, tats[1] - now, ticket}
