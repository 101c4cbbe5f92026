"""How riverbed reaches a Kafka cluster: topic administration and client settings."""
