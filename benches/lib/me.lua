-- Authenticated reads: GET /v1/auth/me with the seeded access tokens, round-robin.
dofile(os.getenv("BENCH_LIB") .. "/report.lua")
local tokens, i

function init(args)
  tokens = seed_values('"access_token"%s*:%s*"([^"]+)"')
  i = 0
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", "/v1/auth/me", { ["Authorization"] = "Bearer " .. tokens[i] })
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 end
end
