-- SQS SendMessage in the query protocol, as boto3 1.34 and the Java SDK v1 send it (sqs_send.lua's message).
wrk.method = "POST"
wrk.body = 'Action=SendMessage&Version=2012-11-05&QueueUrl=http%3A%2F%2F127.0.0.1%2F000000000000%2Fbench&MessageBody=%7B%22order%22%3A+12345%2C+%22items%22%3A+%5B%22a%22%2C+%22b%22%2C+%22c%22%5D%7D&MessageAttribute.1.Name=source&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=bench'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
