"""Any Hugging Face model as a tenant: a folder (or cached id) resolves to a spec derived from its
config.json, runs end to end, and is refused with one line where it cannot run."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import FAST, tenancy, tenancy_here, write_scenario

from tenancy.analysis import roofline
from tenancy.core.errors import TenancyError
from tenancy.harness.scenario import parse_scenario
from tenancy.models import zoo
from tenancy.models.hf_folder import build_folder

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=512)
CONFIGS = {  # name: (config, causal)
    "qwen2": (dict(SMALL, model_type="qwen2", num_key_value_heads=2, max_position_embeddings=256), True),
    "qwen3": (dict(SMALL, model_type="qwen3", num_key_value_heads=2, head_dim=16, max_position_embeddings=256), True),
    "phi3": (dict(SMALL, model_type="phi3", num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2), True),
    "neox": (dict(SMALL, model_type="gpt_neox", max_position_embeddings=256), True),
    "modernbert": (dict(SMALL, model_type="modernbert", max_position_embeddings=128, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2), False),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {n: str(build_folder(root / n, c, causal=causal, tokenizer=False)) for n, (c, causal) in CONFIGS.items()}


@pytest.mark.parametrize("name,kind", [("qwen2", "decoder"), ("qwen3", "decoder"), ("phi3", "decoder"),
                                       ("neox", "decoder"), ("modernbert", "encoder")])
def test_a_folder_model_is_derived_from_its_config(folders, name, kind):
    from transformers import AutoModel, AutoModelForCausalLM

    spec = zoo.get(folders[name])
    assert (spec.kind, spec.path, spec.family) == (kind, folders[name], CONFIGS[name][0]["model_type"])
    assert spec.max_positions == CONFIGS[name][0]["max_position_embeddings"]
    loaded = (AutoModelForCausalLM if kind == "decoder" else AutoModel).from_pretrained(folders[name])
    n = sum(p.numel() for p in loaded.parameters())
    assert zoo.count_params(folders[name]) == n
    # the roofline leaves norms and biases out: within a few percent on a model this small
    assert roofline.weight_params(roofline.dims(folders[name])) == pytest.approx(n, rel=0.05)
    built = zoo.build(folders[name], weights="random")
    assert type(built).__name__ == type(loaded).__name__


def test_random_weights_need_only_config_json(tmp_path):
    path = build_folder(tmp_path / "cfg-only", CONFIGS["qwen3"][0], tokenizer=False, weights=False)
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]
    assert zoo.get(str(path)).kind == "decoder"
    assert type(zoo.build(str(path))).__name__ == "Qwen3ForCausalLM"
    t = dict(name="q", model=str(path), weights="pretrained")
    with pytest.raises(OSError):  # no weights file: pretrained cannot load (the tenant reports it)
        zoo.build(str(path), weights="pretrained")
    assert parse_scenario(dict(name="s", tenants=[dict(t, weights="random")])).tenants[0].task == "generate"


def test_pretrained_loads_the_folders_own_weights(folders):
    import torch
    from transformers import AutoModelForCausalLM

    ours = zoo.build(folders["qwen2"], weights="pretrained")
    ref = AutoModelForCausalLM.from_pretrained(folders["qwen2"])
    assert torch.equal(ours.lm_head.weight, ref.lm_head.weight)


def test_unknown_name_says_what_was_looked_for(tmp_path):
    with pytest.raises(zoo.UnknownModel, match="not a folder holding config.json, not a model id in the local"):
        zoo.get(str(tmp_path / "nowhere"))
    with pytest.raises(zoo.UnknownModel, match="known: bert-base"):
        zoo.get("nobody/no-such-model-xyz")


def test_models_cli_lists_a_folder_and_refuses_an_unknown_one(folders):
    proc = tenancy_here("models", folders["qwen3"], folders["modernbert"])
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in proc.stdout.splitlines() if ln.count("│") > 3}
    row = next(ln for name, ln in lines.items() if name.endswith("qwen3"))
    assert "decoder" in row and "qwen3" in row and "256" in row
    assert "encoder" in next(ln for name, ln in lines.items() if name.endswith("modernbert"))
    bad = tenancy_here("models", "/no/such/folder")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Hugging Face cache" in bad.stderr


@pytest.mark.parametrize("tenant,message", [
    (dict(model="modernbert", task="generate"), "needs a decoder"),
    (dict(model="qwen2", size="tiny"), "size: tiny shrinks zoo models only"),
    (dict(model="phi3", task="serve"), "no kernels for architecture 'phi3'"),
    (dict(model="neox", task="serve"), "supported: gpt2, llama, mistral, qwen2, qwen3"),
    (dict(model="modernbert", seq=200), "beyond"),
])
def test_validation_refuses_what_a_folder_model_cannot_do(folders, tenant, message):
    t = dict(name="t", **{**tenant, "model": folders[tenant["model"]]})
    with pytest.raises(TenancyError) as err:
        parse_scenario(dict(name="bad", **FAST, tenants=[t]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_serving_an_unsupported_architecture_is_one_line_exit_2(folders, tmp_path):
    path = write_scenario(tmp_path / "bad.yaml", name="bad", **FAST, tenants=[
        dict(name="t", model=folders["neox"], task="serve")])
    proc = tenancy("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "'gpt_neox'" in proc.stderr


def test_hf_engine_serves_any_decoder(folders):
    t = parse_scenario(dict(name="s", tenants=[dict(name="t", model=folders["phi3"], task="serve",
                                                    serving=dict(engine="hf"))])).tenants[0]
    assert t.serving.engine == "hf"


@pytest.mark.slow
def test_run_with_a_folder_encoder_and_a_folder_decoder(folders, tmp_path):
    path = write_scenario(tmp_path / "hf.yaml", name="hf", sharing="timeslice", **FAST, tenants=[
        dict(name="enc", model=folders["modernbert"], batch=1, seq=8),
        dict(name="dec", model=folders["qwen3"], weights="pretrained", batch=1, seq=8, new_tokens=4)])
    proc = tenancy_here("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [t["task"] for t in manifest["scenario"]["tenants"]] == ["forward", "generate"]
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert set(summary["tenant"]) == {"enc", "dec"} and set(summary["phase"]) == {"solo", "shared"}
    report = tenancy_here("report", tmp_path / "run")
    assert report.returncode == 0, report.stderr


def test_the_served_architectures_are_the_engines(folders):
    from tenancy.serving.config import SERVED_FAMILIES, ServingConfig
    from tenancy.serving.models import FAMILIES

    assert sorted(FAMILIES) == sorted(SERVED_FAMILIES)
    assert ServingConfig(model=folders["qwen2"]).model == folders["qwen2"]
    with pytest.raises(ValueError, match="no kernels for architecture 'phi3'"):
        ServingConfig(model=folders["phi3"])


def test_a_model_id_in_the_local_hf_cache_resolves_offline(tmp_path):
    import os
    import subprocess
    import sys

    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-qwen3"
    build_folder(repo / "snapshots" / "abc123", CONFIGS["qwen3"][0], tokenizer=False, weights=False)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "tenancy", "models", "acme/tiny-qwen3", "acme/absent"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "'acme/absent'" in proc.stderr and str(cache) in proc.stderr  # looked there
    proc = subprocess.run([sys.executable, "-m", "tenancy", "models", "acme/tiny-qwen3"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if "acme/tiny-qwen3" in ln)
    assert "decoder" in row and "models--acme--tiny-qwen3/snapshots" in row  # the snapshot it resolved to
