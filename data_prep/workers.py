"""Forked worker processes with pipes: the one worker pool of the toolkit (standard library only).

Used by the packer (data_prep.packer.Outcomes: images checked and rasterised in parallel) and by
the data layer (python_layers.batch_source: samples built ahead of Caffe). Not
multiprocessing.Pool: its terminate() can deadlock (seen in the packer about once in 20 runs when
a full disk stopped the writer), and a Pool worker killed by the OOM killer leaves its task's
result waited for forever. Here:

- Workers are forked and daemonic: their arguments are inherited, never pickled (big read-only
  data, shared memory mapped before the fork), and they never outlive the parent: they ignore
  Ctrl-C and SIGHUP (the parent decides; a handler inherited through the fork, Caffe's or the
  packer's, must not run in them), die by SIGTERM's default action (how stop() ends them), and
  die with the parent even when it is killed with SIGKILL (PR_SET_PDEATHSIG, `die_with_parent`).
- Pipes: each worker has its own task and result pipe (the caller picks the worker, e.g. chunk k
  to worker k % n, so results come back in the order sent), or, with shared_pipes=True, all
  share one task pipe and one result pipe (whichever worker is free takes the next task; a lock
  on each keeps the messages whole).
- A worker that dies is noticed through its sentinel while a result is awaited (or when a task
  cannot be sent to it) and raised as WorkerDied, with its pid and exit code; the caller words
  the message.
- stop() reaps every worker and closes the pipes: finish=True sends each worker None (the end of
  its task loop; only once every result was received), otherwise they are terminated.

A worker runs target(end, *args), `end` being its WorkerEnd: iterate over it for the tasks (the
loop ends at None), end.send(result) for each result.
"""
import multiprocessing
import multiprocessing.connection
import os
import signal


def die_with_parent(signum, parent_pid):
    """Have the kernel send `signum` to this process when its parent dies (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing), and exit now if the parent is already gone."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signum)              # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


class WorkerDied(Exception):
    """A worker process ended while work was expected of it."""

    def __init__(self, pid, exitcode):
        super().__init__("worker pid %d died with exit code %s" % (pid, exitcode))
        self.pid, self.exitcode = pid, exitcode


class WorkerEnd(object):
    """The worker's side of its pipes (locks when the pipes are shared)."""

    def __init__(self, tasks, results, task_lock=None, result_lock=None):
        self._tasks, self._results = tasks, results
        self._task_lock, self._result_lock = task_lock, result_lock

    def __iter__(self):
        while True:
            try:
                if self._task_lock is None:
                    task = self._tasks.recv()
                else:
                    with self._task_lock:
                        task = self._tasks.recv()
            except EOFError:              # the parent has closed the pipe: nothing more to do
                return
            if task is None:
                return
            yield task

    def send(self, result):
        if self._result_lock is None:
            self._results.send(result)
        else:
            with self._result_lock:
                self._results.send(result)


def _worker_main(target, args, end, parent_pid):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(signal.SIGKILL, parent_pid)
    target(end, *args)


class WorkerPool(object):
    """`count` forked processes running target(end, *args); see the module docstring."""

    def __init__(self, count, target, args=(), shared_pipes=False):
        if count < 1:
            raise ValueError("a worker pool needs at least one worker, got %r" % (count,))
        context = multiprocessing.get_context("fork")
        self.shared_pipes = shared_pipes
        self.processes, self._tasks, self._results = [], [], []
        parent = os.getpid()

        def start(end):
            process = context.Process(target=_worker_main, daemon=True,
                                      args=(target, args, end, parent))
            process.start()
            self.processes.append(process)

        try:
            if shared_pipes:
                task_reader, task_writer = context.Pipe(duplex=False)
                result_reader, result_writer = context.Pipe(duplex=False)
                self._tasks.append(task_writer)
                self._results.append(result_reader)
                end = WorkerEnd(task_reader, result_writer, context.Lock(), context.Lock())
                try:
                    for _ in range(count):
                        start(end)
                finally:
                    task_reader.close()
                    result_writer.close()
            else:
                for _ in range(count):
                    task_reader, task_writer = context.Pipe(duplex=False)
                    result_reader, result_writer = context.Pipe(duplex=False)
                    self._tasks.append(task_writer)
                    self._results.append(result_reader)
                    try:
                        start(WorkerEnd(task_reader, result_writer))
                    finally:
                        task_reader.close()        # the worker's ends: only it holds them
                        result_writer.close()
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self):
        return [process.pid for process in self.processes]

    def _pipe(self, pipes, worker):
        if self.shared_pipes:
            return pipes[0], self.processes
        return pipes[worker], [self.processes[worker]]

    def send(self, task, worker=None):
        """Send a task (to worker number `worker`; with shared pipes to whichever is free)."""
        pipe, processes = self._pipe(self._tasks, worker)
        try:
            pipe.send(task)
        except BrokenPipeError:             # its reading end is gone: the worker has exited
            raise self._death(processes) from None

    def receive(self, worker=None):
        """The next result (of worker number `worker`; with shared pipes of any); WorkerDied if
        the worker (with shared pipes, any worker) ends first."""
        pipe, processes = self._pipe(self._results, worker)
        sentinels = [process.sentinel for process in processes]
        ready = multiprocessing.connection.wait([pipe] + sentinels)
        if pipe in ready:
            try:
                return pipe.recv()
            except EOFError:                # it died while sending
                pass
        raise self._death(processes)

    def _death(self, processes):
        """WorkerDied of a dead one of `processes` (waiting until one is dead), reaped."""
        by_sentinel = {process.sentinel: process for process in processes}
        dead = by_sentinel[multiprocessing.connection.wait(list(by_sentinel))[0]]
        dead.join()
        return WorkerDied(dead.pid, dead.exitcode)

    def stop(self, finish=False):
        """Reap every worker and close the pipes (idempotent). finish=True: send each worker
        None and let it return (only when every result was received); else terminate them."""
        processes, tasks, results = self.processes, self._tasks, self._results
        self.processes, self._tasks, self._results = [], [], []
        if finish:
            for pipe in (tasks * len(processes) if self.shared_pipes else tasks):
                try:
                    pipe.send(None)
                except BrokenPipeError:     # it has exited already; none of its work is missing
                    pass
        else:
            for process in processes:
                process.terminate()
        for process in processes:
            process.join()
        for pipe in tasks + results:
            pipe.close()
