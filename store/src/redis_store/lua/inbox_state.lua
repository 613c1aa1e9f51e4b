-- Positions and pending count of one device's inbox.
-- KEYS[1] the device's meta hash, KEYS[2] its inbox; ARGV[1] now (ms).
-- Returns {last_seq, delivered_up_to, acked_up_to, pending}.

-- Same decoding as in append.lua: expires_at at bytes 17..24, compared as a number.
local function expires_at(member)
  local value = 0
  for i = 17, 24 do
    value = value * 256 + string.byte(member, i)
  end
  if string.byte(member, 17) >= 128 then
    value = value - 18446744073709551616
  end
  return value
end

local positions = redis.call('HMGET', KEYS[1], 'seq', 'delivered', 'acked')
local now = tonumber(ARGV[1])
local pending = 0
-- Linear in the inbox length, which the cap bounds.
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if expires_at(member) > now then
    pending = pending + 1
  end
end
return {
  tonumber(positions[1] or 0),
  tonumber(positions[2] or 0),
  tonumber(positions[3] or 0),
  pending,
}
