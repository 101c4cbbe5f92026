"""Developer and demo tooling: the embedded local Kafka broker, datasets, replay, the label oracle."""
