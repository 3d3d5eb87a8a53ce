"""The SQS door: the SQS JSON 1.0 protocol on ``POST /``, so that boto3, the AWS CLI and
Celery work against Cairn unchanged (API.md, "SQS-compatible endpoint").

It is an adapter, not a second broker: each action becomes the same commands (through the same
writer, decisions and events) and the same read-model queries as the native API, and SQS's
errors are the domain's errors translated. What SQS needs that the native API had no field for
(tags, RedriveAllowPolicy, FIFO, the receive wait, the message size limit, typed attributes) is
queue settings and event fields like any other.
"""
