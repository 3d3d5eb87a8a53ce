"""The ``analytics`` projection: per queue and time bucket, what happened (counts by kind),
how long messages waited from publish to ack (a mergeable sketch), and why they were nacked.
"""
