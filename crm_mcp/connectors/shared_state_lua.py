"""The Lua scripts behind the Redis-shared rate limiter and circuit breaker.

Each script is one decision and its effect, run atomically on the Redis server (see
`crm_mcp.connectors.shared_state` for why); they mirror the in-memory logic of `ratelimit.py` and
`breaker.py`. `SCRIPTS` maps the names `RedisStore.run` takes to the script text.
"""

from __future__ import annotations

_LUA_COMMON = """
local function now_s(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function hash(key)
  local raw = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end
local function num(v, default) if v == nil or v == '' then return default end return tonumber(v) end
"""

# KEYS: log (zset member -> send/receipt time), state (hash). ARGV: now, member, default limit,
# default interval, ttl of the log, ttl of the state, seconds after a spent daily budget with no
# reset epoch was seen until one request looks again. Returns {1, now} (slot taken) or {0, wait}.
_TAKE = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local limit = num(h.limit, tonumber(ARGV[3]))
local interval = num(h.interval_s, tonumber(ARGV[4]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - interval))
local daily = num(h.daily_remaining, nil)
local unannounced_reset = num(h.daily_seen, now) + tonumber(ARGV[7])
if daily ~= nil then
  local reset = num(h.daily_reset_epoch, unannounced_reset)
  if now >= reset then
    redis.call('HDEL', KEYS[2], 'daily_remaining', 'daily_reset_epoch')
    daily = nil
  end
end
local slot = math.max(now, num(h.blocked_until, 0))
local cap = math.max(1, limit)
local n = redis.call('ZCARD', KEYS[1])
if n >= cap then
  local oldest = redis.call('ZRANGE', KEYS[1], n - cap, n - cap, 'WITHSCORES')
  slot = math.max(slot, tonumber(oldest[2]) + interval)
end
local server_at = num(h.server_at, nil)
if server_at ~= nil and now < server_at + interval then
  local window_end = server_at + interval
  local sent = num(h.sent_since_obs, 0)
  local server_left = num(h.server_remaining, 0) - sent
  if server_left < num(h.own_left_at_obs, 0) - sent then
    local margin = math.min(math.max(1, math.ceil(limit * 0.05)), math.max(limit - 1, 0))
    local budget = server_left - margin
    if budget <= 0 then
      slot = math.max(slot, window_end)
    elseif server_left <= math.max(2, math.floor(limit / 4)) then
      slot = math.max(slot, num(h.last_send, 0) + (window_end - now) / (budget + 1))
    end
  end
end
if daily ~= nil and daily <= 0 then
  local reset = num(h.daily_reset_epoch, nil)
  if reset == nil or reset <= now then reset = math.max(now, unannounced_reset) end
  slot = math.max(slot, reset)
end
if slot > now then return {0, fmt(slot - now)} end
redis.call('ZADD', KEYS[1], fmt(now), ARGV[2])
redis.call('HSET', KEYS[2], 'last_send', fmt(now))
redis.call('HINCRBY', KEYS[2], 'sent_since_obs', 1)
if daily ~= nil then redis.call('HINCRBY', KEYS[2], 'daily_remaining', -1) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {1, fmt(now)}
"""
)

# ARGV: now, answered member ('' = none), limit, interval_ms, remaining, daily limit,
# daily remaining, daily reset epoch ('' = not sent), default limit, default interval, ttls.
_OBSERVE = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], fmt(now), ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'limit', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'interval_s', fmt(tonumber(ARGV[4]) / 1000)) end
local h = hash(KEYS[2])
local limit = num(h.limit, tonumber(ARGV[9]))
local interval = num(h.interval_s, tonumber(ARGV[10]))
if ARGV[5] ~= '' then
  local remaining = tonumber(ARGV[5])
  local server_at = num(h.server_at, nil)
  local fresh = server_at ~= nil and now < server_at + interval
  local left = num(h.server_remaining, 0) - num(h.sent_since_obs, 0)
  if (not fresh) or remaining < left then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - interval))
    local own_left = limit - redis.call('ZCARD', KEYS[1])
    redis.call('HSET', KEYS[2], 'server_at', fmt(now), 'server_remaining', remaining,
      'sent_since_obs', 0, 'own_left_at_obs', own_left)
  end
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'daily_limit', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'daily_remaining', ARGV[7], 'daily_seen', fmt(now)) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'daily_reset_epoch', ARGV[8]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[11]) end
redis.call('EXPIRE', KEYS[2], ARGV[12])
return 1
"""
)

# ARGV: now, retry_after ('' = none), default interval, ttl of the state.
_NOTE_429 = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local blocked = num(h.blocked_until, 0)
local retry_after = num(ARGV[2], nil)
if retry_after ~= nil then redis.call('HDEL', KEYS[2], 'server_at') end
if now < blocked then
  if retry_after ~= nil then blocked = math.max(blocked, now + retry_after) end
else
  blocked = math.max(blocked, now + (retry_after or num(h.interval_s, tonumber(ARGV[3]))))
end
redis.call('HSET', KEYS[2], 'blocked_until', fmt(blocked))
redis.call('EXPIRE', KEYS[2], ARGV[4])
return fmt(blocked - now)
"""
)

# KEYS: log, state. ARGV: now, default limit, default interval.
_RL_VIEW = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local interval = num(h.interval_s, tonumber(ARGV[3]))
local server_left = ''
local server_at = num(h.server_at, nil)
if server_at ~= nil and now < server_at + interval then
  server_left = tostring(math.max(0, num(h.server_remaining, 0) - num(h.sent_since_obs, 0)))
end
return {tostring(num(h.limit, tonumber(ARGV[2]))), fmt(interval),
  redis.call('ZCOUNT', KEYS[1], '(' .. fmt(now - interval), '+inf'), server_left,
  h.daily_limit or '', h.daily_remaining or '', fmt(math.max(0, num(h.blocked_until, 0) - now))}
"""
)

# Breaker. KEYS: calls (zset), failures (zset), state (hash).
_CB_COMMON = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[3])
local state = h.state or 'closed'
if state == 'open' and now >= num(h.open_until, 0) then
  state = 'half_open'
  redis.call('HSET', KEYS[3], 'state', state)
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
  h.probe_started = nil
end
local function view(verdict)
  local open_for = 0
  if state == 'open' then open_for = math.max(0, num(h.open_until, 0) - now) end
  return {verdict, state, fmt(open_for), fmt(num(h.open_until, 0)),
    redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]),
    num(h.trips, 0), num(h.consecutive_trips, 0)}
end
"""
)

# ARGV: now, probe timeout, owner token, ttl. verdict: 1 = allowed, 2 = allowed as the probe, 0 = no.
_CB_ADMIT = (
    _CB_COMMON
    + """
if state == 'closed' then return view(1) end
if state == 'open' then return view(0) end
local started = num(h.probe_started, nil)
if started == nil or now - started >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[3], 'probe_started', fmt(now), 'probe_owner', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return view(2)
end
return view(0)
"""
)

# ARGV: now, failed (0/1), member, window, min calls, threshold, base open, max open, ttl.
_CB_RECORD = (
    _CB_COMMON
    + """
local failed = ARGV[2] == '1'
local function trip()
  local n = num(h.consecutive_trips, 0) + 1
  local open_for = math.min(tonumber(ARGV[8]), tonumber(ARGV[7]) * 2 ^ (n - 1))
  state = 'open'
  h.open_until = fmt(now + open_for)
  h.consecutive_trips = n
  h.trips = num(h.trips, 0) + 1
  redis.call('HSET', KEYS[3], 'state', state, 'open_until', h.open_until,
    'consecutive_trips', n, 'trips', h.trips)
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
  redis.call('DEL', KEYS[1], KEYS[2])
end
if state == 'half_open' then
  if failed then
    trip()
  else
    state = 'closed'
    h.consecutive_trips = 0
    redis.call('HSET', KEYS[3], 'state', state, 'consecutive_trips', 0)
    redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
    redis.call('DEL', KEYS[1], KEYS[2])
  end
elseif not (state == 'open' and failed) then
  redis.call('ZADD', KEYS[1], fmt(now), ARGV[3])
  if failed then redis.call('ZADD', KEYS[2], fmt(now), ARGV[3]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[4])))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - tonumber(ARGV[4])))
  if failed and state == 'closed' then
    local calls = redis.call('ZCARD', KEYS[1])
    if calls >= tonumber(ARGV[5]) and redis.call('ZCARD', KEYS[2]) / calls >= tonumber(ARGV[6]) then
      trip()
    end
  end
end
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[9]) end
end
return view(1)
"""
)

# ARGV: now, owner token. Frees the probe slot if this owner holds it.
_CB_CANCEL = (
    _CB_COMMON
    + """
if state == 'half_open' and h.probe_owner == ARGV[2] then
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
end
return view(1)
"""
)

# ARGV: now, window. Read-only apart from the due open -> half_open transition.
_CB_VIEW = (
    _CB_COMMON
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[2])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - tonumber(ARGV[2])))
return view(1)
"""
)

SCRIPTS = {
    "take": _TAKE,
    "observe": _OBSERVE,
    "note_429": _NOTE_429,
    "rl_view": _RL_VIEW,
    "cb_admit": _CB_ADMIT,
    "cb_record": _CB_RECORD,
    "cb_cancel": _CB_CANCEL,
    "cb_view": _CB_VIEW,
}
