-- The timeline entry with a message id, if the timeline still holds it.
-- KEYS[1] the timeline (sorted set scored by seq), KEYS[2] message id -> seq (hash);
-- ARGV[1] the message id. Returns the entry's member, or nil.

local seq = redis.call('HGET', KEYS[2], ARGV[1])
if not seq then
  return false
end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], seq, seq)
return members[1] or false
