"""Named recipes: each holds exactly SPEC.md's values where it claims to, the main job trains `stable`, one
command switches, and a run's label says which recipe it used and what differs from it."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import yaml

from specgan.core.config import ConfigError, load_params
from tests.services import ROOT, run_cli

NO_STABILIZERS = {"model.minibatch_std": 0, "model.spectral_norm": False, "model.conditional": False,
                  "train.envelope_weight": 0.0, "train.envelope_quantile_weight": 0.0, "train.g_ema": 0.0,
                  "train.class_balance": 0.0, "train.cutout": 0.0}


def values(p, keys):
    out = {}
    for key in keys:
        node = p
        for part in key.split("."):
            node = getattr(node, part)
        out[key] = node
    return out


def test_the_seed_recipe_is_the_matlab_example_of_spec_md():
    p = load_params(ROOT / "params.yaml", ["recipe=seed"])
    assert p.recipe == "seed"
    assert p.data.split == "all"  # SPEC.md 1: the MATLAB example trains on every file it finds
    assert (p.model.latent_dim, p.model.model_dim, p.model.kernel_size, p.model.leaky_slope) == (100, 64, 5, 0.2)
    assert p.model.upsample == "zeros"  # SPEC.md 5: transposed convolutions
    t = p.train
    assert (t.loss, t.batch_size, t.epochs, t.checkpoint_every_epochs) == ("dcgan", 64, 1000, 10)
    assert (t.optim.lr, t.optim.beta1, t.optim.beta2, t.optim.eps, t.optim.d_steps) == (2e-4, 0.5, 0.999, 1e-8, 1)
    assert (t.optim.r1_weight, t.optim.d_lr_scale) == (0.0, 1.0)
    assert values(p, NO_STABILIZERS) == NO_STABILIZERS
    assert (p.normalize.scale, p.normalize.clip) == (3.0, 1.0)  # SPEC.md 4
    assert (p.render.griffin_lim_iters, p.render.momentum, p.render.pad_frames) == (20, 0.99, 100)  # SPEC.md 8


def test_the_paper_recipe_is_wgan_gp_as_spec_md_states_it():
    p = load_params(ROOT / "params.yaml", ["recipe=paper"])
    t = p.train
    assert p.recipe == "paper" and p.data.split == "train"  # the paper trains on train/
    assert (t.loss, t.batch_size) == ("wgan_gp", 64)
    assert (t.optim.lr, t.optim.beta1, t.optim.beta2, t.optim.d_steps, t.optim.gp_weight) == (1e-4, 0.5, 0.9, 5, 10.0)
    assert t.optim.r1_weight == 0.0 and values(p, NO_STABILIZERS) == NO_STABILIZERS


def test_the_main_job_trains_the_stable_recipe_and_the_demo_extends_it():
    main = load_params(ROOT / "params.yaml")
    assert main.recipe == "stable"  # params.yaml's sections hold exactly recipes.stable
    assert main.model.minibatch_std == 4 and main.train.optim.r1_weight == 0.3 and main.train.g_ema > 0
    assert (main.model.model_dim, main.train.batch_size, main.train.epochs) == (64, 64, 1000)  # SPEC.md's size
    demo = load_params(ROOT / "params.yaml", ["recipe=demo"])
    assert demo.recipe == "demo" and (demo.model.model_dim, demo.train.batch_size, demo.train.epochs) == (8, 8, 100)
    assert demo.model.minibatch_std == main.model.minibatch_std  # from stable, not a second copy
    assert demo.model.conditional and not main.model.conditional and demo.train.class_balance == 1.0
    real = load_params(ROOT / "params.yaml", ["recipe=demo_real"])  # `specgan demo --source`
    assert real.train.envelope_weight == 0.0 < demo.train.envelope_weight
    assert real.model == demo.model and real.train == replace(demo.train, envelope_weight=0.0, class_groups=True)


def test_recipe_command_switches_keeps_comments_and_labels_changes(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = run_cli("recipe", "seed", cwd=tmp_path)
    assert "now holds recipe seed" in proc.stdout
    text = (tmp_path / "params.yaml").read_text()
    assert "# stabilizer (not in SPEC.md)" in text  # comments kept: the file stays the one people read
    raw = yaml.safe_load(text)
    assert raw["recipe"] == "seed" and raw["model"]["minibatch_std"] == 0 and raw["data"]["split"] == "all"
    assert load_params(tmp_path / "params.yaml").recipe == "seed"
    # A value changed by hand (or by `dvc exp run -S`) shows in the label MLflow and the gallery show.
    raw["train"]["dcgan"]["lr"] = 1e-3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert load_params(tmp_path / "params.yaml").recipe == "seed, train.dcgan.lr=0.001"
    run_cli("recipe", "stable", cwd=tmp_path)
    assert load_params(tmp_path / "params.yaml").recipe == "stable"
    listed, n = run_cli("recipe", cwd=tmp_path).stdout, len(raw["recipes"]["seed"])  # every recipe sets seed's keys
    assert "recipe stable" in listed and f"demo: {n} values (extends stable)" in listed


def test_an_unknown_recipe_is_one_line_and_changes_nothing(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_bytes()
    proc = run_cli("recipe", "fastest", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "specgan recipe: error: recipe: no recipe named 'fastest' (known: seed, paper, stable, demo, demo_real)"]
    assert (tmp_path / "params.yaml").read_bytes() == before
    with pytest.raises(ConfigError, match="no recipe named 'x'"):
        load_params(ROOT / "params.yaml", ["recipe=x"])


def test_a_recipe_key_that_seed_does_not_list_is_refused(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["recipes"]["stable"]["train.seed"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="recipes.seed: must list SPEC.md's value of every key a recipe sets; "
                                          "missing train.seed"):
        load_params(tmp_path / "params.yaml")


def test_the_full_recipe_on_a_cpu_says_how_long_and_what_to_run_instead(prepared, tmp_path):
    """`specgan train` at params.yaml's defaults with no GPU: one line, before any work or MLflow run."""
    feats, stats = prepared
    proc = run_cli("train", "--features", str(feats), "--stats", str(stats), "--out", str(tmp_path / "t"),
                   "--params", str(ROOT / "params.yaml"), cwd=tmp_path,
                   env={"SPECGAN_DEVICE": "", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"},
                   check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("specgan train: error: recipe stable is a GPU job: ") and "hours on a CPU" in line
    assert "`specgan recipe demo`" in line and "train.device=cpu trains here anyway" in line
    assert not (tmp_path / "t" / "checkpoints").exists() and not (tmp_path / "m.db").exists()
