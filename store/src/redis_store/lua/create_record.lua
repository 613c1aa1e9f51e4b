-- Creates a hash only if its key does not exist yet.
-- KEYS[1] the record's key; ARGV field, value, field, value... Returns 1 if created.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
