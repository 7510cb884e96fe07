package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// script is a Lua script and its source, which go-redis's Script does not
// give back: runOnce needs it to send EVAL itself.
type script struct {
	*goredis.Script
	src string
}

func newScript(src string) script { return script{goredis.NewScript(src), src} }

// noRetryCmd is a command go-redis must not send again when it fails
// after being sent: it might have run, and running it twice would do
// what it does twice. (Retries are governed by options for a single
// server, but a cluster client retries a broken connection's command
// regardless.)
type noRetryCmd struct{ *goredis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

// runOnce runs s as Script.Run would, but never twice: an append must
// not be doubled by the client library.
func (s script) runOnce(ctx context.Context, rdb goredis.UniversalClient, keys []string, args ...any) *goredis.Cmd {
	cmd := evalCmd(ctx, "evalsha", s.Hash(), keys, args)
	_ = rdb.Process(ctx, noRetryCmd{cmd})
	if err := cmd.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not run: the server does not know the script (yet).
		cmd = evalCmd(ctx, "eval", s.src, keys, args)
		_ = rdb.Process(ctx, noRetryCmd{cmd})
	}
	return cmd
}

func evalCmd(ctx context.Context, name, script string, keys []string, args []any) *goredis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, script, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := goredis.NewCmd(ctx, a...)
	cmd.SetFirstKeyPos(3) // routes it to the keys' slot on a cluster
	return cmd
}

// ensureLua is the start of every script that needs the log: KEYS[1] is
// the stream and KEYS[2] its epoch. A stream without its epoch, or an
// epoch without its stream, is what a wipe leaves: the log is made anew,
// under a fresh epoch, and empty, so that a position read from the old
// stream can never be mistaken for one of the new (a stream kept under a
// new epoch, or a new stream under the old epoch, would both do that).
// The empty stream is made with a throwaway consumer group because XADD
// is the only other way to create one.
const ensureLua = `
local log, ekey = KEYS[1], KEYS[2]

local function ensure(fresh)
  local e = redis.call('GET', ekey)
  if e and redis.call('EXISTS', log) == 1 then
    return e
  end
  redis.call('DEL', log)
  redis.call('XGROUP', 'CREATE', log, 'herald-init', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', log, 'herald-init')
  redis.call('SET', ekey, fresh)
  return fresh
end
`

// appendScript appends records atomically, so concurrent appends from
// many nodes interleave whole and a duplicate check cannot race the
// reservation it guards.
//
// KEYS[3...] are the publisher-ID reservations; ARGV[1] a fresh epoch in
// case the log needs one, ARGV[2] MaxEvents, ARGV[3] MaxAge in
// milliseconds, ARGV[4...] the encoded records. It returns {"dup", key}
// if a reservation exists, else {"ok", epoch, id...}.
//
// IDs are chosen here rather than by XADD *, because each entry must
// carry the ID before it (p) and because an ID that would not fit a
// position must be refused before anything is written. The reservations
// are written after the entries: should the script fail between the two,
// a retry doubles the event rather than being refused for an event that
// was never appended.
var appendScript = newScript(ensureLua + `
local epoch = ensure(ARGV[1])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return {'dup', KEYS[i]}
  end
end
local n = #ARGV - 3
if n <= 0 then
  return {'ok', epoch}
end

local info = redis.call('XINFO', 'STREAM', log)
local last
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    last = info[i + 1]
  end
end
local ms, seq = string.match(last or '', '^(%d+)-(%d+)$')
if not ms then
  return redis.error_reply('herald: cannot read the stream last-generated-id')
end
ms, seq = tonumber(ms), tonumber(seq)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = {}
for i = 1, n do
  if now > ms then
    ms, seq = now, 0
  else
    seq = seq + 1
  end
  if seq >= 4194304 then -- 2^22: the sequence bits of a position
    ms, seq = ms + 1, 0
  end
  ids[i] = string.format('%.0f-%.0f', ms, seq)
end
if ms >= 4398046511104 then -- 2^42: the millisecond bits of a position
  return redis.error_reply('herald: stream ID ' .. ids[n] .. ' does not fit a position')
end

local out = {'ok', epoch}
local prev = last
for i = 1, n do
  redis.call('XADD', log, ids[i], 'e', epoch, 'p', prev, 'r', ARGV[3 + i])
  prev = ids[i]
  out[i + 2] = ids[i]
end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[3])
end
redis.call('XTRIM', log, 'MAXLEN', '~', ARGV[2])
local oldest = now - tonumber(ARGV[3])
if oldest > 0 then
  redis.call('XTRIM', log, 'MINID', '~', string.format('%.0f', oldest))
end
return out
`)

// headScript returns {epoch, ID of the last retained entry or "0-0"},
// making the log if there is none, as Head and Follow need.
var headScript = newScript(ensureLua + `
local epoch = ensure(ARGV[1])
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if #last == 0 then
  return {epoch, '0-0'}
end
return {epoch, last[1][1]}
`)

// forgetScript deletes the node statuses of KEYS[1] given as ARGV name,
// value pairs, unless the node has announced again since they were read.
var forgetScript = newScript(`
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 0
`)
