"""The solver: the paper's SGD values, and OpenPose's schedule where the paper is silent.

`solver_type` "adam" (Caffe's Adam solver: beta1 = momentum 0.9, beta2 0.999, epsilon 1e-8) and
`clip_gradients` (Caffe scales the whole gradient down when its L2 norm exceeds the value) are
the options measured to train MLN from scratch (generators/README.md, "Training from scratch").
"""
import dataclasses
import math

from caffe.proto import caffe_pb2

SOLVER_MODES = ("cpu", "gpu")
SOLVER_TYPES = {"sgd": "SGD", "adam": "Adam"}     # our name -> Caffe's solver type
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


@dataclasses.dataclass
class SolverOptions:
    # The paper: SGD, lr 6e-5, momentum 0.9, weight decay 5e-4 (batch 28 is in the train net).
    solver_type: str = "sgd"
    base_lr: float = 6e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # OpenPose's schedule (conventions/README.md): lr x 0.333 every 136106 iterations, 600000
    # in all.
    gamma: float = 0.333
    stepsize: int = 136106
    max_iter: int = 600000
    iter_size: int = 1                # gradient accumulation: effective batch = batch x iter_size
    display: int = 20
    snapshot_every: int = 2000
    snapshot_prefix: str = "runs/{model}/snapshots/{model}"   # {model} is filled in
    solver_mode: str = "cpu"
    random_seed: int = 0              # Caffe's filler seed, for reproducible initial weights
    clip_gradients: float = None      # L2 norm limit of the whole gradient; None: no clipping


def solver_proto(train_net_path, model, options):
    """SolverParameter training `train_net_path`; snapshots go to the (formatted) prefix."""
    if options.solver_mode not in SOLVER_MODES:
        raise ValueError("solver mode must be one of %s, not %r"
                         % (SOLVER_MODES, options.solver_mode))
    if options.solver_type not in SOLVER_TYPES:
        raise ValueError("solver type must be one of %s, not %r"
                         % (", ".join(SOLVER_TYPES), options.solver_type))
    if not (math.isfinite(options.base_lr) and options.base_lr >= 0):
        raise ValueError("the learning rate must be 0 or more and finite, not %r"
                         % options.base_lr)
    if options.clip_gradients is not None and not (math.isfinite(options.clip_gradients)
                                                   and options.clip_gradients > 0):
        raise ValueError("clip_gradients must be positive, not %r" % options.clip_gradients)
    solver = caffe_pb2.SolverParameter()
    solver.net = train_net_path
    solver.type = SOLVER_TYPES[options.solver_type]
    solver.base_lr = options.base_lr
    solver.momentum = options.momentum
    if options.solver_type == "adam":
        solver.momentum2 = ADAM_BETA2
        solver.delta = ADAM_EPSILON
    if options.clip_gradients is not None:
        solver.clip_gradients = options.clip_gradients
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
