"""Scenario validation: every mistake is one line naming the file and field, exit 2, nothing written."""
from __future__ import annotations

import pytest
from helpers import tenancy_here, tiny, write_scenario

from tenancy.core.errors import TenancyError
from tenancy.harness.scenario import parse_scenario

GOOD = dict(name="ok", tenants=[tiny("a", "bert-base")])


def _error(data) -> str:
    with pytest.raises(TenancyError) as info:
        parse_scenario(data, "s.yaml")
    return str(info.value)


def test_defaults_follow_the_study():
    s = parse_scenario({"name": "x", "tenants": [{"name": "b", "model": "bert-base"},
                                                  {"name": "l", "model": "llama-3.2-1b"}]})
    assert (s.iterations, s.warmup, s.mode, s.device) == (100, 10, "timeslice", "auto")
    bert, llama = s.tenants
    assert (bert.batch, bert.seq, bert.task, llama.task) == (8, 128, "forward", "generate")


@pytest.mark.parametrize("data, expected", [
    ({**GOOD, "tenants": [tiny("a", "gpt-5")]}, "s.yaml: tenants.0.model: unknown model 'gpt-5'"),
    ({**GOOD, "colour": "red"}, "s.yaml: colour: unknown field"),
    ({**GOOD, "tenants": [tiny("a", "bert-base", batch=0)]}, "s.yaml: tenants.0.batch: Input should be greater than 0"),
    ({**GOOD, "tenants": [tiny("a", "bert-base", task="generate")]}, "s.yaml: tenants.0: task 'generate' needs a decoder"),
    ({**GOOD, "tenants": [tiny("a", "bert-base"), tiny("a", "distilgpt2")]}, "s.yaml: tenants: tenant names must be unique"),
    ({**GOOD, "sharing": "mig"}, "s.yaml: sharing: unknown mode 'mig'; one of 'exclusive', 'timeslice', 'mps', 'streams'"),
    ({"name": "x"}, "s.yaml: tenants: Field required"),
    (["a", "list"], "s.yaml: a scenario must be a mapping"),
])
def test_validation_errors_name_file_and_field(data, expected):
    msg = _error(data)
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_equal_work_shares_one_solo_run():
    s = parse_scenario({"name": "x", "tenants": [tiny("a", "bert-base", copies=3), tiny("b", "bert-base"),
                                                  tiny("c", "bert-base", batch=4)]})
    assert [t.name for t in s.distinct()] == ["a", "c"]
    assert len(s.instances()) == 5


@pytest.mark.parametrize("text, expected", [
    ("name: x\ntenants: [\n", "malformed YAML at line"),
    ("name: x\ntenants:\n  - {name: a, model: nope}\n", "tenants.0.model: unknown model 'nope'"),
])
def test_cli_bad_scenario_is_one_line_exit_2_and_writes_nothing(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    proc = tenancy_here("run", path, "--out", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()


def test_cli_cuda_without_gpu_is_exit_2(tmp_path):
    path = write_scenario(tmp_path / "s.yaml", **GOOD)
    proc = tenancy_here("run", path, "--device", "cuda", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: device 'cuda' requested but")
    assert not (tmp_path / "run").exists()


def test_missing_file_is_one_line(tmp_path):
    proc = tenancy_here("run", tmp_path / "nope.yaml")
    assert proc.returncode == 2 and "cannot read" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_shipped_scenarios_validate():
    """Every shipped scenario, matrices expanded, is a valid scenario."""
    from pathlib import Path

    from tenancy.harness.matrix import expand_file

    paths = sorted(Path(__file__).parent.parent.glob("scenarios/**/*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        runs = expand_file(path)  # raises TenancyError on any invalid run
        assert runs and all(run.scenario.tenants for run in runs)


def _first_yaml_block(name: str) -> dict:
    from pathlib import Path

    import yaml

    text = (Path(__file__).parent.parent / name).read_text()
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_the_annotated_scenario_example_is_valid():
    """The annotated example of docs/scenarios.md stays a valid scenario."""
    scenario = parse_scenario(_first_yaml_block("docs/scenarios.md"), "docs/scenarios.md")
    assert [t.task for t in scenario.tenants] == ["forward", "generate"]
    assert scenario.tenants[1].mps.active_thread_percentage == 50 and scenario.tenants[0].copies == 4


def test_the_readme_example_is_the_demo_scenario():
    """The README shows scenarios/demo-cpu.yaml and the output of running it: the two must agree."""
    from pathlib import Path

    import yaml

    demo = yaml.safe_load((Path(__file__).parent.parent / "scenarios" / "demo-cpu.yaml").read_text())
    shown = parse_scenario(_first_yaml_block("README.md"), "README.md")
    assert shown == parse_scenario({k: v for k, v in demo.items() if k != "description"}, "demo-cpu.yaml")


def test_sharing_is_a_tagged_block_with_the_string_as_shorthand():
    from tenancy.harness.scenario import stored_scenario

    base = {"name": "s", "tenants": [{"name": "a", "model": "bert-base"}]}
    assert parse_scenario({**base, "sharing": "mps"}).sharing == parse_scenario({**base, "sharing": {"mode": "mps"}}).sharing
    s = parse_scenario({**base, "sharing": {"mode": "mps", "default_thread_percentage": 40}})
    assert (s.mode, s.sharing.default_thread_percentage, s.sharing.exclusive_process) == ("mps", 40, False)
    with pytest.raises(TenancyError, match=r"sharing\.timeslice\.default_thread_percentage: unknown field"):
        parse_scenario({**base, "sharing": {"mode": "timeslice", "default_thread_percentage": 40}})
    with pytest.raises(TenancyError, match=r"write `sharing: \{mode: mps, default_thread_percentage: 60\}`"):
        parse_scenario({**base, "sharing": "mps", "mps_default_thread_percentage": 60})
    old = {**base, "sharing": "mps", "mps_default_thread_percentage": 60, "mps_exclusive_process": False}
    assert parse_scenario(stored_scenario(old)).sharing == s.sharing.model_copy(update={"default_thread_percentage": 60})
