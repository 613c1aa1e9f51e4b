-- Claims a firing for an owner with a lease, atomically: taken if absent or if the lease of
-- the claim there has passed; refused while a claim is live or once the firing is done.
-- KEYS[1] the firing's hash (fields state = claimed | done, owner, until).
-- ARGV[1] owner, ARGV[2] now (ms), ARGV[3] the claim's end (now + lease, ms),
-- ARGV[4] how long the key is kept (ms).
-- Returns {'claimed'}, {'held', owner} or {'done'}.

local current = redis.call('HMGET', KEYS[1], 'state', 'owner', 'until')
if current[1] == 'done' then
  return {'done'}
end
-- Lua numbers are doubles: millisecond times stay exact below 2^53.
if current[1] == 'claimed' and tonumber(current[3]) > tonumber(ARGV[2]) then
  return {'held', current[2]}
end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'claimed'}
