"""A packing run: plan the images, process them in parallel, write and commit them in order.

`pack()` is the packer as a library (data_prep/coco_to_lmdb.py is its command line). The per-image
work: data_prep/packing.py. The database, its lock and its commits: data_prep/lmdb_writer.py.

Resuming. Records get the keys 0, 1, 2, ... in the order of the annotation file's images, so the
content of the database depends only on the annotation file, the images and `limit`. The writer
commits every `commit_every` images one transaction holding their records *and* the progress
marker (how many images are done, the counts so far), so after any interruption the database
holds exactly the committed images and the marker says which. Run again with the same input,
the packer skips the images done and ends with the same database as an uninterrupted run. A
finished database is marked complete (and the reader refuses unfinished ones).

Workers. Images are processed by forked worker processes (data_prep.workers), chunk k going to
worker k % n so that outcomes come back in file order; a worker that raises or dies stops the run
with an error naming it.
"""
import collections
import os
import signal
import sys
import traceback

from data_prep import packing, record, skip_reasons
from data_prep.coco_json import AnnotationFile, plan_images
from data_prep.lmdb_writer import (INITIAL_MAP_SIZE, Database, Interrupted, PackError,
                                   Refused)
from data_prep.workers import WorkerDied, WorkerPool

DEFAULT_COMMIT_EVERY = 256            # images per transaction: at most ~1 s of work to redo
MAX_BATCH_BYTES = 64 << 20            # ... and at most this many bytes of records
IMAGES_PER_TASK = 8                   # images a worker takes at once
EXAMPLES_PER_REASON = 3


# ---- parallel per-image work --------------------------------------------------------------

def _process_chunks(end, tasks, images_dir):
    """A packing worker: (first, stop) chunks of `tasks` in, ("ok", outcomes) or ("error",
    where and traceback) out."""
    for first, stop in end:
        try:
            result = ("ok", [packing.process_image(tasks[i], images_dir)
                             for i in range(first, stop)])
        except Exception:
            result = ("error", "images %d..%d of the annotation file:\n%s"
                      % (first, stop - 1, traceback.format_exc()))
        end.send(result)


def _worker_died(death):
    return PackError("a packing worker (pid %d) died with exit code %s (a negative code is the "
                     "signal, e.g. -9 when the system ran out of memory). Everything committed "
                     "is intact; rerun the same command to continue" % (death.pid, death.exitcode))


class Outcomes(object):
    """Outcomes of images start.. in file order, computed by `workers` forked processes (0: in
    this process). At most a few chunks per worker are in flight, so memory stays bounded however
    slow the writer is."""

    def __init__(self, tasks, images_dir, start, workers):
        self.tasks, self.images_dir, self.start, self.workers = tasks, images_dir, start, workers
        self._pool = None

    def __enter__(self):
        if self.workers:
            self._pool = WorkerPool(self.workers, _process_chunks, (self.tasks, self.images_dir))
        return self

    def __iter__(self):
        if self._pool is None:
            for task in self.tasks[self.start:]:
                yield packing.process_image(task, self.images_dir)
            return
        chunks = [(first, min(first + IMAGES_PER_TASK, len(self.tasks)))
                  for first in range(self.start, len(self.tasks), IMAGES_PER_TASK)]
        in_flight = 3 * self.workers
        for number, chunk in enumerate(chunks[:in_flight]):
            self._send(number, chunk)
        for number in range(len(chunks)):
            outcomes = self._receive(number)
            if number + in_flight < len(chunks):
                self._send(number + in_flight, chunks[number + in_flight])
            for outcome in outcomes:
                yield outcome

    def _send(self, chunk_number, chunk):
        try:
            self._pool.send(chunk, worker=chunk_number % self.workers)
        except WorkerDied as death:
            raise _worker_died(death) from None

    def _receive(self, chunk_number):
        try:
            status, value = self._pool.receive(worker=chunk_number % self.workers)
        except WorkerDied as death:
            raise _worker_died(death) from None
        if status == "error":
            raise PackError("a packing worker failed on %s" % value)
        return value

    def __exit__(self, exc_type, *exc_info):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop(finish=exc_type is None)   # all work received: let them finish


# ---- the run --------------------------------------------------------------------------------

class Progress(object):
    """The progress marker: images done, records written, counts and examples so far."""

    def __init__(self, stored):
        stored = stored or {}
        self.next_image = stored.get("next_image", 0)
        self.records = stored.get("records", 0)
        self.counts = collections.Counter(stored.get("counts", {}))
        self.examples = collections.OrderedDict(stored.get("examples", {}))

    def add(self, outcome):
        self.counts.update(outcome.counts)
        self.counts["images"] += 1
        for problem in outcome.problems:
            shown = self.examples.setdefault(problem.reason, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append(skip_reasons.describe(problem))
        self.next_image = outcome.index + 1

    def as_json(self):
        return {"next_image": self.next_image, "records": self.records,
                "counts": dict(sorted(self.counts.items())),
                "examples": dict(sorted(self.examples.items()))}


def build_summary(progress, annotation_problems):
    counts = collections.Counter(progress.counts)
    examples = dict(progress.examples)
    for problem in annotation_problems:
        counts[problem.reason] += 1
        shown = examples.setdefault(problem.reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(skip_reasons.describe(problem))
    return {
        "images_read": counts["images"],
        "records": counts["records"],
        "persons": counts["persons"],
        "main_persons": counts["main_persons"],
        "reasons": {reason: counts[reason] for reason in skip_reasons.REASONS if counts[reason]},
        "examples": {reason: examples[reason] for reason in sorted(examples)},
    }


def pack(annotation_path, images_dir, out, workers=None, limit=None, strict=False,
         commit_every=DEFAULT_COMMIT_EVERY, progress_bar=True,
         initial_map_size=INITIAL_MAP_SIZE, log=None, on_image=None):
    """Pack (or finish packing) `out`; returns the summary dict. Raises PackError subclasses
    (with the message to show) and AnnotationFileError.

    on_image: called with each image's outcome (packing.Outcome) once it is in the open
    transaction, before any commit that holds it (the progress bar is updated just before)."""
    from tqdm import tqdm
    log = log or (lambda text: print(text, file=sys.stderr))
    workers = os.cpu_count() if workers is None else workers
    if not os.path.isdir(images_dir):
        raise Refused("%s: the images folder does not exist" % images_dir)
    annotation_file = AnnotationFile(annotation_path)
    tasks, annotation_problems = plan_images(annotation_file, limit)
    if strict and annotation_problems:
        raise PackError("--strict: %s: %s" % (annotation_problems[0].reason,
                                             skip_reasons.describe(annotation_problems[0])))
    run = {"annotation_file": annotation_file.identity(),
           "images_dir": os.path.abspath(images_dir), "limit": limit}
    database = Database(out, run, initial_map_size)
    try:
        if database.read_meta("complete") is True:
            log("%s is already complete" % out)
            return database.read_meta("summary")
        progress = Progress(database.read_meta("progress"))
        if progress.next_image:
            log("resuming %s: %d of %d images were done, %d records"
                % (out, progress.next_image, len(tasks), progress.records))
        bar = tqdm(total=len(tasks), initial=progress.next_image, unit="img", desc="packing",
                   disable=not progress_bar, dynamic_ncols=True)

        def image_done(outcome):
            bar.update(1)
            if on_image is not None:
                on_image(outcome)

        try:
            write_records(database, tasks, images_dir, progress, workers, strict, commit_every,
                          image_done)
        finally:
            bar.close()
        summary = build_summary(progress, annotation_problems)
        database.commit([], {"progress": progress.as_json(), "summary": summary, "complete": True})
        return summary
    finally:
        database.close()


class _StopRequests(object):
    """Ctrl-C (SIGINT) or SIGTERM asks the writer to stop after the image in hand: it then
    commits what is done, in order, and exits. A second one stops at once (losing at most the
    open transaction, like kill -9)."""

    def __enter__(self):
        self.requested = None
        self._previous = {number: signal.signal(number, self._handle)
                          for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, number, frame):
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def write_records(database, tasks, images_dir, progress, workers, strict, commit_every,
                  image_done):
    """Process tasks progress.next_image.. and commit them to `database` with the progress
    marker; image_done(outcome) after each image has entered the open transaction."""
    batch, batch_bytes, images_in_batch = [], 0, 0

    def commit():
        database.commit(batch, {"progress": progress.as_json()})
        del batch[:]

    try:
        with _StopRequests() as stop, Outcomes(tasks, images_dir, progress.next_image,
                                               workers) as outcomes:
            for outcome in outcomes:
                if strict and outcome.problems:
                    commit()
                    first = outcome.problems[0]
                    raise PackError("--strict: stopped at image %d of the annotation file: %s: %s"
                                    % (outcome.index, first.reason, skip_reasons.describe(first)))
                if outcome.record is not None:
                    batch.append((record.record_key(progress.records), outcome.record))
                    batch_bytes += len(outcome.record)
                    progress.records += 1
                progress.add(outcome)
                images_in_batch += 1
                image_done(outcome)
                if stop.requested:
                    commit()
                    raise Interrupted("%s: stopped; %d of %d images are done and saved. Rerun "
                                      "the same command to continue"
                                      % (stop.requested, progress.next_image, len(tasks)))
                if images_in_batch >= commit_every or batch_bytes >= MAX_BATCH_BYTES:
                    commit()
                    batch_bytes, images_in_batch = 0, 0
            commit()
    except KeyboardInterrupt:
        raise Interrupted("stopped at once; the images since the last commit will be redone. "
                          "Rerun the same command to continue")
