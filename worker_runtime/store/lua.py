"""Lua scripts of the Redis store, one named constant each, with their KEYS and ARGV documented.

Scripts run atomically inside Redis. Every script that writes checks first that the run's
``meta`` key exists: deleting ``meta`` is how a run ends or is cancelled, and no worker that is
still running can write after that.
"""

DELIVER = """
-- Store outputs and persisted values, mark fan-in edges, append an event batch.
-- KEYS[1]  run meta (must exist, else nothing is written and -1 is returned)
-- KEYS[2]  run outputs hash                KEYS[3]  run fan-in hash
-- KEYS[4]  run events stream               KEYS[5..] persisted data keys (ARGV[2] of them)
-- ARGV[1]  number of outputs               ARGV[2]  number of persisted values
-- ARGV[3]  TTL of persisted values in ms   ARGV[4]  number of marks
-- ARGV[5]  serialized event batch, or '' for none
-- then     outputs as (task id, value) pairs, persisted values in KEYS order,
--          marks as (task id, upstream id, number of inputs of the task) triples
-- Returns  -1 if the run is gone, else the task ids whose last input this call marked.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n_out, n_per = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, n_marks = tonumber(ARGV[3]), tonumber(ARGV[4])
local i = 6
for _ = 1, n_out do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = 1, n_per do
  redis.call('SET', KEYS[4 + j], ARGV[i], 'PX', ttl)
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
-- Queue invocations for a worker pool while their run is alive.
-- KEYS[1]  run meta       KEYS[2]  the pool's invocation list
-- ARGV     serialized invocations
-- Returns  -1 if the run is gone, else the queue length.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('RPUSH', KEYS[2], unpack(ARGV))
"""
