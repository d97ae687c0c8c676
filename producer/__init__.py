"""Job submission: the JobProducer library client and bulk JSONL submission."""

from producer.bulk import BadLine, FileSummary, submit_file
from producer.client import JobProducer, Submitted, build_job

__all__ = ["BadLine", "FileSummary", "JobProducer", "Submitted", "build_job", "submit_file"]
