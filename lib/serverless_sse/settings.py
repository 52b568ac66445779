"""Every setting, read once from ``SSE_*`` environment variables (and ``.env``) into one object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """The service's configuration. Every default works for a local run."""

    model_config = SettingsConfigDict(
        env_prefix="SSE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    store: str = Field("memory://", description="event store URL: memory://, redis://, dynamodb://")
    queue: str = Field("memory://", description="job queue URL for AI answers")

    window_seconds: float = Field(300.0, gt=0, le=900, description="longest a stream lasts")
    window_jitter: float = Field(0.1, ge=0, lt=1, description="± fraction applied per connection")
    heartbeat_seconds: float = Field(15.0, gt=0, description="comment-line interval")
    retry_ms: int = Field(1000, ge=0, description="the retry: hint sent to clients")
    mode: Literal["auto", "stream", "buffered"] = "auto"
    buffered_wait_seconds: float = Field(25.0, gt=0, le=29, description="long-poll wait (Mangum)")

    max_event_bytes: int = Field(65536, gt=0, le=350_000, description="largest event payload")
    max_body_bytes: int = Field(1 << 20, gt=0, description="largest request body")
    max_batch_events: int = Field(100, gt=0, le=1000, description="events in one publish")
    max_channels_per_stream: int = Field(16, gt=0, le=32, description="channels in /stream")
    history_page_max: int = Field(1000, gt=0, description="largest ?limit= of history reads")
    retention_events: int = Field(10_000, gt=0, description="events kept per channel")
    retention_seconds: float = Field(86_400, gt=0, description="age of the oldest event kept")

    feed_buffer_events: int = Field(
        2048, gt=0, description="recent events each channel's shared reader keeps in memory"
    )
    max_lag_events: int = Field(
        20_000,
        gt=0,
        description="a live stream this far behind its channel's head ends (to resume later)",
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _commas(cls, value: object) -> object:
        return _split_commas(value)
