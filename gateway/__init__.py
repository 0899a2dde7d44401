"""The gateway: composes journeys from capabilities over Kafka and serves them over HTTP."""
