"""``serverless-sse token``: mint an HS256 token with channel grants (for local use and tests).

Also ``serverless-sse hash-key``: the ``sha256:`` form an API key is configured in.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "token",
        help="mint a token granting channel patterns",
        description=(
            "Print an HS256 JWT for SUBJECT, signed with SSE_JWT_SECRET (or --secret), granting "
            "the channel patterns given with --publish and --subscribe ('*' stays within one "
            "'/' segment, '**' crosses segments)."
        ),
    )
    parser.add_argument("subject", help="the token's subject (sub claim): who holds it")
    parser.add_argument(
        "--publish", action="append", default=[], metavar="PATTERN", help="repeatable"
    )
    parser.add_argument(
        "--subscribe", action="append", default=[], metavar="PATTERN", help="repeatable"
    )
    parser.add_argument(
        "--ttl", type=float, default=3600, metavar="SECONDS", help="lifetime (default 3600)"
    )
    parser.add_argument("--secret", help="the HS256 secret (default: SSE_JWT_SECRET)")
    parser.add_argument("--audience", help="aud claim (default: SSE_JWT_AUDIENCE)")
    parser.add_argument("--issuer", help="iss claim (default: SSE_JWT_ISSUER)")
    parser.set_defaults(run=run)

    hashing: argparse.ArgumentParser = subparsers.add_parser(
        "hash-key",
        help="print the form an API key is configured in",
        description="Print sha256:<hex> for KEY, the value to list in SSE_API_KEYS.",
    )
    hashing.add_argument("key", help="the API key clients will send")
    hashing.set_defaults(run=run_hash)


def run(args: argparse.Namespace) -> int:
    from ..auth import mint_token
    from ..settings import Settings
    from .common import fail

    settings = Settings()
    secret = args.secret or (settings.jwt_secret.get_secret_value() if settings.jwt_secret else "")
    if len(secret.encode()) < 32:
        return fail("a secret of 32+ bytes is needed: set SSE_JWT_SECRET or pass --secret")
    if args.ttl <= 0:
        return fail("--ttl must be positive")
    print(
        mint_token(
            secret,
            args.subject,
            publish=args.publish,
            subscribe=args.subscribe,
            ttl=args.ttl,
            audience=args.audience or settings.jwt_audience,
            issuer=args.issuer or settings.jwt_issuer,
        )
    )
    return 0


def run_hash(args: argparse.Namespace) -> int:
    from ..auth import hash_key

    print(hash_key(args.key))
    return 0
