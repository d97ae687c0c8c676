"""The integration suite's per-test topics serve the image tests too."""

from tests.integration.conftest import env

__all__ = ["env"]
