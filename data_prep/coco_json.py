"""Read a COCO keypoint annotation file and plan the packing: one task per image, in file order.

Everything that can be decided from the whole file at once is decided here (malformed image
entries, duplicate image or annotation ids, annotations of unknown images or other categories);
what needs one image's annotations only is left to data_prep.packing, which runs in parallel.
"""
import collections
import hashlib
import json
import os

from data_prep.skip_reasons import Problem


class AnnotationFileError(Exception):
    """The annotation file cannot be used at all; the message names the file and the place."""


ImageTask = collections.namedtuple("ImageTask", "index entry annotations problem")
ImageTask.__doc__ = """One image to pack: its position in the file's `images` list, its entry,
its person annotations in file order, and a Problem that already rules it out (or None)."""


class AnnotationFile(object):
    """The parsed file: `dataset` (the JSON), `path`, `size` (bytes), `sha256`, `person_category`."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as error:
            raise AnnotationFileError("%s: cannot read the annotation file (%s)"
                                      % (path, error.strerror or error))
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            self.dataset = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise AnnotationFileError("%s: not UTF-8 text (byte %d)" % (path, error.start))
        except ValueError as error:
            where = ("line %d column %d" % (error.lineno, error.colno)
                     if hasattr(error, "lineno") else "somewhere")
            raise AnnotationFileError("%s: malformed JSON at %s: %s"
                                      % (path, where, getattr(error, "msg", error)))
        del data
        if not isinstance(self.dataset, dict):
            raise AnnotationFileError("%s: the top level is not a JSON object" % path)
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.dataset.get(key), list):
                raise AnnotationFileError("%s: key %r is missing or is not a list" % (path, key))
        persons = [c.get("id") for c in self.dataset["categories"]
                   if isinstance(c, dict) and c.get("name") == "person"]
        if len(persons) != 1 or type(persons[0]) is not int:
            raise AnnotationFileError("%s: 'categories' must hold exactly one category named "
                                      "'person' with an integer id" % path)
        self.person_category = persons[0]

    def identity(self):
        """What a database made from this file records (content, not location, is compared)."""
        return {"path": self.path, "bytes": self.size, "sha256": self.sha256}


def _image_entry_problem(entry):
    """Why an `images` entry cannot be used, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key in ("id", "height", "width"):
        value = entry.get(key)
        if type(value) is not int or value < (0 if key == "id" else 1):
            return "field %r must be a %s integer, got %r" % (
                key, "non-negative" if key == "id" else "positive", value)
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        return "field 'file_name' must be a non-empty string"
    # A stranger's annotation file must not make us read files outside the images folder.
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or "\0" in name:
        return "field 'file_name' %r is not a path inside the images folder" % name
    return None


def plan_images(annotation_file, limit=None):
    """-> (tasks, problems): one ImageTask per image entry (the first `limit` ones), and the
    annotation-level Problems (annotations that are ignored), in file order."""
    dataset = annotation_file.dataset
    entries = dataset["images"][:limit] if limit is not None else dataset["images"]
    all_ids = collections.Counter(entry.get("id") for entry in dataset["images"]
                                  if isinstance(entry, dict) and type(entry.get("id")) is int)
    by_image = {}
    tasks = []
    for index, entry in enumerate(entries):
        detail = _image_entry_problem(entry)
        image_id = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("file_name") if isinstance(entry, dict) else None
        problem = None
        if detail is not None:
            problem = Problem("image_entry_malformed", name, image_id, None,
                              "images[%d]: %s" % (index, detail))
        elif all_ids[image_id] > 1:
            problem = Problem("image_duplicate_id", name, image_id, None,
                              "%d entries of 'images' have id %d" % (all_ids[image_id], image_id))
        else:
            by_image[image_id] = []
        tasks.append(ImageTask(index, entry, by_image.get(image_id) if problem is None else [],
                               problem))

    problems = []
    annotation_ids = collections.Counter(a.get("id") for a in dataset["annotations"]
                                         if isinstance(a, dict) and type(a.get("id")) is int)
    duplicated_in = {}
    for position, annotation in enumerate(dataset["annotations"]):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
        if type(image_id) is not int:
            problems.append(Problem("annotation_malformed", None, None, annotation_id,
                                    "annotations[%d]: no integer 'image_id'" % position))
            continue
        if image_id not in all_ids:
            problems.append(Problem("annotation_unknown_image", None, image_id, annotation_id,
                                    "annotations[%d]: image id %d is not in 'images'"
                                    % (position, image_id)))
            continue
        if image_id not in by_image:
            continue          # an image beyond --limit, or one already ruled out
        category = annotation.get("category_id")
        if category is not None and category != annotation_file.person_category:
            problems.append(Problem("annotation_not_person", None, image_id, annotation_id,
                                    "annotations[%d]: category %r is not 'person' (%d)"
                                    % (position, category, annotation_file.person_category)))
            continue
        if annotation_ids[annotation_id] > 1:
            duplicated_in.setdefault(image_id, annotation_id)
        by_image[image_id].append(annotation)

    for position, task in enumerate(tasks):
        if task.problem is None and task.entry["id"] in duplicated_in:
            annotation_id = duplicated_in[task.entry["id"]]
            tasks[position] = task._replace(annotations=[], problem=Problem(
                "image_duplicate_annotation_id", task.entry["file_name"], task.entry["id"],
                annotation_id, "%d annotations have id %d"
                % (annotation_ids[annotation_id], annotation_id)))
    return tasks, problems
