-- Extends an owner's claim on a firing, atomically: only while the firing is claimed by that
-- owner (not done, not taken over by another).
-- KEYS[1] the firing's hash (fields state = claimed | done, owner, until).
-- ARGV[1] owner, ARGV[2] the claim's new end (ms), ARGV[3] how long the key is kept (ms).
-- Returns 1 if the claim was extended, 0 if not.

local current = redis.call('HMGET', KEYS[1], 'state', 'owner')
if current[1] ~= 'claimed' or current[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
