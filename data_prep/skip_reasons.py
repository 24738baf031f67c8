"""Every reason the packer leaves something out, in one table (summary, --strict, README).

Each reason has a level (what is left out: an image, a person, a keypoint or an annotation) and is
either an *exclusion* -- normal in the official COCO files, the selection rule at work -- or a
*problem* in the input, which `--strict` stops at.
"""
import collections

Problem = collections.namedtuple("Problem", "reason file_name image_id annotation_id detail")
Problem.__doc__ = "One occurrence of a reason, with where it happened (fields may be None)."

IMAGE, PERSON, KEYPOINT, ANNOTATION = "image", "person", "keypoint", "annotation"
LEVEL_TITLES = (
    (IMAGE, "images skipped (no record)"),
    (PERSON, "persons left out of a record (masked out in mask_miss)"),
    (KEYPOINT, "keypoints"),
    (ANNOTATION, "annotations ignored"),
)

# name: (level, is_problem, description)
REASONS = collections.OrderedDict([
    ("no_person", (IMAGE, False, "no person annotation at all")),
    ("crowd_only", (IMAGE, False, "only crowd regions")),
    ("no_main_person", (IMAGE, False, "no person passes the main-person rule")),
    ("image_entry_malformed", (IMAGE, True,
                               "its 'images' entry lacks a valid id, size or file name")),
    ("image_duplicate_id", (IMAGE, True, "another 'images' entry has the same id")),
    ("image_duplicate_annotation_id", (IMAGE, True,
                                       "one of its annotations shares its id with another")),
    ("image_bad_annotation", (IMAGE, True,
                              "one of its annotations is malformed (keypoints, box, "
                              "segmentation, ...): its masks could not be trusted")),
    ("image_missing", (IMAGE, True, "the image file cannot be read")),
    ("image_not_jpeg", (IMAGE, True, "the file is not a JPEG")),
    ("image_truncated", (IMAGE, True, "the JPEG file is cut short")),
    ("image_corrupt", (IMAGE, True, "the JPEG file is broken")),
    ("image_size_mismatch", (IMAGE, True, "the JPEG's size differs from the annotation file's")),
    ("internal_error", (IMAGE, True, "an unexpected error while packing it (a bug: report it)")),
    ("person_no_keypoints", (PERSON, False, "no labelled keypoint")),
    ("person_nonfinite_keypoints", (PERSON, True, "a labelled keypoint is NaN or infinite")),
    ("person_bad_box", (PERSON, True,
                        "box width or height not positive, or box or area not finite")),
    ("keypoint_clipped", (KEYPOINT, False,
                          "labelled keypoint up to 1 px outside the image, moved onto its border")),
    ("keypoint_outside_image", (KEYPOINT, True,
                                "labelled keypoint more than 1 px outside the image, dropped")),
    ("annotation_malformed", (ANNOTATION, True, "no integer image_id")),
    ("annotation_unknown_image", (ANNOTATION, True, "its image id is not in 'images'")),
    ("annotation_not_person", (ANNOTATION, True, "its category is not 'person'")),
])


def is_problem(reason):
    return REASONS[reason][1]


def describe(problem):
    """'file.jpg (image 12, annotation 34): detail' for messages."""
    where = ", ".join("%s %s" % (name, value) for name, value in
                      (("image", problem.image_id), ("annotation", problem.annotation_id))
                      if value is not None)
    place = problem.file_name or ""
    if where:
        place = "%s (%s)" % (place, where) if place else where
    return "%s: %s" % (place or "annotation file", problem.detail)


def format_summary(summary):
    """The packing summary (packer.build_summary's dict) as text for people."""
    lines = ["images read        %8d" % summary["images_read"],
             "records written    %8d" % summary["records"],
             "persons in records %8d" % summary["persons"],
             "main persons       %8d" % summary["main_persons"]]
    reasons = summary["reasons"]
    for level, title in LEVEL_TITLES:
        rows = [(name, reasons[name], info) for name, info in REASONS.items()
                if info[0] == level and reasons.get(name)]
        if rows:
            lines.append(title + ":")
            lines.extend("  %-30s %7d  %s%s" % (name, number, "PROBLEM: " if info[1] else "",
                                                   info[2]) for name, number, info in rows)
    if summary["examples"]:
        lines.append("examples:")
        for reason, shown in summary["examples"].items():
            lines.extend("  %s: %s" % (reason, text) for text in shown)
    return "\n".join(lines)
