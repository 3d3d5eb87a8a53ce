"""The Kafka door: Kafka clients produce to and read the broker through the Kafka protocol.

Queues are topics (one partition each, offset = position), ``cairn.events`` is the whole log;
records produced are messages published through the same commands as the other doors. See
``listener.py`` for the connection, ``apis.py`` for what is served, and a module per concern.
"""
