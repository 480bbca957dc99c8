"""Lua scripts of the Redis store, one named constant each, with their KEYS and ARGV documented.

Scripts run atomically inside Redis. Every script that writes for a worker checks first that the
run's ``meta`` hash exists and that its ``epoch`` is the writer's: deleting ``meta`` is how a run
ends or is cancelled, and bumping the epoch is how a run recovers (see ``daskless/recovery.py``).
Either way, no worker still running for what is gone can write after that: attempts are fenced.
"""

# Shared prologue: KEYS[1] is the run's meta hash, ARGV[1] the writer's epoch.
_FENCE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return -1 end
if epoch ~= ARGV[1] then return -2 end
"""

DELIVER = """
-- Commit outputs and persisted values, mark fan-in edges, append an event batch; optionally
-- claim an invocation first (a duplicate delivery of it then writes nothing).
-- KEYS[1]  run meta (must exist with the writer's epoch, else -1 / -2 and nothing is written)
-- KEYS[2]  run outputs hash     KEYS[3]  run fan-in hash    KEYS[4]  run events stream
-- KEYS[5]  run claims hash      KEYS[6]  run leases hash
-- KEYS[7..] persisted data keys (ARGV[7] of them)
-- ARGV[1]  the writer's epoch
-- ARGV[2]  invocation id to claim, or ''       ARGV[3]  the claiming worker
-- ARGV[4]  lease in ms for the claimed invocation (renewed by RENEW)
-- ARGV[5]  serialized event batch, or ''       ARGV[6]  number of outputs
-- ARGV[7]  number of persisted values          ARGV[8]  TTL of persisted values in ms
-- ARGV[9]  number of marks
-- then     outputs as (task id, value) pairs, persisted values in KEYS order,
--          marks as (task id, upstream id, number of inputs of the task) triples
-- Returns  -1 run gone, -2 stale epoch, -3 invocation already claimed,
--          else the task ids whose last input this call marked.
""" + _FENCE + """
if ARGV[2] ~= '' then
  if redis.call('HSETNX', KEYS[5], ARGV[2], ARGV[3]) == 0 then return -3 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[6], ARGV[2], (now + tonumber(ARGV[4])) .. ':-1')
end
local n_out, n_per = tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl, n_marks = tonumber(ARGV[8]), tonumber(ARGV[9])
local i = 10
for _ = 1, n_out do
  -- HSETNX: an output is committed once; a later attempt's value is discarded.
  redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = 1, n_per do
  redis.call('SET', KEYS[6 + j], ARGV[i], 'PX', ttl)
  i = i + 1
end
local completed = {}
for _ = 1, n_marks do
  local task, need = ARGV[i], tonumber(ARGV[i + 2])
  -- HSETNX makes a mark idempotent: a re-delivered edge is not counted again.
  if redis.call('HSETNX', KEYS[3], task .. ':' .. ARGV[i + 1], 1) == 1 then
    if redis.call('HINCRBY', KEYS[3], task, 1) == need then
      completed[#completed + 1] = tonumber(task)
    end
  end
  i = i + 3
end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[4], '*', 'e', ARGV[5]) end
return completed
"""

PUSH_INVOCATIONS = """
-- Queue invocations for a worker pool while their run is alive and at the writer's epoch.
-- KEYS[1]  run meta       KEYS[2]  the pool's invocation list
-- ARGV[1]  the writer's epoch, then the serialized invocations
-- Returns  -1 if the run is gone, -2 if the epoch moved on, else the queue length.
""" + _FENCE + """
return redis.call('RPUSH', KEYS[2], unpack(ARGV, 2))
"""

RENEW = """
-- Renew the leases of running invocations, each with the task it is running.
-- KEYS[1]  run meta       KEYS[2]  run leases hash
-- ARGV[1]  the writer's epoch       ARGV[2]  lease in ms
-- then     (invocation id, current task id or -1) pairs
-- Returns  -1 if the run is gone, -2 if the epoch moved on, else 1.
""" + _FENCE + """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], until_ms .. ':' .. ARGV[i + 1])
end
return 1
"""

LEASES = """
-- The leases of these invocations: the task each last reported, and whether it ran out by
-- the server's clock.
-- KEYS[1]  run leases hash       ARGV  invocation ids
-- Returns  a flat list of (invocation id, task id, 1 if lapsed else 0) for every lease held.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = {}
for _, inv in ipairs(ARGV) do
  local lease = redis.call('HGET', KEYS[1], inv)
  if lease then
    local colon = string.find(lease, ':', 1, true)
    found[#found + 1] = inv
    found[#found + 1] = string.sub(lease, colon + 1)
    found[#found + 1] = tonumber(string.sub(lease, 1, colon - 1)) < now and 1 or 0
  end
end
return found
"""

RECOVER = """
-- Start a new epoch of a run: fence every attempt of the old one, forget its fan-in marks,
-- claims and leases, drop outputs that died with their worker, store the new sub-DAGs.
-- KEYS[1]  run meta   KEYS[2]  spec   KEYS[3]  out   KEYS[4]  fan-in   KEYS[5]  events
-- KEYS[6]  claims     KEYS[7]  leases
-- ARGV[1]  the epoch the client recovers from    ARGV[2]  the new epoch
-- ARGV[3]  serialized event batch                ARGV[4]  number of sub-DAGs
-- then     (spec field, serialized sub-DAG) pairs, then the ids of lost outputs
-- Returns  -1 if the run is gone, -2 if the epoch already moved on, else 1.
-- Only the run's client recovers it, one epoch at a time: finding the new epoch already set
-- means that this very call ran before (the client resent it after a lost reply).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return -1 end
if epoch == ARGV[2] then return 1 end
if epoch ~= ARGV[1] then return -2 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
redis.call('DEL', KEYS[4], KEYS[6], KEYS[7])
for _, key in ipairs({KEYS[4], KEYS[6], KEYS[7]}) do
  redis.call('HSET', key, '_', '')
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
local n_specs = tonumber(ARGV[4])
local i = 5
for _ = 1, n_specs do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = i, #ARGV do redis.call('HDEL', KEYS[3], ARGV[j]) end
redis.call('XADD', KEYS[5], '*', 'e', ARGV[3])
return 1
"""
