-- Creates an operator, atomically with the set of operator names: only if the name is free.
-- KEYS[1] the operator's string, KEYS[2] the set of names. ARGV[1] the operator's JSON,
-- ARGV[2] its name. Returns 1 if created, 0 if the name is taken.

if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
