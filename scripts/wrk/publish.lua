-- One durable publish per request (target 1).
wrk.method = "POST"
wrk.body = '{"body": {"order": 12345, "items": ["a", "b", "c"]}, "attributes": {"source": "bench"}}'
wrk.headers["Content-Type"] = "application/json"
