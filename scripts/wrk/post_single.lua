-- One event per POST, about 300 bytes of JSON, each different.
dofile(os.getenv("WRK_COMMON") or "scripts/wrk/common.lua")
local n = 0
local tid = math.random(1, 1e9)

function request()
  n = n + 1
  local body = string.format(
    '{"event":"user.login","level":"info","actor":"user-%d","resource":"/api/v1/orders/%d","success":true,' ..
    '"source_ip":"10.0.%d.%d","user_agent":"wrk/4 bench","request_id":"req-%d-%d",' ..
    '"details":{"method":"POST","status":201,"path":"/api/v1/orders","region":"eu-west-1"}}',
    n % 1000, n, n % 256, n % 200, tid, n)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
