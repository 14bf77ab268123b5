-- wrk script for test/bench/ocsp.bench.ts: cycles through the requests given
-- after `--`: "GET" then URL paths; "GET-KEEPALIVE" the same with a
-- Connection: keep-alive header (which the engine leaves to node:http, so this
-- measures its node:http path); or "POST" then a URL path and files holding
-- DER OCSPRequests (the bodies).
local requests = {}
local n = 0

function init(args)
  if args[1] == "GET" or args[1] == "GET-KEEPALIVE" then
    local headers = args[1] == "GET" and {} or { ["Connection"] = "keep-alive" }
    for k = 2, #args do
      requests[#requests + 1] = wrk.format("GET", args[k], headers)
    end
  else
    local headers = { ["Content-Type"] = "application/ocsp-request" }
    for k = 3, #args do
      local f = assert(io.open(args[k], "rb"))
      local body = f:read("*a")
      f:close()
      requests[#requests + 1] = wrk.format("POST", args[2], headers, body)
    end
  end
end

function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end
