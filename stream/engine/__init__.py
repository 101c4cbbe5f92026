"""The hot path: from a fetched Kafka record to a prediction, a learned label or a dead letter."""
