-- SQS SendMessage, as boto3 sends it (the native publish.lua's message).
wrk.method = "POST"
wrk.body = '{"QueueUrl": "http://127.0.0.1/000000000000/bench", "MessageBody": "{\\"order\\": 12345, \\"items\\": [\\"a\\", \\"b\\", \\"c\\"]}", "MessageAttributes": {"source": {"DataType": "String", "StringValue": "bench"}}}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "AmazonSQS.SendMessage"
