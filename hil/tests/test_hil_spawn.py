"""Services started by `hil.services.spawn` live as long as their owner process, not its threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from hil.services import spawn
from tests.process_helpers import assert_no_survivors


def test_a_service_started_from_a_worker_thread_outlives_that_thread() -> None:
    """The parent-death signal follows the forking thread: a worker thread's end must not kill it."""
    box: list[subprocess.Popen] = []
    worker = threading.Thread(target=lambda: box.append(spawn(["sleep", "30"])))
    worker.start()
    worker.join()
    proc = box[0]
    try:
        time.sleep(0.3)
        assert proc.poll() is None, (
            f"the service died with the thread that started it (code {proc.returncode})"
        )
    finally:
        proc.kill()
        proc.wait(5)


def test_a_service_dies_with_its_owner_killed_by_sigkill() -> None:
    """An owner killed with no clean-up takes its services (started from any thread) with it."""
    owner_code = textwrap.dedent(
        """
        import threading, time
        from hil.services import spawn
        main = spawn(["sleep", "60"])
        box = []
        t = threading.Thread(target=lambda: box.append(spawn(["sleep", "60"])))
        t.start(); t.join()
        print(main.pid, box[0].pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        owner.kill()
        owner.wait(5)
    assert_no_survivors(pids)  # the services, once their owner is gone
