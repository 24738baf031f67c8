"""Pack COCO person keypoints into the training LMDB: one record per image with a main person.

    python data_prep/coco_to_lmdb.py --ann person_keypoints_train2017.json \\
        --images train2017/ --out coco_train2017.lmdb [--workers N] [--limit N] [--strict]

The record format and its reader: data_prep/record.py. The selection rule, the masks and what
happens to bad input: data_prep/packing.py. Every reason something is left out:
data_prep/skip_reasons.py. Usage and numbers: data_prep/README.md.

Resuming. Records get the keys 0, 1, 2, ... in the order of the annotation file's images, so the
content of the database depends only on the annotation file, the images and --limit. The writer
commits every --commit-every images one transaction holding their records *and* the progress
marker (how many images are done, the counts so far); LMDB's copy-on-write commits are atomic, so
after Ctrl-C, kill -9, a power cut or a full disk the database holds exactly the committed images
and the marker says which. Restarted with the same command, the packer skips the images done and
ends with the same database as an uninterrupted run. A finished database is marked complete (and
the reader refuses unfinished ones). A database made from another annotation file, images folder
or --limit is refused, as is a second packer writing the same database (a lock file).

Map size. LMDB needs a maximum size up front; we start small and double it whenever a
transaction does not fit (the transaction is retried), so no terabyte-sized map is reserved.
"""
import argparse
import collections
import fcntl
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import traceback

from data_prep import packing, record, skip_reasons
from data_prep.coco_json import AnnotationFile, AnnotationFileError, plan_images

DEFAULT_COMMIT_EVERY = 256            # images per transaction: at most ~1 s of work to redo
MAX_BATCH_BYTES = 64 << 20            # ... and at most this many bytes of records
INITIAL_MAP_SIZE = 16 << 20
IMAGES_PER_TASK = 8                   # images a worker takes at once
EXAMPLES_PER_REASON = 3
LOCK_FILE = "packer.lock"
# Fault injection for the tests: "KILL@40" makes the writer send itself SIGKILL right after it
# has taken image 40 (0-based) into its open transaction; INT, TERM likewise.
TEST_SIGNAL_VARIABLE = "MLN_PACK_TEST_SIGNAL"


class PackError(Exception):
    """A run that stops with a clear message; `exit_code` for the command line."""
    exit_code = 1


class Refused(PackError):
    exit_code = 2


class Interrupted(PackError):
    exit_code = 130


def _json_bytes(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


class Database(object):
    """The output LMDB, open for writing by this process alone."""

    def __init__(self, path, run, initial_map_size=INITIAL_MAP_SIZE):
        import lmdb
        self.path = path
        self.env = None
        if os.path.exists(path) and not os.path.isdir(path):
            raise Refused("%s exists and is not a database directory" % path)
        try:
            os.makedirs(path, exist_ok=True)
            existing = os.path.isfile(os.path.join(path, "data.mdb"))
            if not existing and set(os.listdir(path)) - {LOCK_FILE, "lock.mdb"}:
                raise Refused("%s is a non-empty directory without a database: refusing to "
                              "write into it" % path)
            self._lock = open(os.path.join(path, LOCK_FILE), "a")
        except OSError as error:
            raise Refused("%s: cannot create the database (%s)" % (path, error))
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise Refused("%s: another packer is writing this database" % path)
        data_size = os.path.getsize(os.path.join(path, "data.mdb")) if existing else 0
        try:
            # writemap stays off: with it a full disk would kill us with SIGBUS, not an error.
            self.env = lmdb.open(path, map_size=max(initial_map_size, 2 * data_size), max_dbs=2,
                                 subdir=True, sync=True, metasync=True, writemap=False)
        except lmdb.Error as error:
            self._lock.close()
            raise Refused("%s: cannot open the database (%s)" % (path, error))
        try:
            if existing:
                self._check_existing(run)
            self.records_db = self.env.open_db(record.RECORDS_DB)
            self.meta_db = self.env.open_db(record.META_DB)
            if not existing:
                self.commit([], {"schema": {"format": record.FORMAT_NAME,
                                            "version": record.SCHEMA_VERSION},
                                 "run": run})
        except BaseException:
            self.close()
            raise

    def _check_existing(self, run):
        import lmdb
        try:
            meta_db = self.env.open_db(record.META_DB, create=False)
        except lmdb.Error:
            raise Refused("%s is an LMDB database but not one made by this packer" % self.path)
        with self.env.begin(db=meta_db) as txn:
            schema = json.loads(txn.get(b"schema", b"null").decode("utf-8"))
            stored = json.loads(txn.get(b"run", b"null").decode("utf-8"))
        if schema != {"format": record.FORMAT_NAME, "version": record.SCHEMA_VERSION}:
            raise Refused("%s holds %r records; this packer writes %s version %d: use another "
                          "--out" % (self.path, schema, record.FORMAT_NAME, record.SCHEMA_VERSION))
        differences = []
        if not isinstance(stored, dict):
            differences.append("no record of what it was made from")
        else:
            old, new = stored.get("annotation_file", {}), run["annotation_file"]
            if (old.get("sha256"), old.get("bytes")) != (new["sha256"], new["bytes"]):
                differences.append("annotation file %s (sha256 %s...) instead of %s (sha256 %s...)"
                                   % (old.get("path"), str(old.get("sha256"))[:12],
                                      new["path"], new["sha256"][:12]))
            for key, name in (("images_dir", "images folder"), ("limit", "--limit")):
                if stored.get(key) != run[key]:
                    differences.append("%s %r instead of %r" % (name, stored.get(key), run[key]))
        if differences:
            raise Refused("%s was made from different input (%s); refusing to append to it: "
                          "use another --out, or delete it to start again"
                          % (self.path, "; ".join(differences)))

    def read_meta(self, key, default=None):
        with self.env.begin(db=self.meta_db) as txn:
            value = txn.get(key.encode("utf-8"))
        return default if value is None else json.loads(value.decode("utf-8"))

    def commit(self, records, meta):
        """Write records [(key, bytes)] and meta {name: JSON value} in one transaction, growing
        the map until it fits."""
        import lmdb
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in records:
                        txn.put(key, value, db=self.records_db)
                    for name, value in meta.items():
                        txn.put(name.encode("utf-8"), _json_bytes(value), db=self.meta_db)
                return
            except lmdb.MapFullError:
                # The transaction was aborted; a bigger map, then the same transaction again.
                size = self.env.info()["map_size"]
                needed = sum(len(value) for _, value in records)
                self.env.set_mapsize(max(2 * size, size + 2 * needed))
            except lmdb.Error as error:
                # Nothing of this transaction is in the database; what was there stays intact.
                # (LMDB reports a short write, e.g. on a full disk, as an I/O error.)
                raise PackError("%s: writing failed (disk full? disk error?): %s. Everything "
                                "committed before is intact; free some space and rerun the same "
                                "command to continue" % (self.path, error))

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None
        if not self._lock.closed:
            self._lock.close()


# ---- parallel per-image work --------------------------------------------------------------
# Our own small worker set rather than multiprocessing.Pool: Pool.terminate() can deadlock
# (seen here about once in 20 runs when a full disk stopped the writer), and a Pool worker
# killed by the OOM killer leaves its task's result waited for forever. Here every worker has
# its own task and result pipes, chunk k goes to worker k % n (so results come back in file
# order), and a dead worker is noticed through its sentinel.

def _worker_main(tasks, images_dir, task_reader, result_writer):
    # Ctrl-C reaches the whole process group; only the writer handles it. SIGTERM (how the
    # writer stops its workers) must kill, not run the writer's handler inherited by the fork.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:   # die with the writer even when it is killed with SIGKILL (Linux)
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    while True:
        chunk = task_reader.recv()
        if chunk is None:
            return
        first, stop = chunk
        try:
            result = ("ok", [packing.process_image(tasks[i], images_dir)
                             for i in range(first, stop)])
        except Exception:
            result = ("error", "images %d..%d of the annotation file:\n%s"
                      % (first, stop - 1, traceback.format_exc()))
        result_writer.send(result)


class _Worker(object):
    def __init__(self, context, tasks, images_dir):
        task_reader, self.tasks = context.Pipe(duplex=False)
        self.results, result_writer = context.Pipe(duplex=False)
        self.process = context.Process(target=_worker_main, daemon=True,
                                       args=(tasks, images_dir, task_reader, result_writer))
        self.process.start()
        task_reader.close()
        result_writer.close()

    def send(self, chunk):
        try:
            self.tasks.send(chunk)
        except BrokenPipeError:
            self._died()

    def receive(self):
        ready = multiprocessing.connection.wait([self.results, self.process.sentinel])
        if self.results not in ready:
            self._died()
        try:
            status, value = self.results.recv()
        except EOFError:            # it died while sending
            self._died()
        if status == "error":
            raise PackError("a packing worker failed on %s" % value)
        return value

    def _died(self):
        self.process.join()
        raise PackError("a packing worker (pid %d) died with exit code %s (a negative code is "
                        "the signal, e.g. -9 when the system ran out of memory). Everything "
                        "committed is intact; rerun the same command to continue"
                        % (self.process.pid, self.process.exitcode))


class Outcomes(object):
    """Outcomes of images start.. in file order, computed by `workers` forked processes (0: in
    this process). At most a few chunks per worker are in flight, so memory stays bounded however
    slow the writer is."""

    def __init__(self, tasks, images_dir, start, workers):
        self.tasks, self.images_dir, self.start, self.workers = tasks, images_dir, start, workers
        self._workers = []

    def __enter__(self):
        context = multiprocessing.get_context("fork")
        for _ in range(self.workers):
            self._workers.append(_Worker(context, self.tasks, self.images_dir))
        return self

    def __iter__(self):
        if not self._workers:
            for task in self.tasks[self.start:]:
                yield packing.process_image(task, self.images_dir)
            return
        chunks = [(first, min(first + IMAGES_PER_TASK, len(self.tasks)))
                  for first in range(self.start, len(self.tasks), IMAGES_PER_TASK)]
        in_flight = 3 * len(self._workers)
        for number, chunk in enumerate(chunks[:in_flight]):
            self._worker_of(number).send(chunk)
        for number in range(len(chunks)):
            outcomes = self._worker_of(number).receive()
            if number + in_flight < len(chunks):
                self._worker_of(number + in_flight).send(chunks[number + in_flight])
            for outcome in outcomes:
                yield outcome

    def _worker_of(self, chunk_number):
        return self._workers[chunk_number % len(self._workers)]

    def __exit__(self, exc_type, *exc_info):
        workers, self._workers = self._workers, []
        for worker in workers:
            if exc_type is not None:
                worker.process.terminate()
                continue
            try:
                worker.tasks.send(None)       # all work was received: let it finish
            except BrokenPipeError:           # it has exited already; none of its work is missing
                pass
        for worker in workers:
            worker.process.join()
            worker.tasks.close()
            worker.results.close()


# ---- the run --------------------------------------------------------------------------------

def _test_signal():
    spec = os.environ.get(TEST_SIGNAL_VARIABLE)
    if not spec:
        return None
    name, _, index = spec.partition("@")
    return getattr(signal, "SIG" + name), int(index)


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
         initial_map_size=INITIAL_MAP_SIZE, log=None):
    """Pack (or finish packing) `out`; returns the summary dict. Raises PackError subclasses
    (with the message to show) and AnnotationFileError."""
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
        _write_records(database, tasks, images_dir, progress, workers, strict, commit_every,
                       tqdm(total=len(tasks), initial=progress.next_image, unit="img",
                            desc="packing", disable=not progress_bar, dynamic_ncols=True))
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


def _write_records(database, tasks, images_dir, progress, workers, strict, commit_every, bar):
    test_signal = _test_signal()
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
                bar.update(1)
                if test_signal and test_signal[1] == outcome.index:
                    os.kill(os.getpid(), test_signal[0])
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
    finally:
        bar.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Pack COCO person keypoints into an LMDB of training records: one record per "
                    "image with at least one main person, holding the original JPEG, every "
                    "person's keypoints, boxes, areas, the main persons and the loss masks "
                    "(mask_miss, mask_all). Resumable: rerun the same command after an "
                    "interruption. Prints a summary of everything left out and why.")
    parser.add_argument("--ann", required=True,
                        help="COCO keypoint annotation file, e.g. person_keypoints_train2017.json")
    parser.add_argument("--images", required=True,
                        help="folder holding the images named by the file's 'file_name' fields")
    parser.add_argument("--out", required=True, help="output LMDB directory (created)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes checking images and rasterising masks in parallel "
                             "(default: one per CPU core; 0 = all in this process; the writer "
                             "is always this process)")
    parser.add_argument("--limit", type=int, default=None,
                        help="pack only the first N images of the annotation file")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first problem in the input (not at normal exclusions "
                             "such as images without people), naming the file and id")
    parser.add_argument("--commit-every", type=int, default=DEFAULT_COMMIT_EVERY, metavar="N",
                        help="images per transaction: at most this much work is redone after a "
                             "crash (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("workers", "limit", "commit_every"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            parser.error("--%s must be %s" % (name.replace("_", "-"),
                                              "0 or more" if name == "workers" else "positive"))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = pack(args.ann, args.images, args.out, workers=args.workers, limit=args.limit,
                       strict=args.strict, commit_every=args.commit_every,
                       progress_bar=not args.no_progress)
    except AnnotationFileError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except PackError as error:
        print("error: %s" % error, file=sys.stderr)
        return error.exit_code
    print(skip_reasons.format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
