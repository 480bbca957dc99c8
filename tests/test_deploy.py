"""``deploy/`` checked without a Docker engine or a cloud account.

Each artefact is parsed and held against the code it deploys: the commands and modules it starts
exist and accept the arguments given, the files it copies exist, the environment variables it
sets are ones daskless reads, the SAM template passes ``cfn-lint`` and the Knative manifest has
the fields Knative requires.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pathlib
import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from daskless import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SOURCES = [ROOT / "daskless", ROOT / "worker_runtime"]

# -- helpers -----------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (``!Ref x`` -> ``{"Ref": x}``)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    return yaml.load((DEPLOY / "aws" / "template.yaml").read_text(), Loader=_CfnLoader)  # type: ignore[no-any-return]


class Stage:
    """One stage of a Dockerfile: its name and instructions as ``(keyword, argument)``."""

    def __init__(self, base: str, name: str | None) -> None:
        self.base, self.name = base, name
        self.instructions: list[tuple[str, str]] = []

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def exec_form(self, keyword: str) -> list[str]:
        (last,) = self.args(keyword)[-1:]
        return list(yaml.safe_load(last))  # a JSON array is valid YAML


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of ``deploy/Dockerfile``."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE",
                           "ENTRYPOINT", "CMD", "LABEL"}, f"unexpected instruction {line!r}"
        if keyword == "FROM":
            words = rest.split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        elif keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args.setdefault(name.strip(), value.strip())
        if stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def parsed_cli(argv: list[str]) -> argparse.Namespace:
    """The namespace ``daskless <argv>`` parses to, without running the command."""

    class Parsed(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise Parsed(original(self, args, namespace))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(Parsed) as info:
            cli.main(argv)
    return info.value.args[0]  # type: ignore[no-any-return]


def _config_keys(tree: Any, prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path.replace("-", "_")
        if isinstance(value, dict):
            yield from _config_keys(value, path)


def env_name_is_read(name: str) -> bool:
    """Whether daskless reads environment variable ``name``."""
    if name.startswith("DASK_DASKLESS__"):
        defaults = yaml.safe_load((ROOT / "daskless" / "daskless.yaml").read_text())
        path = "daskless." + ".".join(name[len("DASK_DASKLESS__"):].lower().split("__"))
        return path in set(_config_keys(defaults))
    literal = re.compile(rf"[\"']{re.escape(name)}[\"']")
    return any(literal.search(p.read_text()) for src in SOURCES for p in src.rglob("*.py"))


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_stages_and_base_image() -> None:
    args, stages = dockerfile_stages()
    names = [s.name for s in stages]
    assert names == ["base", "lambda", "worker"]  # the last stage is the default target
    base = stages[0].base.replace("${PYTHON_VERSION}", args["PYTHON_VERSION"])
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    assert tuple(int(v) for v in args["PYTHON_VERSION"].split(".")) >= (3, 10)
    assert [s.base for s in stages[1:]] == ["base", "base"]


def test_dockerfile_copies_paths_that_exist_and_installs_the_distribution() -> None:
    args, stages = dockerfile_stages()
    copied = []
    for stage in stages:
        for arg in stage.args("COPY"):
            *sources, _destination = shlex.split(arg)
            copied += [s.replace("${REQUIREMENTS}", args["REQUIREMENTS"]) for s in sources]
    assert copied, "the image copies nothing"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
    # Every package of the distribution goes in, and the image installs it with the aws extra.
    include = re.search(r"^include = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert include is not None
    packages = {p.strip(' "*') for p in include.group(1).split(",")}
    # One namespace: daskless.scheduler and daskless.worker_runtime are links to their folders,
    # which the image must therefore hold too.
    assert packages == {"daskless"}
    assert {"daskless", "worker_runtime", "scheduler"} <= set(copied)
    runs = " ".join(stages[0].args("RUN"))
    assert 'pip install ".[aws]"' in runs and "-r /tmp/task-requirements.txt" in runs
    # The build context filter lets those paths through.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for source in copied:
        first = source.split("/")[0]
        assert any(p.lstrip("!").startswith((first, "**/")) for p in ignore if p.startswith("!"))


def test_dockerfile_worker_runs_a_real_daskless_command() -> None:
    _, stages = dockerfile_stages()
    worker = stages[-1]
    entry, command = worker.exec_form("ENTRYPOINT"), worker.exec_form("CMD")
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="daskless")
    assert entry == ["daskless"] and script.value == "daskless.cli:main"
    parsed = parsed_cli(command)
    assert parsed.command == "worker" and parsed.host == "0.0.0.0"
    assert f"{parsed.port}" in worker.args("EXPOSE")
    assert worker.args("USER") == ["daskless"]


def test_dockerfile_lambda_stage_runs_the_handler() -> None:
    _, stages = dockerfile_stages()
    stage = stages[1]
    assert stage.exec_form("ENTRYPOINT") == ["python", "-m", "awslambdaric"]
    assert any("awslambdaric" in run for run in stage.args("RUN"))
    (target,) = stage.exec_form("CMD")
    module, _, name = target.rpartition(".")
    handler = getattr(importlib.import_module(module), name)
    assert callable(handler) and module == "daskless.worker_runtime.lambda_handler"


# -- docker compose ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _interpolated(value: str) -> str:
    """A compose value with its ``${VAR...}`` references replaced by a sample value."""
    return re.sub(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", "sample", value)


def test_compose_services_are_wired() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "gateway", "dashboard"}
    redis_command = services["redis"]["command"]
    assert redis_command[0] == "redis-server" and "--requirepass" in redis_command
    build = services["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert build["target"] in {s.name for s in dockerfile_stages()[1]}
    default_requirements = re.fullmatch(r"\$\{\w+:-(.+)\}", build["args"]["REQUIREMENTS"])
    assert default_requirements and (ROOT / default_requirements.group(1)).exists()
    # The dashboard runs the image the gateway service builds.
    assert services["dashboard"]["image"] == services["gateway"]["image"]
    assert services["dashboard"]["build"] == build
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services


def test_compose_commands_are_real_daskless_commands() -> None:
    services = compose()["services"]
    gateway = parsed_cli([_interpolated(a) if "$" not in a else "4"
                          for a in services["gateway"]["command"]])
    assert gateway.command == "gateway" and gateway.host == "0.0.0.0"
    dashboard = parsed_cli(services["dashboard"]["command"])
    assert dashboard.command == "dashboard" and dashboard.host == "0.0.0.0"
    published = {int(p.split(":")[1]) for p in services["gateway"]["ports"]}
    assert gateway.port in published
    assert dashboard.port in {int(p.split(":")[1]) for p in services["dashboard"]["ports"]}


def test_compose_store_url_reaches_the_redis_service_with_its_password() -> None:
    services = compose()["services"]
    for name in ("gateway", "dashboard"):
        url = services[name]["environment"]["DASK_DASKLESS__STORE"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/\d+", url), url
    assert "DASK_DASKLESS__AUTH__SECRET" in services["gateway"]["environment"]


# -- Knative -----------------------------------------------------------------------------------


def test_knative_service_has_the_required_fields() -> None:
    manifest = yaml.safe_load((DEPLOY / "knative" / "service.yaml").read_text())
    assert manifest["apiVersion"] == "serving.knative.dev/v1"
    assert manifest["kind"] == "Service"
    assert manifest["metadata"]["name"]
    template = manifest["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert all(k.startswith("autoscaling.knative.dev/") for k in annotations)
    assert all(isinstance(v, str) for v in annotations.values())  # Kubernetes wants strings
    spec = template["spec"]
    assert isinstance(spec["containerConcurrency"], int) and spec["containerConcurrency"] >= 0
    (container,) = spec["containers"]
    assert container["image"]
    (port,) = container["ports"]
    assert port["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(secrets) == {"DASK_DASKLESS__STORE", "DASK_DASKLESS__AUTH__SECRET"}
    parsed = parsed_cli(container["args"])
    assert parsed.command == "worker" and parsed.port == port["containerPort"]
    assert parsed.host == "0.0.0.0" and parsed.invoke_url.startswith("http://")


# -- AWS SAM -----------------------------------------------------------------------------------


def _cfn_lint(path: pathlib.Path) -> list[str]:
    from cfnlint.api import lint_file

    return [str(match) for match in lint_file(path)]


def test_sam_template_passes_cfn_lint() -> None:
    assert _cfn_lint(DEPLOY / "aws" / "template.yaml") == []


def test_cfn_lint_catches_a_broken_template(tmp_path: pathlib.Path) -> None:
    broken = (DEPLOY / "aws" / "template.yaml").read_text().replace(
        "ReservedConcurrentExecutions:", "ReservedConcurrentExecution:"
    )
    (tmp_path / "template.yaml").write_text(broken)
    problems = _cfn_lint(tmp_path / "template.yaml")
    assert any("ReservedConcurrentExecution" in p for p in problems), problems


def test_sam_function_is_the_daskless_lambda_image() -> None:
    template = load_template()
    function = template["Resources"]["WorkerFunction"]
    props, meta = function["Properties"], function["Metadata"]
    assert function["Type"] == "AWS::Serverless::Function" and props["PackageType"] == "Image"
    assert (DEPLOY / "aws" / meta["DockerContext"] / meta["Dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile")
    assert meta["DockerBuildTarget"] == "lambda"
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert "ReservedConcurrency" in template["Parameters"]
    assert props["MemorySize"] and props["Timeout"]
    # It may invoke itself (fan-out), or the functions of other sizes under a common prefix,
    # and is its own on-failure destination (lost instances).
    (policy,) = props["Policies"]
    assert policy["LambdaInvokePolicy"]["FunctionName"] == {
        "Fn::If": ["HasInvokePrefix", {"Ref": "InvokePrefix"}, {"Ref": "FunctionName"}]}
    sizes = props["Environment"]["Variables"]["DASK_DASKLESS__LAMBDA__FUNCTIONS"]
    assert sizes == {"Fn::If": ["HasSizes", {"Ref": "SizeFunctions"}, {"Ref": "AWS::NoValue"}]}
    invoke_config = props["EventInvokeConfig"]
    assert invoke_config["MaximumRetryAttempts"] == 0
    destination = invoke_config["DestinationConfig"]["OnFailure"]
    assert destination["Type"] == "Lambda"
    assert destination["Destination"]["Fn::Sub"].endswith(":function:${FunctionName}")


# -- environment variables ---------------------------------------------------------------------


def deploy_env_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    services = compose()["services"]
    names["compose"] = {n for s in ("gateway", "dashboard") for n in services[s]["environment"]}
    manifest = yaml.safe_load((DEPLOY / "knative" / "service.yaml").read_text())
    names["knative"] = {e["name"] for e in manifest["spec"]["template"]["spec"]["containers"][0]
                        ["env"]}
    function = load_template()["Resources"]["WorkerFunction"]["Properties"]
    names["sam"] = set(function["Environment"]["Variables"])
    _, stages = dockerfile_stages()
    names["dockerfile"] = {
        arg.split("=")[0] for s in stages for env in s.args("ENV") for arg in env.split()
        if "=" in arg and not arg.startswith(("PYTHON", "PIP_"))  # the interpreter's and pip's
    }
    return names


def test_env_var_names_in_deploy_are_read_by_daskless() -> None:
    for artefact, names in deploy_env_names().items():
        for name in names:
            assert env_name_is_read(name), f"{artefact} sets {name}, which daskless never reads"


def test_the_env_name_check_refuses_unknown_names() -> None:
    assert env_name_is_read("DASK_DASKLESS__AUTH__SECRET")
    assert env_name_is_read("DASK_DASKLESS__LAMBDA__ENDPOINT_URL")
    assert env_name_is_read("DASKLESS_STORE")
    assert not env_name_is_read("DASK_DASKLESS__AUTH__PASSWORD")
    assert not env_name_is_read("DASKLESS_REDIS_URL")
