"""Every setting, read once from ``SSE_*`` environment variables (and ``.env``) into one object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .auth import hash_key

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

    # -- fleet metrics and agent tasks (functions/metrics.py, functions/tasks.py) ---------------
    fleet_source: Literal["simulated", "host"] = Field(
        "simulated", description="simulated: a seeded fleet; host: the machine serving the request"
    )
    fleet_seed: int = Field(42, ge=0, lt=2**63, description="the simulated fleet's identity")
    # At most 32: a fleet stream's cursor holds one position per server's control log.
    fleet_size: int = Field(8, ge=1, le=32, description="servers in the simulated fleet")
    fleet_interval_seconds: float = Field(
        3.0, ge=0.05, le=3600, description="server_update interval (and simulation tick)"
    )
    task_batch_events: int = Field(
        10, ge=1, le=100, description="most events in one store write of task output"
    )
    task_batch_seconds: float = Field(
        0.1, gt=0, le=10, description="longest parsed output waits before it is written"
    )
    task_max_line_chars: int = Field(
        4096, ge=16, le=65536, description="longer output lines are cut into pieces"
    )
    task_max_block_chars: int = Field(
        8192, ge=16, le=65536, description="longest [DEPENDENCY_REQUEST]-style block body"
    )
    task_lock_wait_seconds: float = Field(
        10.0, gt=0, le=60, description="how long a write waits for a busy task or server"
    )

    # -- stores (issue 3): the Redis and DynamoDB backends ----------------------------------
    log_linger_seconds: float = Field(
        7 * 86_400,
        ge=0,
        description="how long a channel's epoch, sequence and closed flag outlive its last event",
    )
    redis_max_connections: int = Field(
        64, gt=0, description="Redis connections for commands, per process (and per cluster node)"
    )
    redis_max_waits: int = Field(
        256,
        gt=0,
        description="blocking XREADs per process (one per live channel); beyond that, waits poll",
    )
    redis_poll_seconds: float = Field(
        0.5, gt=0, description="poll interval of a wait when every blocking connection is busy"
    )
    redis_timeout_seconds: float = Field(
        5.0, gt=0, description="connect and reply timeout of a Redis command"
    )
    dynamodb_threads: int = Field(
        16, gt=0, le=256, description="threads (and HTTP connections) running boto3 calls"
    )
    dynamodb_poll_min_seconds: float = Field(
        0.1, gt=0, description="live poll interval of a channel while events flow"
    )
    dynamodb_poll_max_seconds: float = Field(
        2.0, gt=0, description="live poll interval of an idle channel (it backs off up to this)"
    )
    dynamodb_timeout_seconds: float = Field(
        5.0, gt=0, description="connect and read timeout of a DynamoDB call"
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _commas(cls, value: object) -> object:
        return _split_commas(value)

    # -- security, limits, observability ----------------------------------------------------
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret (32+ bytes)")
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="API keys as sha256:<hex> (plain keys are hashed)"
    )
    public_subscribe: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="channel patterns anyone may subscribe to"
    )
    closed_subscribe: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="channel patterns only API keys may subscribe to"
    )
    query_tokens: bool = Field(True, description="accept ?access_token= (EventSource)")
    allow_anonymous: bool = Field(
        True, description="start with no credentials configured (open); deployments say false"
    )
    max_streams_per_client: int | None = Field(None, gt=0)
    publish_rate_per_client: float | None = Field(None, gt=0)
    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="stream leases expire this long after their instance stops renewing them",
    )
    max_header_bytes: int = Field(16_384, gt=0)
    max_url_bytes: int = Field(8_192, gt=0)
    cors_credentials: bool = Field(
        True, description="let allowed origins send cookies and Authorization (not with '*')"
    )
    log_json: bool = True
    log_level: str = "INFO"

    @field_validator("api_keys", "public_subscribe", "closed_subscribe", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("api_keys")
    @classmethod
    def _hashed(cls, value: list[str]) -> list[str]:
        # A plain key is hashed as it is read: the settings never hold a usable key.
        return [hash_key(key) for key in value]

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("SSE_JWT_SECRET must be at least 32 bytes for HS256")
        return value

    @model_validator(mode="after")
    def _no_wildcard_origin_with_credentials(self) -> Settings:
        # Starlette answers `*` with credentials by naming whatever origin asks: any site could
        # then read streams with its visitors' cookies.
        if "*" in self.cors_origins and self.cors_credentials:
            raise ValueError(
                "SSE_CORS_ORIGINS=* with SSE_CORS_CREDENTIALS=true would let every site read "
                "streams with its visitors' credentials: list the origins, or set "
                "SSE_CORS_CREDENTIALS=false"
            )
        return self

    @model_validator(mode="after")
    def _not_open_unless_allowed(self) -> Settings:
        if not self.allow_anonymous and not self.api_keys and self.jwt_secret is None:
            raise ValueError(
                "no credentials configured (SSE_API_KEYS / SSE_JWT_SECRET) and "
                "SSE_ALLOW_ANONYMOUS=false: refusing to start an open service"
            )
        return self

    # -- votes/chat/AI and group chat (SEEDS 003, 004): queue, worker, responders ------------
    ai_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="longest an AI answer or a group-chat exchange may take"
    )
    ai_worker_concurrency: int = Field(
        4,
        gt=0,
        le=256,
        validation_alias=AliasChoices("SSE_AI_WORKER_CONCURRENCY", "AI_WORKER_CONCURRENCY"),
        description="answers one worker computes at once",
    )
    worker: Literal["in-process", "off"] = Field(
        "in-process", description="run the answer worker inside the web process, or elsewhere"
    )
    queue_visibility_seconds: float = Field(
        120.0, gt=0, le=43_200, description="a taken job not acknowledged by then is redelivered"
    )
    queue_poll_seconds: float = Field(
        10.0, gt=0, le=20, description="how long one take waits for a job (long poll)"
    )
    queue_max_attempts: int = Field(5, gt=0, description="deliveries of a failing job")
    responder: Literal["persona", "openai"] = Field(
        "persona", description="who writes AI answers: the built-in personas, or an HTTP model"
    )
    responder_piece_seconds: float = Field(
        0.03, ge=0, le=5, description="the built-in responder's pause between pieces"
    )
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="an OpenAI-compatible API (…/chat/completions)"
    )
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    answer_cache_seconds: float = Field(
        3600.0, ge=0, description="how long a computed answer is reused (0: not cached)"
    )
    exp_per_answer: int = Field(5, gt=0, description="friendship experience per exchange")
    max_personas_per_room: int = Field(8, gt=0, le=32)
    max_poll_options: int = Field(20, gt=0, le=100)
    max_text_chars: int = Field(4000, gt=0, description="longest chat message or question")

    # -- deploy (issue 4): buffered (long-poll) responses, where the platform buffers them ---
    # SSE_MODE and SSE_BUFFERED_WAIT_SECONDS (above) choose the mode and the wait: the wait
    # stays below API Gateway's 30 s cut. A buffered response goes back as one Lambda payload
    # (at most 6 MB, JSON-escaped: quotes and non-ASCII text can take 2-6 bytes each), hence
    # the bound on the bytes of events it carries.
    buffered_retry_ms: int = Field(
        100, ge=0, le=10_000, description="the retry: hint of a long-poll response"
    )
    buffered_max_bytes: int = Field(
        1 << 20,
        ge=65_536,
        le=2 << 20,
        description="bytes of events in one long-poll response (at least one event)",
    )
