-- One durable publish of a ~300-byte message per request (target 1).
dofile(os.getenv("CAIRN_WRK_DIR") .. "/message.lua")
wrk.method = "POST"
wrk.body = message(12345)
wrk.headers["Content-Type"] = "application/json"
