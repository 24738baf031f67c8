"""The packer's worker processes (data_prep.coco_to_lmdb.Outcomes): results in file order, a
failing or dying worker stops the run with a clear error, and stopping never hangs.

The per-image work is replaced by small functions before the workers are forked, so they run
in real worker processes; the packing itself is tested in tests/caffe/test_data_prep_*.py."""
import os
import signal

import pytest

from data_prep import coco_to_lmdb, packing


def outcomes_of(tasks, start=0, workers=2):
    with coco_to_lmdb.Outcomes(tasks, None, start, workers) as outcomes:
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
    with pytest.raises(coco_to_lmdb.PackError, match=r"(?s)images 16\.\.23 .*broken task"):
        outcomes_of(list(range(60)))


def test_a_worker_that_dies_stops_the_run_instead_of_hanging(monkeypatch):
    def process_image(task, images_dir):
        if task == 30:
            os.kill(os.getpid(), signal.SIGKILL)   # as the OOM killer would
        return task
    monkeypatch.setattr(packing, "process_image", process_image)
    with pytest.raises(coco_to_lmdb.PackError, match="died with exit code -9"):
        outcomes_of(list(range(60)))


def test_stopping_in_the_middle_reaps_every_worker(monkeypatch):
    """The writer stopping with an error (a full disk) while workers are busy or idle: the
    context exits and no worker is left behind. multiprocessing.Pool.terminate() deadlocked in
    this situation about once in 20 runs; 40 rounds would all but surely catch that."""
    monkeypatch.setattr(packing, "process_image", lambda task, images_dir: task)
    for round_number in range(40):
        started = []
        with pytest.raises(RuntimeError, match="writer stopped"):
            with coco_to_lmdb.Outcomes(list(range(200)), None, 0, 2) as outcomes:
                started = [worker.process for worker in outcomes._workers]
                for outcome in outcomes:
                    if outcome == round_number:
                        raise RuntimeError("writer stopped")
        assert started and all(not process.is_alive() for process in started)
