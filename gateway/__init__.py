"""The HTTP gateway (`sluice api`): submit jobs over HTTP and read their results.

A service of its own, beside the worker and the sink: it uses the producer library to submit and
a local store of the results topic (sluice.store) to answer.
"""

from gateway.api import create_app, run_api

__all__ = ["create_app", "run_api"]
