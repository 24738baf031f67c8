"""The packer's worker processes (data_prep.packer.Outcomes): results in file order, a
failing or dying worker stops the run with a clear error, and stopping never hangs.

The per-image work is replaced by small functions before the workers are forked, so they run
in real worker processes; the packing itself is tested in tests/caffe/test_data_prep_*.py."""
import os
import signal

import pytest

from data_prep import packer, packing, workers


def outcomes_of(tasks, start=0, workers=2):
    with packer.Outcomes(tasks, None, start, workers) as outcomes:
        return list(outcomes)


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_results_come_back_in_file_order(monkeypatch, workers):
    monkeypatch.setattr(packing, "process_image", lambda task, images_dir: (task, os.getpid()))
    tasks = list(range(100))
    results = outcomes_of(tasks, start=7, workers=workers)
    assert [task for task, _ in results] == tasks[7:]
    pids = {pid for _, pid in results}
    if workers:
        assert os.getpid() not in pids and len(pids) == workers
    else:
        assert pids == {os.getpid()}


def test_an_exception_in_a_worker_names_the_images(monkeypatch):
    def process_image(task, images_dir):
        if task == 21:
            raise ValueError("broken task")
        return task
    monkeypatch.setattr(packing, "process_image", process_image)
    with pytest.raises(packer.PackError, match=r"(?s)images 16\.\.23 .*broken task"):
        outcomes_of(list(range(60)))


def test_a_worker_that_dies_stops_the_run_instead_of_hanging(monkeypatch):
    def process_image(task, images_dir):
        if task == 30:
            os.kill(os.getpid(), signal.SIGKILL)   # as the OOM killer would
        return task
    monkeypatch.setattr(packing, "process_image", process_image)
    with pytest.raises(packer.PackError, match="died with exit code -9"):
        outcomes_of(list(range(60)))


def test_stopping_in_the_middle_reaps_every_worker(monkeypatch):
    """The writer stopping with an error (a full disk) while workers are busy or idle: the
    context exits and no worker is left behind. multiprocessing.Pool.terminate() deadlocked in
    this situation about once in 20 runs; 40 rounds would all but surely catch that."""
    monkeypatch.setattr(packing, "process_image", lambda task, images_dir: task)
    for round_number in range(40):
        started = []
        with pytest.raises(RuntimeError, match="writer stopped"):
            with packer.Outcomes(list(range(200)), None, 0, 2) as outcomes:
                started = list(outcomes._pool.processes)
                for outcome in outcomes:
                    if outcome == round_number:
                        raise RuntimeError("writer stopped")
        assert started and all(not process.is_alive() for process in started)


def _add_offset(end, offset):
    """A worker of the pool tests: task + offset and its pid back; "die" kills it."""
    for task in end:
        if task == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        end.send((task + offset, os.getpid()))


def test_shared_pipes_serve_any_worker_and_notice_a_death():
    """The data layer's mode of the pool: one task pipe and one result pipe for all."""
    pool = workers.WorkerPool(3, _add_offset, (100,), shared_pipes=True)
    processes = list(pool.processes)
    try:
        for task in range(30):
            pool.send(task)
        results = [pool.receive() for _ in range(30)]
        assert sorted(value for value, _ in results) == list(range(100, 130))
        assert {pid for _, pid in results} <= set(pool.pids)
        pool.send("die")
        with pytest.raises(workers.WorkerDied) as died:
            pool.receive()
        assert died.value.exitcode == -signal.SIGKILL and died.value.pid in pool.pids
    finally:
        pool.stop()
    assert pool.pids == [] and not any(process.is_alive() for process in processes)


@pytest.mark.parametrize("shared_pipes", [False, True])
def test_finishing_lets_every_worker_return(shared_pipes):
    pool = workers.WorkerPool(2, _add_offset, (1,), shared_pipes=shared_pipes)
    processes = list(pool.processes)
    for task in range(10):
        pool.send(task, worker=task % 2)
    assert sorted(pool.receive(worker=task % 2)[0] for task in range(10)) == list(range(1, 11))
    pool.stop(finish=True)
    assert [process.exitcode for process in processes] == [0, 0]
