-- Logins (argon2id verification + a new session) with the seeded accounts, round-robin.
dofile(os.getenv("BENCH_LIB") .. "/report.lua")
local emails, i
local password

function init(args)
  emails = seed_values('"email"%s*:%s*"([^"]+)"')
  password = assert(os.getenv("SEED_PASSWORD"), "SEED_PASSWORD not set")
  i = 0
end

function request()
  i = i % #emails + 1
  return wrk.format("POST", "/v1/auth/sessions", { ["Content-Type"] = "application/json" },
    '{"email":"' .. emails[i] .. '","password":"' .. password .. '"}')
end

function response(status, headers, body)
  if status == 201 then ok = ok + 1 end
end
