local key = KEYS[1]
local n = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local now
if ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local log = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local total = 0
local times, units = {}, {}
for i = 1, #log, 2 do
  local u = tonumber(string.match(log[i], '([^:]+)$')) or 0
  times[#times + 1] = tonumber(log[i + 1])
  units[#units + 1] = u
  total = total + u
end
local slack = limit * 1e-12
if total + n <= limit + slack then
  if ARGV[1] == 'acquire' then
    redis.call('ZADD', key, now, string.format('%.0f:%d:%s', now, #times, ARGV[2]))
    redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
  end
  return {1, 0}
end
local counted, due = total, now
for i = 1, #times do
  if counted + n <= limit + slack then break end
  counted = counted - units[i]
  if times[i] + window > due then due = times[i] + window end
end
return {0, due - now}
