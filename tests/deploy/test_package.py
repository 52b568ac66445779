"""The deployable service: ``infra/package.py`` builds the artifact, the pinned Serverless
Framework packages ``serverless.yml`` without any network (every outgoing request goes to a
dead proxy), ``cfn-lint`` checks the CloudFormation template it generates, and the template
and the artifact say what the deployment will be.

The first run installs the framework (npm) and the dependencies (pip) for the Lambda runtime;
later runs reuse both (node_modules/ and build/deps/).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.routing import Mount, Route

from functions.app import routes as all_routes
from serverless_sse.settings import Settings
from tests.lambda_container import http_api_event
from tests.servers import ROOT, free_port, wait_for_port

pytestmark = pytest.mark.deploy

ARTIFACT = ROOT / "build" / "package" / "serverless-sse.zip"
FAMILIES = ("channels", "metrics", "tasks", "realtime", "groupchat")
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there


@dataclass
class Packaged:
    output: str
    template_path: Path
    template: dict[str, Any]
    state: dict[str, Any]

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def function(self, name: str) -> dict[str, Any]:
        logical = name[0].upper() + name[1:] + "LambdaFunction"
        properties: dict[str, Any] = self.resources[logical]["Properties"]
        return properties

    def functions(self) -> dict[str, dict[str, Any]]:
        return {
            logical.removesuffix("LambdaFunction"): resource["Properties"]
            for logical, resource in self.resources.items()
            if resource["Type"] == "AWS::Lambda::Function"
        }

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == kind}


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def package_template(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``infra/package.py --step template`` (the artifact is built already), offline."""
    offline = {
        **os.environ,
        # Dummy credentials, and any request to anywhere fails at once.
        "AWS_ACCESS_KEY_ID": "dummy",
        "AWS_SECRET_ACCESS_KEY": "dummy",
        "HTTPS_PROXY": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "https_proxy": DEAD_PROXY,
        "http_proxy": DEAD_PROXY,
    }
    offline.pop("AWS_SESSION_TOKEN", None)
    template = ["--step", "template", "--stage", "test", "--out", str(out), "--", *options]
    return subprocess.run(
        [sys.executable, "infra/package.py", *template],
        cwd=ROOT,
        env=offline,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_packaged(out: Path, output: str) -> Packaged:
    template_path = out / "cloudformation-template-update-stack.json"
    state = json.loads((out / "serverless-state.json").read_text())
    return Packaged(output, template_path, json.loads(template_path.read_text()), state)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    run(["scripts/ensure-serverless.sh"])
    run([sys.executable, "infra/package.py", "--step", "artifact"])
    out = tmp_path_factory.mktemp("serverless")
    done = package_template(out)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return read_packaged(out, output)


# -- the framework and the linter ------------------------------------------------------------


def test_the_framework_packages_offline_and_warns_only_about_the_runtime(
    packaged: Packaged,
) -> None:
    assert "Service packaged" in packaged.output
    # v3's schema predates python3.13; anything else it flags is a mistake in serverless.yml.
    flagged = re.findall(r"^\s+at '([^']+)'", packaged.output, flags=re.MULTILINE)
    assert flagged == ["provider.runtime"]
    assert packaged.function("channels")["Runtime"] == "python3.13"


def test_cfn_lint_passes_on_the_generated_template(packaged: Packaged) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format=json", packaged.template_path],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    # The one finding allowed is the framework's own: each HTTP API route it generates says
    # DependsOn its integration, which its Target already references (W3005, a warning).
    unexpected = [
        f
        for f in findings
        if not (
            f["Rule"]["Id"] == "W3005"
            and f["Location"]["Path"][0] == "Resources"
            and f["Location"]["Path"][1].startswith("HttpApiRoute")
        )
    ]
    assert unexpected == [], json.dumps(unexpected, indent=1)
    assert done.returncode in (0, 4), done.stderr  # 4: warnings only


# -- functions ---------------------------------------------------------------------------------


def environment(function: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function["Environment"]["Variables"]
    return variables


def targets(resource: dict[str, Any], key: str) -> str:
    """The logical id a property references (``Ref`` or ``Fn::GetAtt``)."""
    value = resource["Properties"][key]
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def streaming_functions(packaged: Packaged) -> dict[str, dict[str, Any]]:
    return {
        name: function
        for name, function in packaged.functions().items()
        if environment(function).get("SSE_MODE") == "stream"
    }


def test_a_longer_window_takes_the_streaming_functions_timeout_with_it(
    packaged: Packaged, tmp_path: Path
) -> None:
    # The one parameter alone: the timeout follows it (never left at the default's 330 s).
    done = package_template(tmp_path, "--param=streamWindowSeconds=840")
    assert done.returncode == 0, done.stdout + done.stderr
    longer = streaming_functions(read_packaged(tmp_path, done.stdout + done.stderr))
    assert sorted(longer) == sorted(f"{family[0].upper()}{family[1:]}Stream" for family in FAMILIES)
    for function in longer.values():
        assert environment(function)["SSE_WINDOW_SECONDS"] == "840"
        assert 840 < function["Timeout"] <= 900
    every = [*longer.values(), *streaming_functions(packaged).values()]
    margins = {f["Timeout"] - float(environment(f)["SSE_WINDOW_SECONDS"]) for f in every}
    assert len(margins) == 1, "the same margin for every window"


@pytest.mark.parametrize(("window", "why"), [("880", "is too long"), ("0", "must be a positive")])
def test_a_window_that_cannot_fit_lambda_s_limit_is_refused_when_packaging(
    packaged: Packaged, tmp_path: Path, window: str, why: str
) -> None:
    done = package_template(tmp_path, f"--param=streamWindowSeconds={window}")
    assert done.returncode != 0
    assert why in done.stdout + done.stderr
    assert not (tmp_path / "cloudformation-template-update-stack.json").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_streaming_functions_stream_through_a_function_url_and_the_web_adapter(
    packaged: Packaged, family: str
) -> None:
    name = f"{family}Stream"
    function = packaged.function(name)
    logical = f"{name[0].upper()}{name[1:]}LambdaFunction"
    env = environment(function)
    assert function["Handler"] == "infra/lambda/run.sh"
    assert any(":layer:LambdaAdapterLayerX86:" in layer for layer in function["Layers"])
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["SSE_APP"] == f"functions.{family}:app"
    assert env["SSE_MODE"] == "stream"
    assert function["Timeout"] > float(env["SSE_WINDOW_SECONDS"])
    assert function["Timeout"] <= 900
    urls = [
        u
        for u in packaged.of_type("AWS::Lambda::Url").values()
        if targets(u, "TargetFunctionArn") == logical
    ]
    assert [u["Properties"]["InvokeMode"] for u in urls] == ["RESPONSE_STREAM"]
    assert urls[0]["Properties"]["AuthType"] == "NONE"  # the service checks credentials
    granted = {
        p["Properties"]["Action"]: p["Properties"]
        for p in packaged.of_type("AWS::Lambda::Permission").values()
        if targets(p, "FunctionName") == logical
    }
    assert granted["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert granted["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True


@pytest.mark.parametrize("family", [*FAMILIES, "dashboard"])
def test_buffered_functions_answer_through_mangum_within_the_http_apis_cut(
    packaged: Packaged, family: str
) -> None:
    function = packaged.function(family)
    env = environment(function)
    assert function["Handler"] == f"functions.{family}.handler"
    assert "Layers" not in function
    assert env["SSE_MODE"] == "buffered"
    assert float(env["SSE_BUFFERED_WAIT_SECONDS"]) < function["Timeout"] < 30


def test_every_route_reaches_its_familys_function_through_the_http_api(
    packaged: Packaged,
) -> None:
    integrations = {
        logical: targets(resource, "IntegrationUri")
        for logical, resource in packaged.of_type("AWS::ApiGatewayV2::Integration").items()
    }
    api_routes = []
    for resource in packaged.of_type("AWS::ApiGatewayV2::Route").values():
        method, path = resource["Properties"]["RouteKey"].split(" ", 1)
        integration = resource["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        api_routes.append((method, path, integrations[integration]))

    def reached(path: str) -> str:
        """The function API Gateway picks for ``path``: an exact route, else the greedy
        ``{proxy+}`` route with the longest prefix."""
        exact = [f for m, p, f in api_routes if m == "ANY" and p == path]
        if exact:
            return exact[0]
        greedy = [
            (len(p), f)
            for m, p, f in api_routes
            if m == "ANY" and p.endswith("/{proxy+}") and path.startswith(p[: -len("{proxy+}")])
        ]
        assert greedy, f"no HTTP API route for {path}"
        return max(greedy)[1]

    checked = 0
    for route in all_routes:
        if isinstance(route, Route):
            path = re.sub(r"\{[^}:]+:path\}", "a/b", route.path)
            path = re.sub(r"\{[^}]+\}", "x", path)
            module = route.endpoint.__module__
        else:
            assert isinstance(route, Mount)
            path, module = route.path + "/js/main.js", "functions.dashboard"
        family = module.removeprefix("functions.")
        assert reached(path) == family[0].upper() + family[1:] + "LambdaFunction", path
        checked += 1
    assert checked == len(all_routes) > 20


def test_the_worker_takes_jobs_from_the_queue_with_partial_batch_failures(
    packaged: Packaged,
) -> None:
    mappings = list(packaged.of_type("AWS::Lambda::EventSourceMapping").values())
    assert len(mappings) == 1
    mapping = mappings[0]
    assert targets(mapping, "EventSourceArn") == "JobsQueue"
    assert targets(mapping, "FunctionName") == "WorkerLambdaFunction"
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    worker = packaged.function("worker")
    assert worker["Handler"] == "functions.worker.handler"
    queue = packaged.resources["JobsQueue"]["Properties"]
    # AWS's advice for a queue that invokes a function: six times the function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]
    }


def test_the_event_table_expires_events_with_ttl(packaged: Packaged) -> None:
    table = packaged.resources["EventsTable"]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "x", "Enabled": True}
    assert table["DeletionPolicy"] == "Delete"  # a test stage; prod keeps it (Retain)


# -- settings and permissions --------------------------------------------------------------


def settings_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(f"SSE_{field.upper()}")
        alias = info.validation_alias
        names.update(getattr(alias, "choices", []) if alias is not None else [])
    return names


def test_settings_come_as_environment_variables_the_service_knows(packaged: Packaged) -> None:
    known = settings_names() | {"SSE_APP"}  # SSE_APP is the start script's
    for name, function in packaged.functions().items():
        env = environment(function)
        unknown = {v for v in env if v.startswith("SSE_")} - known
        assert not unknown, f"{name}: {unknown}"
    env = environment(packaged.function("channels"))
    assert env["SSE_STORE"] == {"Fn::Join": ["", ["dynamodb://", {"Ref": "EventsTable"}]]}
    assert env["SSE_QUEUE"] == {
        "Fn::Join": ["", ["sqs://", {"Fn::GetAtt": ["JobsQueue", "QueueName"]}]]
    }
    assert env["SSE_ALLOW_ANONYMOUS"] == "false"
    assert env["SSE_WORKER"] == "off"
    assert int(env["SSE_MAX_STREAMS_PER_CLIENT"]) > 0
    assert float(env["SSE_PUBLISH_RATE_PER_CLIENT"]) > 0
    # Credentials are read when CloudFormation deploys, never written in the template.
    assert env["SSE_API_KEYS"].startswith("{{resolve:ssm:")
    assert env["SSE_JWT_SECRET"].startswith("{{resolve:secretsmanager:")


def statements(packaged: Packaged) -> Iterator[dict[str, Any]]:
    role = packaged.resources["IamRoleLambdaExecution"]["Properties"]
    for policy in role["Policies"]:
        yield from policy["PolicyDocument"]["Statement"]
    for policy in packaged.of_type("AWS::IAM::ManagedPolicy").values():
        yield from policy["Properties"]["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_permissions_name_the_table_and_the_queue_never_everything(packaged: Packaged) -> None:
    role = packaged.resources["IamRoleLambdaExecution"]["Properties"]
    # Only the service's own managed policies: no AWS-wide ones (AmazonDynamoDBFullAccess…).
    assert role["ManagedPolicyArns"] == [{"Ref": "EventsTableAccess"}, {"Ref": "JobsQueueSend"}]
    owners = {"dynamodb": {"EventsTable"}, "sqs": {"JobsQueue"}}
    seen = set()
    for statement in statements(packaged):
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        assert "*" not in actions and "*" not in resources, statement
        for service, tables in owners.items():
            if any(a.startswith(f"{service}:") for a in actions):
                seen.add(service)
                assert all(a.startswith(f"{service}:") for a in actions), statement
                for resource in resources:
                    assert isinstance(resource, dict), statement  # a reference, not a pattern
                    assert (resource.get("Ref") or resource["Fn::GetAtt"][0]) in tables
    assert seen == {"dynamodb", "sqs"}


# -- the artifact -------------------------------------------------------------------------------


def test_every_function_runs_the_one_artifact(packaged: Packaged) -> None:
    keys = {f["Code"]["S3Key"].rsplit("/", 1)[-1] for f in packaged.functions().values()}
    assert keys == {ARTIFACT.name}
    config = yaml.safe_load((ROOT / "serverless.yml").read_text())
    assert ROOT / config["package"]["artifact"] == ARTIFACT  # what a deploy uploads


def test_the_package_holds_the_library_the_functions_and_no_tests(packaged: Packaged) -> None:
    with zipfile.ZipFile(ARTIFACT) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    names = set(infos)
    for required in (
        "serverless_sse/__init__.py",
        "serverless_sse/lambda_handler.py",
        "serverless_sse/stores/lua/append.lua",
        "functions/channels.py",
        "functions/worker.py",
        "functions/static/index.html",
        "infra/lambda/run.sh",
    ):
        assert required in names, required
    # The dependencies, built for the runtime: pure Python and compiled ones.
    assert any(n.startswith("mangum/") for n in names)
    assert any(
        re.match(r"pydantic_core/_pydantic_core\.cpython-313-x86_64-linux-gnu\.so$", n)
        for n in names
    )
    assert not any(n.startswith(("tests/", "lib/", "bench/", "node_modules/", ".")) for n in names)
    ours = [n for n in names if n.startswith(("serverless_sse/", "functions/"))]
    assert not [n for n in ours if re.search(r"(^|/)(test_[^/]*|conftest)\.py$", n)]
    assert (infos["infra/lambda/run.sh"].external_attr >> 16) & 0o111  # executable
    assert len({i.date_time for i in infos.values()}) == 1  # reproducible: fixed times


@pytest.fixture(scope="module")
def unpacked(packaged: Packaged, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("task")  # what Lambda extracts into /var/task
    with zipfile.ZipFile(ARTIFACT) as archive:
        archive.extractall(root)
    (root / "infra" / "lambda" / "run.sh").chmod(0o755)
    return root


def runtime_python() -> str:
    spec = importlib.util.spec_from_file_location("infra_package", ROOT / "infra" / "package.py")
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    python: str | None = package.lambda_python()
    if python is None:
        pytest.skip("no Python 3.13 (the runtime's) on this machine")
    return python


def test_the_package_serves_a_request_through_mangum_on_the_runtimes_python(
    unpacked: Path,
) -> None:
    """Only the package, on Python 3.13 (-I: no site-packages, no PYTHONPATH): a handler
    imports, starts the service and answers an API Gateway event."""
    script = """
import json, sys
sys.path.insert(0, sys.argv[1])
import functions.channels as channels
print(json.dumps(channels.handler(json.loads(sys.argv[2]), None)))
"""
    event = json.dumps(http_api_event("GET", "/healthz"))
    done = subprocess.run(
        [runtime_python(), "-I", "-c", script, str(unpacked), event],
        capture_output=True,
        text=True,
        timeout=120,
        env={"SSE_STORE": "memory://", "SSE_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
        cwd=unpacked,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"status": "ok", "store": "memory"}


def test_the_packaged_start_script_serves_on_the_runtimes_python(unpacked: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(unpacked / "infra" / "lambda" / "run.sh")],
        cwd="/",
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHON": runtime_python(),
            "AWS_LWA_PORT": str(port),
            "SSE_APP": "functions.channels:app",
            "SSE_STORE": "memory://",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60, proc=proc)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.json() == {"status": "ok", "store": "memory"}
    finally:
        proc.terminate()
        proc.wait(10)
