"""The README cannot drift: its commands parse, its configuration table matches params.yaml,
and CI runs the set-up and test commands it shows."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from specgan.cli import build_parser
from specgan.core.tracking import flatten
from tests.services import BIN, ROOT

README = (ROOT / "README.md").read_text()


def shell_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_every_specgan_command_parses():
    found = [c for c in shell_commands() if c[0] == "specgan"]
    assert len(found) >= 15
    parser = build_parser()
    for cmd in found:
        parser.parse_args(cmd[1:])  # exits (fails the test) on an unknown command or option


def test_every_kubeflow_command_parses():
    from pipeline.cli import build_parser as kfp_parser

    found = [c for c in shell_commands() if c[0] == "specgan-kfp"]
    assert len(found) >= 3
    for cmd in found:
        kfp_parser().parse_args(cmd[1:])


@pytest.mark.parametrize("tool", ["dvc", "mlflow"])
def test_every_dvc_and_mlflow_subcommand_exists(tool):
    found = [c for c in shell_commands() if c[0] == tool]
    assert found
    for cmd in found:
        words = [w for w in cmd[1:3] if not w.startswith("-")]
        sub = words[:2] if tool == "mlflow" and words[:1] == ["models"] else words[:1]
        if tool == "dvc" and words[:1] in (["exp"], ["plots"], ["remote"]):
            sub = words[:2]
        proc = subprocess.run([str(BIN / tool), *sub, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (cmd, proc.stderr[-500:])
        for opt in (w.split("=")[0] for w in cmd if w.startswith("--")):
            assert opt in proc.stdout, (cmd, opt)


def test_setup_and_test_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [" ".join(c) for c in shell_commands()]
    setup = 'python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e .[dev]'
    assert setup in commands and "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e \".[dev]\"" in ci
    assert ".venv/bin/python -m pytest" in commands and ".venv/bin/python -m pytest" in ci


def test_configuration_table_lists_every_param_with_its_default(params):
    """docs/configuration.md, which the README links, lists every key with its default."""
    assert "(docs/configuration.md)" in README
    table = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9_.]+)` \| `(.*?)` \|", table, flags=re.M))
    flat = flatten(params.to_dict())
    assert set(rows) == set(flat)
    for key, value in flat.items():
        assert json.loads(rows[key]) == value, key
