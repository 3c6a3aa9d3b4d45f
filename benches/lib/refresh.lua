-- Durable refreshes: every thread owns a disjoint part of the seeded sessions and keeps a FIFO
-- of their newest refresh tokens; each answer's child token goes to the back of the queue, so
-- no token is ever presented twice. A starved queue (never expected: there are far more
-- sessions than connections) falls back to GET /health and is counted, never reported as a
-- refresh.
dofile(os.getenv("BENCH_LIB") .. "/report.lua")
local TOKEN = '"refresh_token"%s*:%s*"([^"]+)"'
local queue, head, tail

function init(args)
  queue = seed_values(TOKEN)
  head, tail = 1, #queue
end

function request()
  if head > tail then
    starved = starved + 1
    return wrk.format("GET", "/health")
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", "/v1/auth/tokens/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match(TOKEN)
    if token then
      ok = ok + 1
      tail = tail + 1
      queue[tail] = token
    end
  end
end
