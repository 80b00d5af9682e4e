"""Lua scripts that change BullMQ state atomically, in BullMQ's own key layout.

Why Lua: Redis runs a script as one command, so a job is never in two states or none, and a
process killed mid-move leaves every job either moved or untouched (nothing lost). Writes happen
only after the job key is checked to be a job hash, because Redis does not roll a script back
when a later command errors.

* :data:`QUARANTINE` does what BullMQ's own ``job.moveToFailed(err)`` does (remove from its state,
  ``failedReason`` and ``finishedOn`` set, added to ``failed``, a ``failed`` event), for the named
  ids only, from wait/paused/prioritized/delayed or (a wedged job) active, dropping its lock so the
  worker that holds it can no longer complete it. The job keeps its data; ``rbQuarantined`` marks
  it so a later redrive never re-injects it.
* :data:`REDRIVE` is BullMQ's ``moveJobsToWait`` (``queue.retryJobs``) for the oldest ``count``
  failed jobs, skipping quarantined ones.
"""

from __future__ import annotations

QUARANTINE = """
local base = KEYS[1]
local ts = ARGV[1]
local reason = ARGV[2]
local allowActive = ARGV[3] == "1"
local rcall = redis.call
local moved, missing = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local jobKey = base .. id
  local from = false
  if rcall("TYPE", jobKey).ok == "hash" then
    if rcall("LREM", base .. "wait", 0, id) > 0 then from = "waiting"
    elseif rcall("LREM", base .. "paused", 0, id) > 0 then from = "paused"
    elseif rcall("ZREM", base .. "prioritized", id) > 0 then from = "prioritized"
    elseif rcall("ZREM", base .. "delayed", id) > 0 then from = "delayed"
    elseif allowActive and rcall("LREM", base .. "active", 0, id) > 0 then
      from = "active"
      rcall("DEL", jobKey .. ":lock")
      rcall("SREM", base .. "stalled", id)
    end
  end
  if from then
    rcall("HSET", jobKey, "failedReason", reason, "finishedOn", ts, "rbQuarantined", "1")
    rcall("ZADD", base .. "failed", ts, id)
    rcall("XADD", base .. "events", "MAXLEN", "~", 10000, "*", "event", "failed", "jobId", id,
          "failedReason", reason, "prev", from)
    moved[#moved + 1] = id
  else
    missing[#missing + 1] = id
  end
end
return {moved, missing}
"""

REDRIVE = """
local base = KEYS[1]
local start = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local rcall = redis.call
local moved, skipped = 0, 0
local failedKey = base .. "failed"
local paused = rcall("HEXISTS", base .. "meta", "paused") == 1
while moved < want do
  local ids = rcall("ZRANGE", failedKey, start + skipped, start + skipped + (want - moved) - 1)
  if #ids == 0 then break end
  local batch = {}
  for _, id in ipairs(ids) do
    local jobKey = base .. id
    if rcall("HGET", jobKey, "rbQuarantined") then
      skipped = skipped + 1
    else
      rcall("HDEL", jobKey, "finishedOn", "processedOn", "failedReason")
      rcall("XADD", base .. "events", "MAXLEN", "~", 10000, "*", "event", "waiting", "jobId", id,
            "prev", "failed")
      batch[#batch + 1] = id
    end
  end
  if #batch > 0 then
    rcall("ZREM", failedKey, unpack(batch))
    rcall("LPUSH", base .. "wait", unpack(batch))
    moved = moved + #batch
  end
end
if moved > 0 and not paused then rcall("ZADD", base .. "marker", 0, "0") end
return {moved, skipped}
"""
