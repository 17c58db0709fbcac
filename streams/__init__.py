"""The stream processor: Faust agents that adapt the domain in :mod:`availability` to Kafka and Redis."""
