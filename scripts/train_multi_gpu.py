"""Train on several GPUs through pycaffe's NCCL solver: one process per GPU.

    python -m scripts.train_multi_gpu --solver SOLVER --gpus 0,1 [--snapshot S | --weights W]

Started by scripts/train.py (./scripts/train.sh --gpu 0,1), which watches the output. Caffe
refuses Python layers under `caffe train --gpu 0,1`; here every process builds its own net, so its
own data layer, which takes the batches of its rank (python_layers/batch_source.py). NCCL
broadcasts rank 0's weights at the start and sums the gradients after every backward pass; only
rank 0 displays and snapshots (Caffe's root solver). Needs a Caffe built with CUDA and NCCL.
"""
import argparse
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys

from data_prep.workers import die_with_parent


def solve(solver_path, gpus, rank, uid, snapshot, weights, parent):
    die_with_parent(signal.SIGTERM, parent)
    import caffe
    caffe.set_device(gpus[rank])
    caffe.set_mode_gpu()
    caffe.set_solver_count(len(gpus))
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)
    solver = caffe.get_solver(solver_path)
    if snapshot:
        solver.restore(snapshot)
    elif weights:
        solver.net.copy_from(weights)
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()                                    # every rank starts from rank 0's weights
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    solver.solve()                                  # to max_iter; snapshots at the end too


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solver", required=True)
    parser.add_argument("--gpus", required=True, help="comma-separated GPU ids")
    parser.add_argument("--snapshot", help="a .solverstate to resume from")
    parser.add_argument("--weights", help="a .caffemodel to start from (copied by layer name)")
    args = parser.parse_args(argv)
    import caffe
    if not caffe.has_nccl():
        sys.exit("train_multi_gpu: this Caffe has no NCCL (see scripts/train.py)")
    gpus = [int(gpu) for gpu in args.gpus.split(",")]
    caffe.init_log()
    uid = caffe.NCCL.new_uid()                      # identifies the NCCL session of the ranks
    context = multiprocessing.get_context("spawn")  # a clean CUDA state in every rank
    ranks = [context.Process(target=solve, args=(args.solver, gpus, rank, uid, args.snapshot,
                                                  args.weights, os.getpid()))
             for rank in range(len(gpus))]
    for process in ranks:
        process.start()
    running = list(ranks)
    while running:          # one failed rank would leave the others waiting in NCCL: stop them
        multiprocessing.connection.wait([process.sentinel for process in running])
        running = [process for process in running if process.exitcode is None]
        failed = [rank for rank, process in enumerate(ranks) if process.exitcode not in (None, 0)]
        if failed:
            for process in running:
                process.terminate()
            sys.exit("train_multi_gpu: rank(s) %s failed (exit codes %s)"
                     % (failed, [ranks[rank].exitcode for rank in failed]))


if __name__ == "__main__":
    main()
