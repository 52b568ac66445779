"""serverless-sse: resumable Server-Sent Events for stateless functions.

Streams live for a bounded window, end with a ``timeout`` event, and resume exactly where they
stopped from a durable per-channel log, on any instance.
"""

__version__ = "0.1.0"
