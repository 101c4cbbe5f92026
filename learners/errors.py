"""Errors raised by :mod:`learners` (pure River; knows nothing of Kafka or storage)."""

from __future__ import annotations


class LearnerError(Exception):
    """A model or metric specification cannot be honoured."""

    exit_code = 2
