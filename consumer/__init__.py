"""The worker: a consumer-group member that runs jobs on an Engine and publishes Results."""

from consumer.engine import Completion, Engine, make_engine
from consumer.fake_engine import FakeEngine
from consumer.worker import Worker, create_worker, run_worker

__all__ = [
    "Completion",
    "Engine",
    "FakeEngine",
    "Worker",
    "create_worker",
    "make_engine",
    "run_worker",
]
