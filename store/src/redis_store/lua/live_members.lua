-- Members whose leases are live, with their descriptions (the caller sorts them: Lua compares
-- strings with strcoll, which depends on the server's locale).
-- KEYS[1] leases (sorted set: member id scored by expiry ms), KEYS[2] descriptions (hash:
-- member id -> JSON). ARGV[1] now (ms), ARGV[2] leases that ended before it are removed.
-- Returns {id, json, id, json...} in expiry order.

local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('HDEL', KEYS[2], unpack(stale))
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
if #live == 0 then
  return {}
end
local descriptions = redis.call('HMGET', KEYS[2], unpack(live))
local answer = {}
for i, id in ipairs(live) do
  answer[#answer + 1] = id
  answer[#answer + 1] = descriptions[i]
end
return answer
