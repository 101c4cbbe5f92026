"""The model set, label-request sampler and model spec that a configuration asks for.

Everything here only *builds* objects from :class:`~stream.config.Config`; nothing touches Kafka
or the state dir, so a configuration can be checked completely before any side effect (the
processor builds these in its constructor, before a broker is started or a topic created).
"""

from __future__ import annotations

import functools

from learners import DriftSettings, ModelSet, PromotionPolicy, build_model
from learners.active import LabelRequestSampler
from stream.config import Config
from stream.errors import RiverbedError


def model_spec(config: Config) -> dict:
    """What a checkpoint's model was built from; a state dir refuses a config with another one."""
    m = config.model
    return {"name": config.model_name, "preset": m.preset, "task": m.task, "metrics": list(config.metric_names)}


def learner_settings(config: Config) -> dict:
    """``[model] window``, ``[drift]``, ``[challengers]`` as :meth:`learners.ModelSet.reconfigure` arguments."""
    m, d, c = config.model, config.drift, config.challengers
    drift = DriftSettings(
        detector=d.detector,
        input_detector=d.input_detector,
        max_features=d.max_features,
        error_action=d.error_action,
        score_action=d.score_action,
        feature_action=d.feature_action,
    )
    metrics = list(config.metric_names)
    promotion = PromotionPolicy(metric=c.metric or metrics[0], margin=c.margin, min_labels=c.min_labels)
    challengers = {name: functools.partial(build_model, spec, m.task) for name, spec in config.challenger_specs}
    return {"challengers": challengers, "window": m.window, "drift": drift, "promotion": promotion}


def build_model_set(config: Config) -> ModelSet:
    """The champion of ``[model]``, the challengers of ``[[challengers.models]]``, ``[drift]`` monitors."""
    m = config.model
    settings = learner_settings(config)
    champion = (config.model_name, build_model(m.preset, m.task))
    challengers = [(name, factory()) for name, factory in settings["challengers"].items()]
    return ModelSet.build(
        champion, challengers, m.task, list(config.metric_names),
        window=settings["window"], drift=settings["drift"], promotion=settings["promotion"],
    )


def build_sampler(config: Config) -> LabelRequestSampler | None:
    """The label-request sampler of ``[labels] request_*``, or ``None`` when the budget is 0."""
    labels = config.labels
    if labels.request_budget <= 0:
        return None
    if labels.request_window_s <= 0:
        raise RiverbedError("[labels] request_window_s must be greater than 0 when request_budget is set")
    if config.model.task == "regression" and labels.request_strategy != "random":
        raise RiverbedError(
            f"[labels] request_strategy = {labels.request_strategy!r} needs class probabilities; "
            "a regression model has none: use \"random\""
        )
    return LabelRequestSampler(labels.request_budget, labels.request_window_s, labels.request_strategy)
