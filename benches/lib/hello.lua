-- GET / on the hello-world server.
dofile(os.getenv("BENCH_LIB") .. "/report.lua")
function response(status, headers, body)
  if status == 200 then ok = ok + 1 end
end
