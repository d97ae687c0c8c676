"""The client side: the JobProducer library, bulk JSONL submission, and collecting a file's results."""

from producer.bulk import BadLine, FileSummary, submit_file
from producer.client import JobProducer, Submitted, build_job
from producer.collect import CollectSummary, Manifest, ManifestError, collect

__all__ = [
    "BadLine",
    "CollectSummary",
    "FileSummary",
    "JobProducer",
    "Manifest",
    "ManifestError",
    "Submitted",
    "build_job",
    "collect",
    "submit_file",
]
