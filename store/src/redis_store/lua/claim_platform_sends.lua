-- Takes the platform sends due now, oldest first, and hides each for a lease: a job that is
-- neither finished nor rescheduled when the lease ends is due again (its claimer died).
-- KEYS[1] the due sorted set, KEYS[2] the jobs hash; ARGV[1] now (ms), ARGV[2] lease (ms),
-- ARGV[3] most jobs. Returns the claimed jobs' JSON. A due id without a job (left by a
-- finish that failed half way) is dropped.

local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    claimed[#claimed + 1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
