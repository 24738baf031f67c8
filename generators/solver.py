"""The SGD solver: the paper's values, and OpenPose's schedule where the paper is silent."""
import dataclasses

from caffe.proto import caffe_pb2

SOLVER_MODES = ("cpu", "gpu")


@dataclasses.dataclass
class SolverOptions:
    # The paper: SGD, lr 6e-5, momentum 0.9, weight decay 5e-4 (batch 28 is in the train net).
    base_lr: float = 6e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # OpenPose's schedule (conventions.md): lr x 0.333 every 136106 iterations, 600000 in all.
    gamma: float = 0.333
    stepsize: int = 136106
    max_iter: int = 600000
    iter_size: int = 1                # gradient accumulation: effective batch = batch x iter_size
    display: int = 20
    snapshot_every: int = 2000
    snapshot_prefix: str = "runs/{model}/snapshots/{model}"   # {model} is filled in
    solver_mode: str = "cpu"
    random_seed: int = 0              # Caffe's filler seed, for reproducible initial weights


def solver_proto(train_net_path, model, options):
    """SolverParameter training `train_net_path`; snapshots go to the (formatted) prefix."""
    if options.solver_mode not in SOLVER_MODES:
        raise ValueError("solver mode must be one of %s, not %r"
                         % (SOLVER_MODES, options.solver_mode))
    solver = caffe_pb2.SolverParameter()
    solver.net = train_net_path
    solver.type = "SGD"
    solver.base_lr = options.base_lr
    solver.momentum = options.momentum
    solver.weight_decay = options.weight_decay
    solver.lr_policy = "step"
    solver.gamma = options.gamma
    solver.stepsize = options.stepsize
    solver.max_iter = options.max_iter
    solver.iter_size = options.iter_size
    solver.display = options.display
    solver.average_loss = options.display
    solver.snapshot = options.snapshot_every
    solver.snapshot_prefix = options.snapshot_prefix.format(model=model)
    solver.solver_mode = (caffe_pb2.SolverParameter.GPU if options.solver_mode == "gpu"
                          else caffe_pb2.SolverParameter.CPU)
    solver.random_seed = options.random_seed
    return solver
