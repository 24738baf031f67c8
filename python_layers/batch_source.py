"""Batches of training samples from data_prep's LMDB, built ahead of time by worker processes.

No Caffe here: python_layers.data_layer wraps a BatchSource in a Caffe layer, the benchmark and
the tests drive it directly.

The sample stream
-----------------
A sample is (record index, main person index): every main person of every record (data_prep's
`is_main`) is one sample. The stream is endless: epoch e = positions e*n .. (e+1)*n - 1 is a
permutation of the n samples drawn from RandomState([seed, e]), and the sample at position p gets
its augmentation from its own RandomState([seed, epoch, p - e*n]). A batch is therefore the same
whoever builds it: deterministic for a seed, independent of the number of workers and of the order
in which they finish.

Forward call t of solver rank r of R (pycaffe's multi-GPU training; R = 1 otherwise) takes the
positions first_sample + (t*R + r)*N + i, i < N: the ranks share one stream without overlap, and a
resumed run (first_sample = iteration x iter_size x N x R) continues it where it stopped.

Workers
-------
`workers` forked processes build samples into shared memory (anonymous MAP_SHARED mmaps made
before the fork: nothing big is pickled) and report each one through a pipe. There are no helper
threads in the parent: under `caffe train` Caffe's C++ holds Python's lock while it computes, so a
thread would not run; the workers do not need it. `prefetch_batches` batches are in preparation at
any time: when a batch is handed over, its slot is refilled at once with the batch that many
places ahead, so the workers build it while Caffe computes. LMDB is reopened in each worker by
data_prep's reader on first use. The processes are data_prep.workers' pool, with one task pipe and
one result pipe shared by all (whichever worker is free takes the next sample): workers die with
their parent (PR_SET_PDEATHSIG), ignore Ctrl-C and SIGHUP (the parent decides), and `close()` (also
on deletion) terminates and reaps them. An exception in a worker is raised in the parent as
SampleError, naming the position, record, image id and file, with the worker's traceback; a worker
that dies is an error naming its exit code.
"""
import collections
import mmap
import os
import traceback

import numpy as np

from conventions.net_contract import train_input_shapes
from data_prep import workers as worker_pool
from data_prep.record import LmdbReader

Task = collections.namedtuple("Task", "position epoch index record person")
Task.__doc__ = """One sample of the stream: its position, epoch, index within the epoch (these
three fix its random augmentation), and which record and main person it shows."""


class SampleError(RuntimeError):
    """A sample could not be built; the message names the sample, the image and the cause."""


def list_samples(reader):
    """[(record index, person index)] of every main person of the database, in record order."""
    samples = []
    for index in range(len(reader)):
        samples.extend((index, int(person)) for person in np.nonzero(reader[index].is_main)[0])
    return samples


class SampleOrder(object):
    """The endless, per-epoch shuffled stream of samples (see the module docstring)."""

    def __init__(self, samples, seed):
        if not samples:
            raise ValueError("no samples: the database holds no main person")
        if not 0 <= seed < 2 ** 32:
            raise ValueError("seed must be in 0 .. 2**32 - 1, got %r" % (seed,))
        self.samples = list(samples)
        self.seed = seed
        self._epoch, self._permutation = None, None

    def task(self, position):
        epoch, index = divmod(position, len(self.samples))
        if epoch != self._epoch:
            self._epoch = epoch
            self._permutation = np.random.RandomState([self.seed, epoch]).permutation(
                len(self.samples))
        record, person = self.samples[self._permutation[index]]
        return Task(position, epoch, index, record, person)

    def rng(self, task):
        """The augmentation random state of one sample."""
        return np.random.RandomState([self.seed, task.epoch, task.index])


def build_sample(reader, params, order, task):
    """augment.Sample of `task`; any failure becomes a SampleError naming the sample."""
    from python_layers import augment          # OpenCV is imported where samples are built
    where = "sample at position %d (record %d of %s, person %d)" % (
        task.position, task.record, reader.path, task.person)
    try:
        record = reader[task.record]
        where = "%s: image id %d, %s" % (where, record.image_id, record.file_name)
        return augment.sample_from_record(record, task.person, params, order.rng(task))
    except Exception as error:
        raise SampleError("%s: %s: %s" % (where, type(error).__name__, error)) from error


def top_shapes(batch_size, params):
    """Shapes of the four tops (conventions.net_contract.TRAIN_TOPS order) for a batch."""
    return [tuple(shape) for shape in
            train_input_shapes(batch_size, params.crop_size, params.stride)]


def store_sample(sample, outputs, index):
    """Copy the four arrays of a sample into row `index` of the four output arrays."""
    for output, array in zip(outputs, (sample.data, sample.heatmap_label, sample.paf_label,
                                       sample.loss_mask)):
        output[index] = array


def _shared_array(shape):
    """A float32 array in anonymous shared memory, visible to processes forked after this."""
    nbytes = int(np.prod(shape)) * 4
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.float32).reshape(shape)


def _build_samples(end, reader, params, order, slots):
    """A data worker (data_prep.workers runs it): (slot, index, task) in, the sample written into
    the shared slots, (slot, None or the error) out."""
    import cv2
    cv2.setNumThreads(1)        # the workers are the parallelism; no OpenCV threads after fork
    for slot, index, task in end:                 # the parent terminates us when done
        try:
            store_sample(build_sample(reader, params, order, task), [s[slot] for s in slots],
                         index)
            reply = (slot, None)
        except Exception as error:
            reply = (slot, "%s\nin data worker pid %d:\n%s"
                     % (error, os.getpid(), traceback.format_exc()))
        end.send(reply)


class BatchSource(object):
    """Batches of `batch_size` samples from the database at `source`.

    fill(outputs) writes the next batch into four arrays of top_shapes(batch_size, params)
    (the Caffe tops, or any arrays). workers = 0 builds the samples in this process, in fill().
    """

    def __init__(self, source, batch_size, params, seed=0, workers=0, prefetch_batches=2,
                 first_sample=0, rank=0, ranks=1):
        if batch_size < 1 or workers < 0 or prefetch_batches < 1 or first_sample < 0:
            raise ValueError("need batch_size >= 1, workers >= 0, prefetch_batches >= 1, "
                             "first_sample >= 0; got %r, %r, %r, %r"
                             % (batch_size, workers, prefetch_batches, first_sample))
        if not 0 <= rank < ranks:
            raise ValueError("solver rank %r is not in 0 .. %r" % (rank, ranks - 1))
        self.reader = LmdbReader(source)
        self.batch_size, self.params = batch_size, params
        self.first_sample, self.rank, self.ranks = first_sample, rank, ranks
        self.order = SampleOrder(list_samples(self.reader), seed)
        self.batches_done = 0
        self._pool, self._closed = None, False
        if workers:
            self._start_workers(workers, prefetch_batches)

    @property
    def num_samples(self):
        return len(self.order.samples)

    def tasks(self, batch_number):
        """The Tasks of this source's batch `batch_number` (0 = the first fill())."""
        start = self.first_sample + (batch_number * self.ranks + self.rank) * self.batch_size
        return [self.order.task(start + i) for i in range(self.batch_size)]

    def fill(self, outputs):
        if self._closed:
            raise SampleError("this batch source is closed (after an error or close())")
        if self._pool is not None:
            self._fill_from_workers(outputs)
        else:
            for index, task in enumerate(self.tasks(self.batches_done)):
                store_sample(build_sample(self.reader, self.params, self.order, task), outputs,
                             index)
        self.batches_done += 1

    # ---- worker processes

    def _start_workers(self, workers, prefetch_batches):
        self._slots = [_shared_array((prefetch_batches,) + shape)
                       for shape in top_shapes(self.batch_size, self.params)]
        self._pending = [0] * prefetch_batches        # samples not yet built, per slot
        self._pool = worker_pool.WorkerPool(
            workers, _build_samples, (self.reader, self.params, self.order, self._slots),
            shared_pipes=True)
        for batch_number in range(prefetch_batches):
            self._submit(batch_number)

    @property
    def worker_pids(self):
        return [] if self._pool is None else self._pool.pids

    def _submit(self, batch_number):
        slot = batch_number % len(self._pending)
        self._pending[slot] = self.batch_size
        for index, task in enumerate(self.tasks(batch_number)):
            try:
                self._pool.send((slot, index, task))
            except worker_pool.WorkerDied as death:
                raise self._worker_died(death) from None

    def _receive(self):
        """Wait for one finished sample; raise if it failed or if a worker died."""
        try:
            slot, error = self._pool.receive()
        except worker_pool.WorkerDied as death:
            raise self._worker_died(death) from None
        if error is not None:
            self.close()
            raise SampleError(error)
        self._pending[slot] -= 1

    def _worker_died(self, death):
        self.close()
        return SampleError("data worker pid %d died (exit code %s; a negative code is the signal "
                           "that killed it, e.g. -9 when the system ran out of memory)"
                           % (death.pid, death.exitcode))

    def wait_until_prefetched(self):
        """Block until every batch in preparation is built; -> how many that is."""
        if self._pool is None:
            return 0
        while any(self._pending):
            self._receive()
        return len(self._pending)

    def _fill_from_workers(self, outputs):
        slot = self.batches_done % len(self._pending)
        while self._pending[slot]:
            self._receive()
        for output, shared in zip(outputs, self._slots):
            output[...] = shared[slot]
        self._submit(self.batches_done + len(self._pending))

    def close(self):
        """Terminate and reap the workers (idempotent)."""
        pool = getattr(self, "_pool", None)           # None when __init__ failed early
        self._pool, self._closed = None, True
        if pool is not None:
            pool.stop()

    def __del__(self):
        self.close()
