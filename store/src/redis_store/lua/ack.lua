-- Cumulative ack of one device: drops inbox entries up to a seq and raises the acked and
-- delivered positions to it, never above the last seq given out, never lowering them.
-- KEYS[1] the device's meta hash, KEYS[2] its inbox; ARGV[1] the acked seq.

local function raise(field, target)
  local current = tonumber(redis.call('HGET', KEYS[1], field) or 0)
  if target > current then
    redis.call('HSET', KEYS[1], field, string.format('%d', target))
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or 0)
local target = math.min(tonumber(ARGV[1]), last)
raise('acked', target)
raise('delivered', target)
return 0
