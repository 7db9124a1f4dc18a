-- Extend this consumer's leases on its pending entries of one stream, and report the ones it
-- no longer holds (reclaimed by the janitor, acknowledged, or lost with Redis's data), so the
-- executor never starts a job whose lease is gone. An XCLAIM with min-idle 0 alone would take
-- an entry back from whoever reclaimed it.
--
-- KEYS[1]  the stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer
-- ARGV[3…] entry ids
-- Returns  the ids of ARGV[3…] that are not pending under this consumer (their idle time is
--          left alone); the others have had their idle time reset (XCLAIM … JUSTID: no
--          delivery counted)

local lost = {}
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
    local id = ARGV[i]
    local ok, entry = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if ok and entry[1] and entry[1][2] == ARGV[2] then
        claim[#claim + 1] = id
    else
        lost[#lost + 1] = id
    end
end
if #claim > 5 then
    claim[#claim + 1] = 'JUSTID'
    redis.call(unpack(claim))
end
return lost
