"""``serverless-sse create-table``: the DynamoDB store's table, on AWS or a local emulator."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_TIMEOUT = 60.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "create-table",
        help="create the DynamoDB store's table",
        description=(
            "Create the table the DynamoDB store needs (partition key channel, sort key seq, "
            "on-demand capacity, TTL on x), wait until it is active, and print the SSE_STORE "
            "URL that uses it. TABLE is a table name or a dynamodb:// URL (--region and "
            "--endpoint-url override the URL's). AWS credentials come the usual boto3 ways; "
            "a local emulator (moto, DynamoDB Local) accepts any. Deployments get the same "
            "table from infra/dynamodb-table.yml instead. Exits 1 when the table already "
            "exists, unless --exist-ok (then it must have the store's keys and TTL)."
        ),
    )
    parser.add_argument("table", metavar="TABLE", help="table name, or dynamodb://TABLE?...")
    parser.add_argument("--region", help="AWS region (default: boto3's, e.g. AWS_REGION)")
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="another endpoint than AWS's (an emulator)"
    )
    parser.add_argument(
        "--exist-ok",
        action="store_true",
        help="an existing table that fits the store is fine (exit 0)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for each call and for the table to be active ({DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        WaiterError,
    )

    from ..stores.dynamodb import create_table, is_table_name, parse_url, table_problems
    from .common import fail, note

    table, options = args.table, dict[str, str]()
    if table.startswith("dynamodb:"):
        try:
            table, options = parse_url(table)
        except ValueError as exc:
            return fail(str(exc), 2)
    elif not is_table_name(table):
        return fail(
            f"{table!r} is not a DynamoDB table name (3 to 255 letters, digits, '_', '-', '.')",
            2,
        )
    region = args.region or options.get("region")
    endpoint_url = args.endpoint_url or options.get("endpoint_url")
    if args.timeout <= 0:
        return fail("--timeout must be positive", 2)
    where = f" at {endpoint_url}" if endpoint_url else ""
    try:
        created = create_table(
            table, region=region, endpoint_url=endpoint_url, timeout=args.timeout
        )
        problems = (
            []
            if created
            else table_problems(
                table, region=region, endpoint_url=endpoint_url, timeout=args.timeout
            )
        )
    except NoRegionError:
        return fail("no AWS region: pass --region (or set AWS_REGION)", 2)
    except NoCredentialsError:
        return fail(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile;"
            " a local emulator accepts any values)"
        )
    except EndpointConnectionError as exc:
        return fail(f"cannot reach DynamoDB{where}: {exc}")
    except WaiterError:
        return fail(f"table {table} was created but is not active after {args.timeout:g} s")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "error"), error.get("Message", str(exc))
        return fail(f"DynamoDB{where} refused {exc.operation_name}: {code}: {message}")
    except BotoCoreError as exc:
        return fail(f"DynamoDB{where}: {exc}")
    if not created:
        if not args.exist_ok:
            return fail(f"table {table} already exists{where} (--exist-ok accepts it)")
        if problems:
            return fail(f"table {table} already exists{where}, but " + "; and ".join(problems))
        note(f"table {table} already exists{where}, with the store's keys and TTL")
    else:
        note(f"created table {table}{where} (keys channel and seq, on-demand, TTL on x)")
    # The SSE_STORE URL, with the options this run was given (boto3's defaults stay implicit).
    query = urlencode(
        {
            name: value
            for name, value in (("region", region), ("endpoint_url", endpoint_url))
            if value
        },
        safe=":/",
    )
    print(f"dynamodb://{table}" + (f"?{query}" if query else ""))
    return 0
