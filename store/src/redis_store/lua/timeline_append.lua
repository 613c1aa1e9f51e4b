-- Appends one entry to an app's timeline, atomically.
-- KEYS[1] the timeline (sorted set scored by seq; member layout in codec.rs),
-- KEYS[2] the timeline's seq counter (never expires: devices keep positions in it),
-- KEYS[3] entry expiries (sorted set: seq (8 bytes) .. message id, scored by expires_at),
-- KEYS[4] message id -> seq (hash),
-- KEYS[5] the idempotency marker, present only when the entry carries a key.
-- ARGV[1] the member without its leading seq, ARGV[2] expires_at (ms), ARGV[3] max length,
-- ARGV[4] created_at (ms): the clock for dropping expired entries, ARGV[5] marker TTL (ms),
-- ARGV[6] the message id.
-- Returns {seq, duplicate (1 or 0), dropped}: dropped counts unexpired entries the cap
-- removed; expired entries are removed first and not counted.

-- Expired entries removed per append: bounds the work of one call; the rest go next time.
local EXPIRED_PER_APPEND = 1000

-- Lua numbers are doubles: seqs and millisecond times stay exact below 2^53.
local function be64(number)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = number % 256
    number = math.floor(number / 256)
  end
  return string.char(unpack(bytes))
end

local function read_be(text, from, count)
  local value = 0
  for i = from, from + count - 1 do
    value = value * 256 + string.byte(text, i)
  end
  return value
end

-- Same layout as the inbox for bytes 0..25 (expires_at at bytes 17..24, compared as a
-- number: Lua compares strings with strcoll, which depends on the server's locale).
local function expires_at(member)
  local value = read_be(member, 17, 8)
  if string.byte(member, 17) >= 128 then
    value = value - 18446744073709551616
  end
  return value
end

-- The message id sits after the 38-byte header; its length is at bytes 27..30.
local function message_id(member)
  return string.sub(member, 39, 38 + read_be(member, 27, 4))
end

-- Forgets the id -> seq mapping of a removed entry, unless the id now names another seq.
local function forget_id(id, seq)
  if tonumber(redis.call('HGET', KEYS[4], id)) == seq then
    redis.call('HDEL', KEYS[4], id)
  end
end

if KEYS[5] then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    return {tonumber(seen), 1, 0}
  end
end

local now = tonumber(ARGV[4])
local expired =
  redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[4], 'LIMIT', 0, EXPIRED_PER_APPEND)
for _, item in ipairs(expired) do
  local seq = read_be(item, 1, 8)
  local score = string.format('%d', seq)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], score, score)
  forget_id(string.sub(item, 9), seq)
end
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
end

local seq = redis.call('INCR', KEYS[2])
local id = ARGV[6]
redis.call('ZADD', KEYS[1], seq, be64(seq) .. ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], be64(seq) .. id)
redis.call('HSET', KEYS[4], id, string.format('%d', seq))

local dropped = 0
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[1], excess)
  for i = 1, #oldest, 2 do
    local member = oldest[i]
    local old_seq = read_be(member, 1, 8)
    local old_id = message_id(member)
    redis.call('ZREM', KEYS[3], be64(old_seq) .. old_id)
    forget_id(old_id, old_seq)
    if expires_at(member) > now then
      dropped = dropped + 1
    end
  end
end

-- The timeline lives until its last entry expires: extend, never shorten. -1: no expiry set
-- yet (a new key); -2: no such key (the cap emptied it).
for i = 1, 4 do
  if i ~= 2 then
    local expire_time = redis.call('PEXPIRETIME', KEYS[i])
    if expire_time == -1 or (expire_time >= 0 and expire_time < tonumber(ARGV[2])) then
      redis.call('PEXPIREAT', KEYS[i], ARGV[2])
    end
  end
end

if KEYS[5] then
  redis.call('SET', KEYS[5], seq, 'PX', ARGV[5])
end
return {seq, 0, dropped}
