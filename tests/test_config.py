"""params.yaml loads into typed, frozen objects; bad keys, types and ranges are one-line errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from specgan.core.config import ConfigError, load_params
from tests.services import ROOT, run_cli


def test_real_params_hold_the_spec_values(params):
    f, m, t, r = params.features, params.model, params.train, params.render
    assert (f.sample_rate, f.clip_samples, f.tail_pad, f.n_fft, f.hop_length) == (16000, 16384, 128, 256, 128)
    assert (f.n_bins, f.n_frames) == (129, 128)
    assert (m.latent_dim, m.model_dim, m.kernel_size) == (100, 64, 5)
    assert t.loss == "dcgan" and t.optim.lr == 2e-4 and t.optim.beta2 == 0.999 and t.batch_size == 64
    assert t.wgan_gp.d_steps == 5 and t.wgan_gp.gp_weight == 10.0 and t.wgan_gp.beta2 == 0.9
    assert (r.griffin_lim_iters, r.momentum, r.pad_frames) == (20, 0.99, 100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.epochs = 3  # type: ignore[misc]


def _write(tmp_path, mutate):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["train"].update(epochz=3), "train.epochz: unknown key"),
    (lambda r: r["train"].update(batch_size="64"), "train.batch_size: expected int, got str '64'"),
    (lambda r: r["train"].update(batch_size=0), "train.batch_size: must be >= 1, got 0"),
    (lambda r: r["train"]["dcgan"].update(lr=-1.0), "train.dcgan.lr: must be > 0, got -1.0"),
    (lambda r: r["train"].update(loss="vae"), "train.loss: expected one of 'dcgan', 'wgan_gp', got 'vae'"),
    (lambda r: r["model"].pop("model_dim"), "model.model_dim: missing"),
    (lambda r: r["train"].update(compile="yes"), "train.compile: expected bool"),
])
def test_bad_params_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError) as info:
        load_params(_write(tmp_path, mutate))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_overrides_are_validated_too():
    assert load_params(ROOT / "params.yaml", ["train.epochs=2"]).train.epochs == 2
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_params(ROOT / "params.yaml", ["train.nope=1"])


def test_cli_reports_config_errors_in_one_line(tmp_path):
    path = _write(tmp_path, lambda r: r["features"].update(shards=0))
    proc = run_cli("features", "--params", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "f"),
                   check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"specgan features: error: {path}: features.shards: must be >= 1, got 0"]


def test_every_subcommand_has_help():
    from specgan.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert run_cli(name, "--help").stdout.startswith(f"usage: specgan {name}")


def test_params_refuse_nan_infinity_and_yaml_aliases(tmp_path):
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(ConfigError, match="train.dcgan.lr: must be a finite number"):
            load_params(ROOT / "params.yaml", [f"train.dcgan.lr={value}"])
    with pytest.raises(ConfigError, match="registry.gate_margin: must be a finite number"):
        load_params(ROOT / "params.yaml", ["registry.gate_margin=NaN"])
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
           "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    (tmp_path / "params.yaml").write_text(bomb)
    proc = run_cli("stats", "--features", "f", "--out", "s.json", "--params", str(tmp_path / "params.yaml"),
                   check=False)
    assert proc.returncode == 1 and "YAML aliases (*name) are not allowed" in proc.stderr


def test_set_values_are_plain_scalars():
    p = load_params(ROOT / "params.yaml", ["registry.model_name=on", "data.source=0x2", "train.dcgan.lr=1e-4"])
    assert p.registry.model_name == "on" and p.data.source == "0x2" and p.train.dcgan.lr == 1e-4
    with pytest.raises(ConfigError, match="train.compile: expected bool, got str 'on'"):
        load_params(ROOT / "params.yaml", ["train.compile=on"])
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_params(ROOT / "params.yaml", ["train.epochs=!!python/object:os.system"])


def test_version_and_output_permissions_follow_the_umask(tmp_path, kit_dir):
    proc = run_cli("--version")
    assert proc.stdout.startswith("specgan ") and proc.stdout.split()[1][0].isdigit()
    import os

    old = os.umask(0o027)  # the child inherits it
    try:
        run_cli("features", "--data", str(kit_dir), "--out", str(tmp_path / "f"), "--split", "all")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "f" / "summary.json").stat().st_mode & 0o777 == 0o640


def test_huge_params_are_refused_before_parsing_and_huge_values_in_one_line(tmp_path):
    import time

    big = tmp_path / "params.yaml"
    big.write_text((ROOT / "params.yaml").read_text() + "# " + "x" * (2 * 2**20) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="more than a params file holds"):
        load_params(big)
    assert time.perf_counter() - t0 < 1
    with pytest.raises(ConfigError, match="data.source: 100,000 characters, more than a param holds"):
        load_params(ROOT / "params.yaml", ["data.source=" + "a" * 100_000])
