"""The one Redis script that changes a batch's state (batch.py), and what its calls mean.

Every change to a batch (start, a lane's claim, take, report and park, a lost lane, a wake,
a cancel, a replay) is one call of SCRIPT, an atomic step: no reader ever sees an item in
two places or in none, and a lane whose token is stale (a redelivered message, a lane the
operator declared lost) changes nothing. Workers and the operator run it through
Script.call(); it only builds arguments and reads replies, no I/O here.

The layout (names.py): the batch hash (batch.Key fields), fresh items are the indexes
from `next` to `total` - 1 (no list is kept of them), items waiting for an attempt are in
the retry set (score: when due), items held by lanes in their lane's record, items that
failed for good in the failure set, every item that ran in the records hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from longtask_contracts import batch, ledger, names

SEND_AGAIN_SECONDS = 30  # a lane queued this long ago whose token was not marked sent is sent again
# The operator publishes a batch's end (its terminal event) at its next maintenance tick
# after the script marked it ended: BATCH_WAKE gets it this many seconds later.
END_CHECK_SECONDS = 0

SCRIPT = (
    ledger.RUNNING_LUA
    + r"""
local B, LANES, RETRY, RECORDS, FAILED, INPUTS = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local LEASES, SENDS, WAKE, CANCEL = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local TOMB, POOLITEMS = KEYS[15], KEYS[16]
local BEAT, UPLOAD, DONE = KEYS[17], KEYS[18], KEYS[19]
local uid, now, op = ARGV[3], tonumber(ARGV[4]), ARGV[5]

local function num(field) return tonumber(redis.call('HGET', B, field) or '0') or 0 end
local function str(field) return redis.call('HGET', B, field) or '' end
local function member(lane) return uid .. '/' .. lane end

local function get_lane(lane)
  local raw = redis.call('HGET', LANES, lane)
  if not raw then return nil end
  local seq, state, pod, tag, held = string.match(raw, '^(%d+) (%a) (%S+) (%S+) ?(%S*)$')
  if not seq then return nil end
  return {seq = tonumber(seq), state = state, pod = pod, tag = tag, held = held}
end
local function put_lane(lane, l)
  local s = l.seq .. ' ' .. l.state .. ' ' .. l.pod .. ' ' .. l.tag
  if l.held ~= '' then s = s .. ' ' .. l.held end
  redis.call('HSET', LANES, lane, s)
end
local function split(text)
  local out = {}
  for i in string.gmatch(text, '[^,]+') do out[#out + 1] = i end
  return out
end

local function waiting() return math.max(0, num('total') - num('next')) + redis.call('ZCARD', RETRY) end
local function update_pool()
  if str('ended') ~= '' or str('stop') ~= '' then redis.call('HDEL', POOLITEMS, uid) return end
  local q = math.min(waiting(), math.max(0, num('parallelism') - num('lanes')))
  if q > 0 then redis.call('HSET', POOLITEMS, uid, q) else redis.call('HDEL', POOLITEMS, uid) end
end
local function stopping()
  return str('stop') ~= '' or str('ended') ~= '' or redis.call('EXISTS', CANCEL) == 1
    or redis.call('EXISTS', TOMB) == 1 or redis.call('EXISTS', DONE) == 1
end
local function maybe_end()
  local ended = str('ended')
  if ended ~= '' then return ended end
  if num('held') > 0 then return '' end
  local phase = str('stop')
  if phase == '' then
    if num('next') < num('total') or redis.call('ZCARD', RETRY) > 0 then return '' end
    if num('failed') > 0 then phase = 'Failed' else phase = 'Succeeded' end
  end
  redis.call('HSET', B, 'ended', phase)
  redis.call('HDEL', POOLITEMS, uid)
  redis.call('ZADD', WAKE, now + tonumber(ARGV[6]), uid)
  return phase
end
local function stop_rest(phase, ttl)
  if str('stop') == '' then redis.call('HSET', B, 'stop', phase) end
  redis.call('SET', CANCEL, '1', 'EX', ttl)
end
local function queue_lane(lane, l)
  l.seq = l.seq + 1
  l.state, l.pod, l.tag, l.held = 'q', '-', '-', ''
  put_lane(lane, l)
  redis.call('ZADD', SENDS, now + tonumber(ARGV[7]), member(lane))
  return l.seq
end
local function counters()
  return {num('total'), num('next'), num('held'), num('succeeded'), num('failed'),
          redis.call('ZCARD', RETRY), num('seq'), str('stop'), str('ended')}
end

-- ARGV[6] END_CHECK_SECONDS, ARGV[7] SEND_AGAIN_SECONDS, ARGV[8..] the op's own
if op == 'start' then
  -- total, parallelism, maxfailed, pool, lanes, from upload (1/0), ttl
  local lanes = tonumber(ARGV[12])
  if redis.call('EXISTS', B) == 0 then
    if ARGV[13] == '1' then
      if redis.call('EXISTS', UPLOAD) == 1 then
        redis.call('RENAME', UPLOAD, INPUTS)
      elseif redis.call('EXISTS', INPUTS) == 0 then
        return {-1}
      end
    end
    redis.call('HSET', B, 'total', ARGV[8], 'parallelism', ARGV[9], 'maxfailed', ARGV[10], 'pool', ARGV[11],
      'next', 0, 'held', 0, 'succeeded', 0, 'failed', 0, 'lanes', 0, 'seq', 0, 'stop', '', 'ended', '')
    for lane = 1, lanes do
      put_lane(lane, {seq = 0, state = 'q', pod = '-', tag = '-', held = ''})
      redis.call('ZADD', SENDS, now + tonumber(ARGV[7]), member(lane))
    end
    for _, key in ipairs({B, LANES, INPUTS}) do redis.call('EXPIRE', key, ARGV[14]) end
  end
  update_pool()
  local out = {1}
  local all = redis.call('HGETALL', LANES)
  for i = 1, #all, 2 do
    local l = get_lane(all[i])
    if l and l.state == 'q' then out[#out + 1] = tonumber(all[i]); out[#out + 1] = l.seq end
  end
  return out

elseif op == 'claim' then
  -- lane, seq, pod, tag, lease end, RUNNING entry, pool
  local lane, seq = ARGV[8], tonumber(ARGV[9])
  local l = get_lane(lane)
  if redis.call('EXISTS', B) == 0 or not l or l.seq ~= seq or l.state ~= 'q' then return {0} end
  if stopping() then
    l.state = 'i'
    put_lane(lane, l)
    redis.call('ZREM', SENDS, member(lane))
    maybe_end()
    return {0}
  end
  l.state, l.pod, l.tag, l.held = 'r', ARGV[10], ARGV[11], ''
  put_lane(lane, l)
  redis.call('HINCRBY', B, 'lanes', 1)
  redis.call('ZADD', LEASES, ARGV[12], member(lane))
  redis.call('ZREM', SENDS, member(lane))
  take(member(lane), ARGV[13], ARGV[14], ARGV[10])
  update_pool()
  return {1, redis.call('HSETNX', B, 'started', '1')}

elseif op == 'take' then
  -- lane, seq, how many, main queue lists to look at (0: none; the rest are KEYS[20..])
  local lane, seq, k, look = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
  local l = get_lane(lane)
  if not l or l.seq ~= seq or l.state ~= 'r' then return {-1} end
  if stopping() then return {-3} end
  for i = 1, look do
    if redis.call('LLEN', KEYS[19 + i]) > 0 then return {-2} end
  end
  local taken = {}
  local due = redis.call('ZRANGEBYSCORE', RETRY, '-inf', now, 'LIMIT', 0, 1)
  if #due > 0 then
    redis.call('ZREM', RETRY, due[1])
    taken[1] = due[1]
  else
    local nxt = num('next')
    local n = math.min(k, num('total') - nxt)
    if n <= 0 then return {0} end
    redis.call('HSET', B, 'next', nxt + n)
    for i = nxt, nxt + n - 1 do taken[#taken + 1] = tostring(i) end
  end
  redis.call('HINCRBY', B, 'held', #taken)
  l.held = table.concat(taken, ',')
  put_lane(lane, l)
  update_pool()
  local records = redis.call('HMGET', RECORDS, unpack(taken))
  local inputs = redis.call('HMGET', INPUTS, unpack(taken))
  local out = {#taken}
  for j = 1, #taken do
    out[#out + 1] = taken[j]
    out[#out + 1] = records[j] or ''
    out[#out + 1] = inputs[j] or ''
  end
  return out

elseif op == 'report' then
  -- lane, seq, expected lane state, lease end (0: none), cancel flag ttl, n, then n x
  -- (index, outcome s|f|r|q, record, due): s succeeded, f failed, r retry at `due`,
  -- q back to the queue now (taken and not run, or cancelled while running)
  local lane, seq, expect = ARGV[8], tonumber(ARGV[9]), ARGV[10]
  local l = get_lane(lane)
  if not l or l.seq ~= seq or l.state ~= expect then return {-1} end
  local held = {}
  for _, i in ipairs(split(l.held)) do held[i] = true end
  local failures, n = 0, tonumber(ARGV[13])
  for j = 0, n - 1 do
    local idx, outcome, record, due = ARGV[14 + 4 * j], ARGV[15 + 4 * j], ARGV[16 + 4 * j], ARGV[17 + 4 * j]
    if held[idx] then
      held[idx] = nil
      redis.call('HINCRBY', B, 'held', -1)
      if record ~= '' then redis.call('HSET', RECORDS, idx, record) end
      if outcome == 's' then
        redis.call('HINCRBY', B, 'succeeded', 1)
      elseif outcome == 'f' then
        redis.call('HINCRBY', B, 'failed', 1)
        redis.call('ZADD', FAILED, idx, idx)
        failures = failures + 1
      elseif outcome == 'r' then
        redis.call('ZADD', RETRY, due, idx)
      else
        redis.call('ZADD', RETRY, now, idx)
      end
    end
  end
  local rest = {}
  for _, i in ipairs(split(l.held)) do if held[i] then rest[#rest + 1] = i end end
  l.held = table.concat(rest, ',')
  put_lane(lane, l)
  if tonumber(ARGV[11]) > 0 then redis.call('ZADD', LEASES, ARGV[11], member(lane)) end
  redis.call('HINCRBY', B, 'seq', 1)
  local limit = num('maxfailed')
  if limit >= 0 and num('failed') > limit then stop_rest('Failed', ARGV[12]) end
  local ended = maybe_end()
  update_pool()
  local beat = failures > 0 or ended ~= ''
  if not beat then beat = redis.call('SET', BEAT, '1', 'NX', 'PX', ARGV[14 + 4 * n]) end
  local out = {1, beat and 1 or 0}
  for _, v in ipairs(counters()) do out[#out + 1] = v end
  return out

elseif op == 'park' then
  -- lane, seq, expected state, idle | again (queued again: a yield, or a lost lane)
  local lane, seq, expect, mode = ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
  local l = get_lane(lane)
  if not l or l.seq ~= seq or l.state ~= expect then return {-1} end
  if l.held ~= '' then return {-4} end
  redis.call('ZREM', LEASES, member(lane))
  release(member(lane), '')
  if l.state == 'r' or l.state == 'x' then redis.call('HINCRBY', B, 'lanes', -1) end
  if mode == 'again' and not stopping() then
    queue_lane(lane, l)
  else
    l.state, l.pod, l.tag = 'i', '-', '-'
    put_lane(lane, l)
    local first = redis.call('ZRANGE', RETRY, 0, 0, 'WITHSCORES')
    if #first > 0 then redis.call('ZADD', WAKE, 'LT', first[2], uid) end
  end
  local ended = maybe_end()
  update_pool()
  return {1, l.seq, l.state, ended}

elseif op == 'lost' then
  -- lane: its lease ran out. It is marked lost (its worker's reports are refused from now
  -- on) and its items are returned for the operator to end (report 'x', then park 'x').
  local lane = ARGV[8]
  local score = redis.call('ZSCORE', LEASES, member(lane))
  if score and tonumber(score) > now then return {0} end
  local l = get_lane(lane)
  if not l or (l.state ~= 'r' and l.state ~= 'x') then
    redis.call('ZREM', LEASES, member(lane))
    return {0}
  end
  if l.state == 'r' then
    l.state = 'x'
    put_lane(lane, l)
  end
  local out = {1, l.seq, l.pod}
  local held = split(l.held)
  if #held > 0 then
    local records = redis.call('HMGET', RECORDS, unpack(held))
    for j = 1, #held do out[#out + 1] = held[j]; out[#out + 1] = records[j] or '' end
  end
  return out

elseif op == 'wake' then
  -- idle lanes with items ready are queued again; an ended batch is reported as such
  if redis.call('EXISTS', B) == 0 then redis.call('ZREM', WAKE, uid) return {0, ''} end
  local ended = maybe_end()
  if ended ~= '' then return {2, ended} end
  local out = {1, ''}
  if not stopping() then
    local ready = math.max(0, num('total') - num('next')) + redis.call('ZCOUNT', RETRY, '-inf', now)
    local all = redis.call('HGETALL', LANES)
    for i = 1, #all, 2 do
      if ready <= 0 then break end
      local l = get_lane(all[i])
      if l and l.state == 'i' then
        out[#out + 1] = tonumber(all[i]); out[#out + 1] = queue_lane(all[i], l)
        ready = ready - 1
      end
    end
  end
  local first = redis.call('ZRANGE', RETRY, 0, 0, 'WITHSCORES')
  if #first > 0 and tonumber(first[2]) > now then
    redis.call('ZADD', WAKE, first[2], uid)
  else
    redis.call('ZREM', WAKE, uid)
  end
  update_pool()
  return out

elseif op == 'sendagain' then
  -- lane, seq: still queued under that token (not claimed, not moved on)? then it is sent again
  local l = get_lane(ARGV[8])
  if not l or l.state ~= 'q' or l.seq ~= tonumber(ARGV[9]) or stopping() then
    redis.call('ZREM', SENDS, member(ARGV[8]))
    return {0}
  end
  redis.call('ZADD', SENDS, now + tonumber(ARGV[7]), member(ARGV[8]))
  return {1}

elseif op == 'cancel' then
  -- stop: nothing queued starts again (the cancel flag stops running items), end once none is held
  if redis.call('EXISTS', B) == 0 then return {0, ''} end
  stop_rest(ARGV[8], ARGV[9])
  local ended = maybe_end()
  update_pool()
  return {1, ended}

elseif op == 'replay' then
  -- the failed items (and the ones a stop left) run again; records: record JSON per failed item
  -- given as index, record pairs from ARGV[8] on
  if redis.call('EXISTS', B) == 0 then return {0} end
  for j = 8, #ARGV, 2 do
    redis.call('HSET', RECORDS, ARGV[j], ARGV[j + 1])
    redis.call('ZADD', RETRY, 0, ARGV[j])
  end
  redis.call('DEL', FAILED)
  redis.call('HSET', B, 'failed', 0, 'stop', '', 'ended', '')
  redis.call('ZREM', WAKE, uid)
  redis.call('ZADD', WAKE, now, uid)
  update_pool()
  return {1}
end
return redis.error_reply('unknown batch op ' .. tostring(op))
"""
)


def keys(uid: str, *, pool: str, priority: int = 0, upload: str = "") -> list[str]:
    """The keys of SCRIPT for batch `uid` on `pool`; the pool's main queue lists of `priority`
    and above last (a lane yields to a task waiting in them: op take)."""
    return [
        *ledger.RUNNING_KEYS,
        names.batch(uid),
        names.lanes(uid),
        names.items_retry(uid),
        names.items_records(uid),
        names.items_failed(uid),
        names.items_inputs(uid),
        names.LANE_LEASES,
        names.LANE_SENDS,
        names.BATCH_WAKE,
        names.cancel_flag(uid),
        names.tombstone(uid),
        names.pool_items(pool),
        names.items_beat(uid),
        names.upload(upload) if upload else names.upload("none"),
        names.done(uid),
        *urgent_lists(pool, priority),
    ]


def urgent_lists(pool: str, priority: int) -> list[str]:
    """The pool's main queue lists of priority `priority` and above (most urgent first)."""
    return names.queue_lists(pool)[: len(names.PRIORITY_STEPS) - priority]


def args(uid: str, op: str, now: float, *rest: Any) -> list[Any]:
    return [*ledger.RUNNING_ARGS, uid, now, op, END_CHECK_SECONDS, SEND_AGAIN_SECONDS, *rest]


@dataclass(frozen=True)
class Taken:
    """One item a lane took: its index, its record so far (None: it never ran), its input."""

    index: int
    record: batch.ItemRecord | None
    item: dict[str, Any] | None


def parse_taken(reply: list[Any]) -> list[Taken] | int:
    """The reply of op take: the items taken, or a code: 0 nothing ready, -1 the lane is not
    ours any more, -2 yield to a waiting task, -3 the batch stops."""
    count = int(reply[0])
    if count <= 0:
        return count
    out = []
    for j in range(count):
        index, record, item = reply[1 + 3 * j : 4 + 3 * j]
        out.append(
            Taken(
                index=int(index),
                record=batch.ItemRecord.model_validate_json(record) if record else None,
                item=json.loads(item) if item else None,
            )
        )
    return out


@dataclass(frozen=True)
class Report:
    """The reply of op report: whether to publish the counts now, and the counts."""

    publish: bool
    counts: batch.Counts
    stop: str
    ended: str


def parse_report(reply: list[Any]) -> Report | None:
    """None: the lane was not ours (or not in the expected state) and nothing was recorded."""
    if int(reply[0]) != 1:
        return None
    total, nxt, held, succeeded, failed, retrying, seq = (int(v) for v in reply[2:9])
    stop, ended = (_text(v) for v in reply[9:11])
    counts = batch.counts_of(
        total=total, taken=nxt, held=held, succeeded=succeeded, failed=failed, retrying=retrying, seq=seq,
        stopped=bool(stop),
    )  # fmt: skip
    return Report(publish=bool(int(reply[1])), counts=counts, stop=stop, ended=ended)


def report_args(
    uid: str, *, lane: int, seq: int, expect: str, now: float, lease_end: float, outcomes: list[Outcome]
) -> list[Any]:
    flat: list[Any] = []
    for o in outcomes:
        flat += [o.index, o.code, o.record.encode() if o.record else "", o.due]
    return args(
        uid,
        "report",
        now,
        lane,
        seq,
        expect,
        lease_end,
        ledger.KEY_TTL_SECONDS,
        len(outcomes),
        *flat,
        int(batch.REPORT_EVERY_SECONDS * 1000),
    )


@dataclass(frozen=True)
class Outcome:
    """How one held item's attempt ended, for op report: s succeeded, f failed, r retry at
    `due`, q back to the queue (not run, or cancelled)."""

    index: int
    code: str
    record: batch.ItemRecord | None
    due: float = 0.0


def lanes_to_send(reply: list[Any], start: int) -> list[tuple[int, int]]:
    """(lane, seq) pairs from `start` on in a reply (ops start and wake)."""
    flat = [int(v) for v in reply[start:]]
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
