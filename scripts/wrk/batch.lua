-- 100 durable publishes of ~300-byte messages per request (target 2).
dofile(os.getenv("CAIRN_WRK_DIR") .. "/message.lua")
local messages = {}
for n = 0, 99 do
  messages[#messages + 1] = message(n)
end
wrk.method = "POST"
wrk.body = '{"messages": [' .. table.concat(messages, ", ") .. ']}'
wrk.headers["Content-Type"] = "application/json"
