-- Appends one message to a device's inbox, atomically.
-- KEYS[1] the device's meta hash, KEYS[2] its inbox (sorted set scored by seq),
-- KEYS[3] its collapse hash (collapse key -> latest seq),
-- KEYS[4] the idempotency marker, present only when the message carries a key.
-- ARGV[1] the inbox member without its leading seq (created_at, expires_at, content type,
--         payload; see codec.rs), ARGV[2] expires_at (ms), ARGV[3] max inbox length,
-- ARGV[4] the message's created_at (ms): the clock for telling an expired entry dropped by
--         the cap (not counted) from a pending one (counted), ARGV[5] marker TTL (ms),
-- ARGV[6] the message's collapse key, or empty: with one, the device's pending message
--         with the same key (if still in the inbox: not acked, not expired) is removed.
-- Returns {seq, duplicate (1 or 0), dropped}.

-- Lua numbers are doubles: seqs and millisecond times stay exact below 2^53.
local function be64(number)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = number % 256
    number = math.floor(number / 256)
  end
  return string.char(unpack(bytes))
end

-- expires_at sits at bytes 17..24 of a member, an i64 big-endian. Compared as a number, not
-- as a string: Lua compares strings with strcoll, which depends on the server's locale.
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

if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    return {tonumber(seen), 1, 0}
  end
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], seq, be64(seq) .. ARGV[1])

if ARGV[6] ~= '' then
  local older = redis.call('HGET', KEYS[3], ARGV[6])
  if older then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], older, older)
  end
  redis.call('HSET', KEYS[3], ARGV[6], seq)
end

local dropped = 0
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local now = tonumber(ARGV[4])
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    if expires_at(oldest[i]) > now then
      dropped = dropped + 1
    end
  end
end

-- The inbox lives until its last message expires: extend, never shorten. -1: no expiry set
-- yet (a new key); -2: the cap emptied it.
local expire_time = redis.call('PEXPIRETIME', KEYS[2])
if expire_time == -1 or (expire_time >= 0 and expire_time < tonumber(ARGV[2])) then
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
end
if ARGV[6] ~= '' then
  -- The collapse hash goes with the inbox: a seq in it outliving its message is harmless.
  local collapse_expire = redis.call('PEXPIRETIME', KEYS[3])
  if collapse_expire == -1 or (collapse_expire >= 0 and collapse_expire < tonumber(ARGV[2])) then
    redis.call('PEXPIREAT', KEYS[3], ARGV[2])
  end
end

if KEYS[4] then
  redis.call('SET', KEYS[4], seq, 'PX', ARGV[5])
end
return {seq, 0, dropped}
