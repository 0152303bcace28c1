-- wrk script: POST a body of BODY_SIZE bytes (default 100).
local size = tonumber(os.getenv("BODY_SIZE") or "100")
wrk.method = "POST"
wrk.body = string.rep("x", size)
wrk.headers["Content-Type"] = "application/octet-stream"
