"""The packer's output LMDB, open for writing by one process: the lock, the checks on an existing
database, atomic commits and the growing map. The record format itself: data_prep/record.py.

Commits. Every commit is one LMDB transaction holding a batch of records *and* the metadata that
says how far the packing is (data_prep.packer writes its progress marker with them); LMDB's
copy-on-write commits are atomic, so after Ctrl-C, kill -9, a power cut or a full disk the
database holds exactly what was committed. A write error aborts the transaction and leaves what
was committed before intact.

Refusals. A database made from another annotation file, images folder or --limit is refused, as
is a second packer writing the same database (a lock file, LOCK_FILE, held with flock) and a
non-empty folder that is not a database.

Map size. LMDB needs a maximum size up front; we start small and double it whenever a
transaction does not fit (the transaction is retried), so no terabyte-sized map is reserved.
`writemap` stays off: with it a full disk would kill us with SIGBUS, not an error.
"""
import fcntl
import json
import os

from data_prep import record

INITIAL_MAP_SIZE = 16 << 20
LOCK_FILE = "packer.lock"


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
