"""core/exit.py: an entry point that freezes the heap still returns, raises and pickles as before."""
from __future__ import annotations

import gc
import pickle

import pytest

from tenancy.core.exit import exits_quickly
from tenancy.harness.tenant import process_main


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # this test process keeps collecting as usual


def test_the_heap_is_frozen_once_the_entry_point_returns(unfrozen):
    calls = []
    main = exits_quickly(lambda x: calls.append(gc.get_freeze_count()) or x * 2)
    assert main(21) == 42
    assert calls == [0] and gc.get_freeze_count() > 0  # frozen after, not before


def test_an_exit_or_error_still_propagates_and_freezes(unfrozen):
    @exits_quickly
    def main():
        raise SystemExit(3)

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 3 and gc.get_freeze_count() > 0


def test_a_decorated_spawn_target_pickles_by_name():
    assert pickle.loads(pickle.dumps(process_main)) is process_main
    assert process_main.__name__ == "process_main" and "spawned tenant" in process_main.__doc__


def test_a_command_run_in_a_test_process_leaves_that_process_as_it_was(tmp_path):
    """What tests call (run_command) stops short of main()'s teardown: reaping the resource tracker
    made it unlink every semaphore this process still held (a FileNotFoundError traceback per
    semaphore when this process exited), and freezing the heap stopped its garbage collection."""
    from multiprocessing import get_context, resource_tracker
    from pathlib import Path

    from helpers import run_cli

    lock = get_context("spawn").Lock()  # registered with the tracker, as a run's barrier is
    tracker, frozen = resource_tracker._resource_tracker._pid, gc.get_freeze_count()
    code, err = run_cli("run", tmp_path / "missing.yaml")
    assert code == 2 and err.startswith("error:")
    assert resource_tracker._resource_tracker._pid == tracker and gc.get_freeze_count() == frozen
    assert Path("/dev/shm", "sem." + lock._semlock.name.lstrip("/")).exists()  # still linked
