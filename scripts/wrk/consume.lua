-- Consumers (target 3): receive up to 10, then ack them all with one batch ack, again and
-- again. Acks wait in a per-thread list and go out on whichever connection asks next.
local receive_body = '{"max_messages": 10, "visibility_timeout_s": 60}'
local headers = {["Content-Type"] = "application/json"}
local pending = {}
acked = 0

request = function()
  local body = table.remove(pending)
  if body then
    return wrk.format("POST", "/v1/queues/bench/ack", headers, body)
  end
  return wrk.format("POST", "/v1/queues/bench/receive", headers, receive_body)
end

response = function(status, headers, body)
  if body:find('"messages"', 1, true) then
    local acks = {}
    for id, receipt in body:gmatch('"id":"([^"]+)".-"receipt":"([^"]+)"') do
      acks[#acks + 1] = string.format('{"id":"%s","receipt":"%s"}', id, receipt)
    end
    if #acks > 0 then
      pending[#pending + 1] = '{"acks":[' .. table.concat(acks, ",") .. ']}'
    end
  elseif body:find('"results"', 1, true) then
    for _ in body:gmatch('"status":204') do
      acked = acked + 1
    end
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("acked")
  end
  io.write(string.format("CAIRN acked %d\n", total))
end
