"""Procedurally drawn people for the embedded demo dataset (see data_prep/SYNTHETIC.md).

One scene = a background, 1-4 people drawn as filled capsules and polygons, sometimes a crowd of
small people behind them and an object in front of them. `render_scene` returns the picture and,
for every person, the COCO keypoints with their visibility and the silhouette polygons; the
make_synthetic tool turns scenes into a COCO person_keypoints dataset.

The body is a small 3-D skeleton (torso, neck, head, upper/lower arms and legs) posed with joint
angles, turned about the vertical axis by at most YAW_LIMIT, rolled in the image plane and
projected orthographically. Everybody faces the viewer: that is the one left/right cue, and it
survives horizontal-flip augmentation (a mirrored front-facing person is a front-facing person
once left and right are swapped), where a side-specific mark (a watch on the left wrist) would
not. The face (eyes, nose) shows which way the head faces and the hair and the shoes show which
end is up, so "the person's right is on the left of the body's axis, seen head up" can be learnt.

Coordinates: keypoints use the project's convention, pixel centres at integers (what COCO's
keypoints are: pixel indices). Polygons are drawn in that frame too; the make_synthetic tool shifts
them by +0.5 when it writes COCO segmentations, because pycocotools rasterises polygons with pixel
corners at integers.
"""
import collections
import math
import statistics

import cv2
import numpy as np

from data_prep.keypoints import COCO_KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

# Body proportions in units of the standing height (top of the head to the soles).
TORSO = 0.30                # hip centre to neck
NECK_TO_HEAD = 0.085        # neck to the centre of the head
HEAD_RADIUS = 0.062
SHOULDER_HALF_WIDTH = 0.1
HIP_HALF_WIDTH = 0.062
UPPER_ARM, FOREARM, HAND_RADIUS = 0.16, 0.14, 0.026
THIGH, SHIN, FOOT = 0.245, 0.235, 0.055
# Limb thickness (capsule radii), also in units of the height, before the person's build factor.
RADIUS = {"upper_arm": 0.030, "forearm": 0.024, "thigh": 0.043, "shin": 0.032, "foot": 0.022,
          "neck": 0.026, "shoulder": 0.038, "hip": 0.052,
          "hand": HAND_RADIUS}
MIN_RADIUS_PX = 1.0         # tiny crowd people stay visible

YAW_LIMIT = 35.0            # degrees; everybody faces the viewer
HEAD_YAW_LIMIT = 25.0       # degrees, head against the body
# A facial keypoint is behind the head (hidden by the person's own head) when the z component of
# its surface normal (towards the viewer) is below this; it is then labelled occluded (v = 1).
EYE_HIDDEN_BELOW = 0.1
EAR_HIDDEN_BELOW = -0.45

POSE_KINDS = ("standing", "walking", "arms_raised", "reaching", "sitting", "lying")
POSE_WEIGHTS = (0.26, 0.20, 0.14, 0.14, 0.14, 0.12)

# Skin tones and hair colours as RGB; clothes get random hues.
SKIN_RGB = ((255, 224, 196), (241, 194, 155), (224, 172, 132), (198, 134, 98), (141, 85, 54),
            (94, 60, 40))
HAIR_RGB = ((25, 20, 15), (70, 45, 25), (120, 80, 40), (200, 170, 110), (160, 160, 160),
            (140, 60, 25))

SIDES = (("right", -1.0), ("left", 1.0))   # body-frame x points to the person's left

Person = collections.namedtuple("Person", [
    "keypoints",    # (17, 3) float64 in COCO's order: x, y, v (0 outside the image, 1, 2)
    "polygons",     # list of (N, 2) silhouette polygons, pixel centres at integers (drawn
                    # shapes grown by SILHOUETTE_GROW)
    "mask",         # (H, W) bool: the whole drawn body, also where something covers it
    "visible",      # (H, W) bool: the body where nothing drawn later covers it
    "annotated",    # bool: keypoints are published (False: a person left unannotated)
    "pose",         # one of POSE_KINDS
    "height_px",    # standing height in pixels
])
Scene = collections.namedtuple("Scene", [
    "image",        # (H, W, 3) uint8 BGR, the final picture (sensor noise and blur included)
    "clean",        # (H, W, 3) uint8 BGR, before noise and blur
    "background",   # (H, W, 3) uint8 BGR, the background alone
    "people",       # list of Person, in drawing order (back to front)
    "crowd_mask",   # (H, W) bool union of the crowd's small people, or None
    "occluder_mask",  # (H, W) bool: the object drawn in front of the people (may be empty)
])


# ----------------------------------------------------------------------------- rotations
# Body frame: x to the person's left, y down, z towards the viewer (the person's front).

def rot_x(degrees):
    """Turns +y (down) towards +z (front): a positive flexion swings a hanging limb forward."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(degrees):
    """Turns +z (front) towards +x (the person's left): yaw about the vertical axis."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(degrees):
    """Turns +y (down) towards +x: abduction of a left limb, or a roll in the image plane."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


DOWN = np.array([0.0, 1.0, 0.0])


# ----------------------------------------------------------------------------- poses

def sample_pose(rng, kind):
    """Joint angles in degrees for one pose kind.

    Per side ("right", "left"): arm/leg abduction (away from the body), flexion (forward),
    bend (elbow forward, knee backward) and twist (turns the bend's plane; positive bends the
    forearm outwards). Plus torso lean/side bend, head tilt/nod/yaw, body yaw and image roll.
    """
    u = rng.uniform
    pose = {"lean": u(-8, 15), "side_bend": u(-8, 8), "head_tilt": u(-15, 15),
            "head_nod": u(-10, 15), "head_yaw": u(-HEAD_YAW_LIMIT, HEAD_YAW_LIMIT),
            "yaw": u(-YAW_LIMIT, YAW_LIMIT), "roll": u(-12, 12)}

    def arm(abduction, flexion, bend, twist=(-40, 40)):
        return {"abduction": u(*abduction), "flexion": u(*flexion), "bend": u(*bend),
                "twist": u(*twist)}

    def leg(abduction, flexion, bend):
        return {"abduction": u(*abduction), "flexion": u(*flexion), "bend": u(*bend),
                "twist": u(-15, 15)}

    standing_arm = ((5, 30), (-20, 25), (0, 45))
    standing_leg = ((0, 12), (-8, 12), (0, 12))
    if kind == "standing":
        limbs = {side: (arm(*standing_arm), leg(*standing_leg)) for side, _ in SIDES}
    elif kind == "walking":
        swing = 1.0 if rng.rand() < 0.5 else -1.0
        limbs = {}
        for side, sign in SIDES:
            forward = swing * sign > 0          # this leg steps forward, the same-side arm back
            thigh = u(15, 32) * (1 if forward else -1)
            arm_swing = -thigh * u(0.6, 1.2)
            limbs[side] = (arm((5, 15), (arm_swing, arm_swing), (5, 40)),
                           leg((0, 10), (thigh, thigh), (0, 15) if forward else (10, 45)))
    elif kind == "arms_raised":
        limbs = {}
        for side, _ in SIDES:
            raised = rng.rand() < 0.8
            limbs[side] = (arm((100, 175), (-20, 40), (0, 70)) if raised else arm(*standing_arm),
                           leg(*standing_leg))
    elif kind == "reaching":
        limbs = {side: (arm((0, 150), (-40, 120), (0, 130), (-70, 70)),
                        leg((0, 35), (-15, 45), (0, 60))) for side, _ in SIDES}
    elif kind == "sitting":
        pose["lean"] = u(-5, 20)
        limbs = {side: (arm((5, 25), (20, 60), (30, 90)), leg((5, 25), (70, 100), (60, 100)))
                 for side, _ in SIDES}
    elif kind == "lying":
        pose["roll"] = (1 if rng.rand() < 0.5 else -1) * u(60, 100)
        limbs = {side: (arm((5, 60), (-20, 40), (0, 60)), leg((0, 20), (-10, 30), (0, 40)))
                 for side, _ in SIDES}
    else:
        raise ValueError("unknown pose kind %r (one of %s)" % (kind, ", ".join(POSE_KINDS)))
    for side, _ in SIDES:
        pose[side + "_arm"], pose[side + "_leg"] = limbs[side]
    return pose


def skeleton_3d(pose, build):
    """Joint positions (body units, origin at the hip centre) and the head's frame.

    Returns (joints, face_frame): joints maps names to 3-vectors in the pelvis frame (before the
    body's yaw and roll); face_frame is the rotation of the head (z = where the face looks).
    """
    torso = rot_z(pose["side_bend"]) @ rot_x(-pose["lean"])
    joints = {"hip_centre": np.zeros(3)}
    joints["neck"] = torso @ np.array([0.0, -TORSO, 0.0])
    head = torso @ rot_z(pose["head_tilt"]) @ rot_x(-pose["head_nod"])
    joints["head"] = joints["neck"] + head @ np.array([0.0, -NECK_TO_HEAD, 0.0])
    face_frame = head @ rot_y(pose["head_yaw"])
    for side, sign in SIDES:
        shoulder = joints["neck"] + torso @ np.array([sign * SHOULDER_HALF_WIDTH * build, 0, 0])
        hip = np.array([sign * HIP_HALF_WIDTH * build, 0.0, 0.0])
        a, g = pose[side + "_arm"], pose[side + "_leg"]
        upper = torso @ rot_z(sign * a["abduction"]) @ rot_x(a["flexion"])
        lower = upper @ rot_y(sign * a["twist"]) @ rot_x(a["bend"])
        joints[side + "_shoulder"] = shoulder
        joints[side + "_elbow"] = shoulder + UPPER_ARM * (upper @ DOWN)
        joints[side + "_wrist"] = joints[side + "_elbow"] + FOREARM * (lower @ DOWN)
        joints[side + "_hand"] = joints[side + "_wrist"] + 0.8 * HAND_RADIUS * (lower @ DOWN)
        thigh = rot_z(sign * g["abduction"]) @ rot_x(g["flexion"])
        shin = thigh @ rot_y(sign * g["twist"]) @ rot_x(-g["bend"])
        joints[side + "_hip"] = hip
        joints[side + "_knee"] = hip + THIGH * (thigh @ DOWN)
        joints[side + "_ankle"] = joints[side + "_knee"] + SHIN * (shin @ DOWN)
        toe = np.array([sign * 0.3, 0.45, 0.85])
        joints[side + "_toe"] = joints[side + "_ankle"] + FOOT * toe / np.linalg.norm(toe)
    return joints, face_frame


# Facial points on the unit head sphere, in the face frame (x = the person's left).
FACE_POINTS = {
    "nose": (0.0, 0.18, 0.98),
    "right_eye": (-0.38, -0.15, 0.91), "left_eye": (0.38, -0.15, 0.91),
    "right_ear": (-0.98, 0.05, -0.12), "left_ear": (0.98, 0.05, -0.12),
}


# ----------------------------------------------------------------------------- polygons

def unit_arc(start, stop, points, endpoint=True):
    """(points, 2) unit vectors at angles start..stop (radians)."""
    t = np.linspace(start, stop, points, endpoint=endpoint)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


CIRCLES = {n: unit_arc(0, 2 * math.pi, n, endpoint=False) for n in (8, 10, 12, 16, 20)}
HALF_CIRCLE = unit_arc(-math.pi / 2, math.pi / 2, 5)        # a capsule's end, seen along +x


def rotation_2d(angle):
    """Row vectors times this matrix turn by `angle` radians (x towards y)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, s], [-s, c]])


def ellipse_polygon(centre, radii, angle=0.0, points=12):
    """An ellipse with half-axes `radii`, turned by `angle` radians, as an (N, 2) polygon."""
    return np.asarray(centre) + (CIRCLES[points] * np.asarray(radii)) @ rotation_2d(angle)


def capsule_polygon(a, b, radius):
    """The segment a-b thickened by `radius`: two half circles joined by straight sides."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    direction = b - a
    theta = math.atan2(direction[1], direction[0]) if np.hypot(*direction) > 1e-9 else 0.0
    ends = radius * HALF_CIRCLE @ rotation_2d(theta)
    return np.concatenate([b + ends, a - ends])


def hull_of_circles(centres, radii, points=10):
    """Convex hull of several circles (the torso: shoulders and hips) as an (N, 2) polygon."""
    samples = np.concatenate([ellipse_polygon(c, (r, r), 0.0, points)
                              for c, r in zip(centres, radii)])
    hull = cv2.convexHull(samples.astype(np.float32))[:, 0, :]
    return hull.astype(np.float64)


# The body's shapes. polygon(grow) thickens a shape by `grow` pixels: OpenCV's fill covers about
# half a pixel more than the polygon's exact area, so the published silhouettes are the drawn
# shapes grown by SILHOUETTE_GROW, which makes pycocotools' masks match the drawn pixels.
SILHOUETTE_GROW = 0.5


class Capsule(collections.namedtuple("Capsule", "a b radius")):
    def polygon(self, grow=0.0):
        return capsule_polygon(self.a, self.b, self.radius + grow)


class Ellipse(collections.namedtuple("Ellipse", "centre radii angle points")):
    def polygon(self, grow=0.0):
        return ellipse_polygon(self.centre, (self.radii[0] + grow, self.radii[1] + grow),
                               self.angle, self.points)


class CircleHull(collections.namedtuple("CircleHull", "centres radii")):
    def polygon(self, grow=0.0):
        return hull_of_circles(self.centres, [r + grow for r in self.radii])


def circle(centre, radius, points=12):
    return Ellipse(centre, (radius, radius), 0.0, points)


def fill(image, polygon, colour, antialias=True):
    """Fill a polygon given with sub-pixel coordinates (pixel centres at integers)."""
    points = np.round(np.asarray(polygon) * 16).astype(np.int32)
    cv2.fillPoly(image, [points], colour, lineType=cv2.LINE_AA if antialias else cv2.LINE_8,
                 shift=4)


# ----------------------------------------------------------------------------- colours

def rgb_to_bgr(rgb, rng, jitter):
    return tuple(int(np.clip(c + rng.uniform(-jitter, jitter), 0, 255)) for c in rgb[::-1])


def random_colour(rng, saturation=(0.0, 1.0), value=(0.1, 1.0)):
    """A BGR colour from a uniform hue and the given saturation/value ranges."""
    hsv = np.uint8([[[rng.randint(0, 180), int(255 * rng.uniform(*saturation)),
                      int(255 * rng.uniform(*value))]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def sample_outfit(rng):
    skin = rgb_to_bgr(SKIN_RGB[rng.randint(len(SKIN_RGB))], rng, 12)
    shirt = random_colour(rng, (0.25, 1.0), (0.3, 1.0))
    trousers = random_colour(rng, (0.1, 0.9), (0.15, 0.75))
    return {
        "skin": skin, "shirt": shirt, "trousers": trousers,
        "sleeve": shirt if rng.rand() < 0.5 else skin,          # long or short sleeves
        "shin": trousers if rng.rand() < 0.8 else skin,         # trousers or shorts
        "shoes": random_colour(rng, (0.0, 0.6), (0.05, 0.35)),
        "hair": rgb_to_bgr(HAIR_RGB[rng.randint(len(HAIR_RGB))], rng, 10),
        "eyes": (30, 25, 20),
    }


# ----------------------------------------------------------------------------- one person

class Body(object):
    """A posed person placed in the image: projected joints, depths and drawing primitives."""

    def __init__(self, rng, height_px, pose_kind):
        self.height_px = height_px
        self.pose_kind = pose_kind
        self.pose = sample_pose(rng, pose_kind)
        self.build = rng.uniform(0.85, 1.2)
        self.outfit = sample_outfit(rng)
        joints, face_frame = skeleton_3d(self.pose, self.build)
        world = rot_z(self.pose["roll"]) @ rot_y(self.pose["yaw"])
        names = sorted(joints)
        points = np.stack([joints[n] for n in names]) @ world.T * height_px
        self.face_frame = world @ face_frame
        self.joints = {n: p for n, p in zip(names, points)}   # x, y in pixels (origin: hips), z
        self.offset = np.zeros(2)

    def place(self, offset):
        self.offset = np.asarray(offset, dtype=np.float64)

    def xy(self, name):
        return self.joints[name][:2] + self.offset

    def radius(self, part):
        return max(MIN_RADIUS_PX, RADIUS[part] * self.build * self.height_px)

    def head_radius(self):
        return max(1.5 * MIN_RADIUS_PX, HEAD_RADIUS * self.height_px)

    def face_point(self, name):
        """Projected facial point and the z of its surface normal (> 0: faces the viewer)."""
        normal = self.face_frame @ np.asarray(FACE_POINTS[name])
        normal = normal / np.linalg.norm(normal)
        return self.xy("head") + self.head_radius() * normal[:2], normal[2]

    def keypoints(self):
        """(17, 3): x, y and 2, or 1 for facial points behind the head (COCO's order)."""
        out = np.zeros((NUM_COCO_KEYPOINTS, 3))
        for k, name in enumerate(COCO_KEYPOINT_NAMES):
            if name in FACE_POINTS:
                xy, normal_z = self.face_point(name)
                hidden_below = EAR_HIDDEN_BELOW if name.endswith("ear") else EYE_HIDDEN_BELOW
                out[k] = (xy[0], xy[1], 1 if normal_z < hidden_below else 2)
            else:
                out[k] = (self.xy(name)[0], self.xy(name)[1], 2)
        return out

    def groups(self):
        """Drawing groups back to front: (depth, [(polygon, colour, in_silhouette)], details).

        A group's depth is the mean z of its joints plus a bias that keeps the usual order
        (legs behind the shirt, arms and head in front of it) unless a limb swings far back.
        """
        o = self.outfit
        groups = []

        def group(bias, joint_names, shapes):
            depth = np.mean([self.joints[n][2] for n in joint_names]) / self.height_px + bias
            groups.append((depth, shapes))

        for side, _ in SIDES:
            hip, knee, ankle = (self.xy(side + p) for p in ("_hip", "_knee", "_ankle"))
            group(-0.10, [side + "_hip", side + "_knee", side + "_ankle"], [
                (Capsule(hip, knee, self.radius("thigh")), o["trousers"]),
                (Capsule(knee, ankle, self.radius("shin")), o["shin"]),
                (Capsule(ankle, self.xy(side + "_toe"), self.radius("foot")), o["shoes"]),
            ])
        group(-0.05, ["neck", "head"], [
            (Capsule(self.xy("neck"), self.xy("head"), self.radius("neck")), o["skin"])])
        corners = [self.xy(n) for n in ("right_shoulder", "left_shoulder", "left_hip",
                                        "right_hip")]
        radii = [self.radius("shoulder")] * 2 + [self.radius("hip")] * 2
        group(0.0, ["neck", "hip_centre"], [(CircleHull(corners, radii), o["shirt"])])
        group(0.05, ["head"], self._head_shapes())
        for side, _ in SIDES:
            shoulder, elbow, wrist = (self.xy(side + p) for p in ("_shoulder", "_elbow", "_wrist"))
            group(0.04, [side + "_shoulder", side + "_elbow", side + "_wrist"], [
                (Capsule(shoulder, elbow, self.radius("upper_arm")), o["shirt"]),
                (Capsule(elbow, wrist, self.radius("forearm")), o["sleeve"]),
                (circle(self.xy(side + "_hand"), self.radius("hand")), o["skin"]),
            ])
        groups.sort(key=lambda g: g[0])
        return [shapes for _, shapes in groups]

    def _head_shapes(self):
        o, r, centre = self.outfit, self.head_radius(), self.xy("head")
        up = self.xy("neck") - centre
        up = -up / max(np.linalg.norm(up), 1e-9)                       # from the neck to the top
        angle = math.atan2(up[1], up[0]) + math.pi / 2
        shapes = []
        ears = [n for n in ("right_ear", "left_ear")]
        behind = [n for n in ears if self.face_point(n)[1] < 0]
        for name in behind:                                             # hidden by the head
            shapes.append((circle(self.face_point(name)[0], 0.25 * r, 8), o["skin"]))
        shapes.append((Ellipse(centre + 0.10 * r * up, (0.99 * r, 1.04 * r), angle, 16),
                       o["hair"]))
        shapes.append((Ellipse(centre - 0.08 * r * up, (0.86 * r, 0.93 * r), angle, 16),
                       o["skin"]))
        for name in ears:
            if name not in behind:
                shapes.append((circle(self.face_point(name)[0], 0.25 * r, 8), o["skin"]))
        return shapes

    def draw_face(self, image):
        """Eyes, nose and mouth: details inside the head, not part of the silhouette."""
        r = self.head_radius()
        if r < 4:
            return
        dot = max(1, int(round(0.12 * r)))
        for name in ("right_eye", "left_eye"):
            xy, normal_z = self.face_point(name)
            if normal_z >= EYE_HIDDEN_BELOW:
                cv2.circle(image, tuple(int(round(c)) for c in xy), dot, self.outfit["eyes"], -1,
                           cv2.LINE_AA)
        xy, normal_z = self.face_point("nose")
        if normal_z > 0:
            darker = tuple(int(0.75 * c) for c in self.outfit["skin"])
            cv2.circle(image, tuple(int(round(c)) for c in xy), dot, darker, -1, cv2.LINE_AA)

    def bounds(self):
        """(x0, y0, x1, y1) of the joints and the head, in pixels at the current offset."""
        xy = np.stack([self.xy(n) for n in self.joints])
        r = self.head_radius() * 1.1
        return np.concatenate([xy.min(axis=0) - r, xy.max(axis=0) + r])

    def draw(self, image, mask):
        """Paint the person into `image` and its silhouette into `mask`; returns the polygons."""
        polygons = []
        for shapes in self.groups():
            for shape, colour in shapes:
                drawn = shape.polygon()
                fill(image, drawn, colour)
                fill(mask, drawn, 1, antialias=False)
                polygons.append(shape.polygon(SILHOUETTE_GROW))
        self.draw_face(image)
        return polygons


# ----------------------------------------------------------------------------- the scene

def draw_background(rng, height, width):
    """Gradient or smooth colour noise, maybe a floor, then random shapes (clutter)."""
    if rng.rand() < 0.5:
        a, b = (np.array(random_colour(rng), dtype=np.float32) for _ in range(2))
        angle = rng.uniform(0, 2 * math.pi)
        xx = np.arange(width, dtype=np.float32)[None, :] / width
        yy = np.arange(height, dtype=np.float32)[:, None] / height
        t = math.cos(angle) * xx + math.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = a + t[..., None] * (b - a)
    else:
        cells, amplitude = rng.randint(3, 12), rng.uniform(30, 110)
        base = np.array(random_colour(rng), dtype=np.float32)
        coarse = base + rng.uniform(-amplitude, amplitude, size=(cells, cells, 3))
        coarse = coarse.astype(np.float32)
        image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.rand() < 0.5:                                                # a floor
        horizon = int(rng.uniform(0.3, 0.8) * height)
        floor = random_colour(rng, (0.0, 0.6), (0.2, 0.9))
        image[horizon:] = (0.5 * image[horizon:] + 0.5 * np.array(floor)).astype(np.uint8)
    for _ in range(rng.randint(2, 14)):
        draw_clutter(rng, image)
    return image


def draw_clutter(rng, image):
    """One random shape, opaque or translucent."""
    height, width = image.shape[:2]
    layer = image.copy()
    colour = random_colour(rng)
    centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
    size = max(2, int(rng.uniform(0.03, 0.3) * min(height, width)))
    shape = rng.randint(4)
    if shape == 0:
        box = ((centre[0], centre[1]), (size, int(size * rng.uniform(0.2, 2))), rng.uniform(0, 180))
        fill(layer, cv2.boxPoints(box), colour)
    elif shape == 1:
        cv2.circle(layer, centre, size // 2, colour, -1, cv2.LINE_AA)
    elif shape == 2:
        triangle = np.array(centre) + rng.uniform(-size, size, size=(3, 2))
        fill(layer, triangle, colour)
    else:
        end = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        cv2.line(layer, centre, end, colour, int(rng.randint(1, 4)), cv2.LINE_AA)
    alpha = rng.uniform(0.3, 1.0)
    image[:] = cv2.addWeighted(layer, alpha, image, 1 - alpha, 0)


def place_bodies(rng, bodies, height, width, tries=12):
    """Offsets for bodies: mostly inside the image, some cut by its border, little pile-up."""
    boxes = []
    for body in bodies:
        x0, y0, x1, y1 = body.bounds()
        w, h = x1 - x0, y1 - y0
        best = None
        for _ in range(tries):
            # up to a quarter of the body may leave the picture on any side
            dx = uniform_between(rng, -x0 - 0.25 * w, width - 1 - x1 + 0.25 * w)
            dy = uniform_between(rng, -y0 - 0.25 * h, height - 1 - y1 + 0.25 * h)
            box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
            overlap = max([box_iou(box, other) for other in boxes] + [0.0])
            if best is None or overlap < best[0]:
                best = (overlap, (dx, dy), box)
            if overlap < 0.3:
                break
        body.place(best[1])
        boxes.append(best[2])


def uniform_between(rng, a, b):
    """Uniform between a and b in either order (a body larger than the image swaps them)."""
    return rng.uniform(min(a, b), max(a, b))


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_crowd(rng, image):
    """5-10 small people side by side, behind everybody; returns the union of their bodies."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    count = rng.randint(5, 11)
    left = rng.uniform(0, 0.6) * width
    span = rng.uniform(0.25, 0.45) * width
    feet = rng.uniform(0.35, 0.95) * height
    members = []
    for _ in range(count):
        body = Body(rng, rng.uniform(0.09, 0.16) * height, POSE_KINDS[rng.randint(2)])
        x0, y0, x1, y1 = body.bounds()
        body.place((left + rng.uniform(0, span) - (x0 + x1) / 2,
                    feet + rng.uniform(-0.04, 0.04) * height - y1))
        members.append(body)
    members.sort(key=lambda b: b.bounds()[3])                          # farther (higher) first
    for body in members:
        body.draw(image, mask)
    return mask.astype(bool)


def draw_occluder(rng, image, target):
    """An object in front of `target` (a Body): a box, a ball or a pole over one of its joints."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    names = sorted(n for n in target.joints if n not in ("hip_centre",))
    centre = target.xy(names[rng.randint(len(names))])
    size = rng.uniform(0.15, 0.35) * target.height_px
    colour = random_colour(rng, (0.0, 1.0), (0.2, 1.0))
    kind = rng.randint(3)
    if kind == 0:
        box = ((float(centre[0]), float(centre[1])), (size, size * rng.uniform(0.4, 1.5)),
               rng.uniform(-20, 20))
        polygon = cv2.boxPoints(box)
    elif kind == 1:
        polygon = ellipse_polygon(centre, (size / 2, size / 2 * rng.uniform(0.6, 1.0)),
                                  rng.uniform(0, math.pi), 20)
    else:                                                              # a pole through the scene
        half = max(2.0, size / 5)
        polygon = np.array([[centre[0] - half, -2], [centre[0] + half, -2],
                            [centre[0] + half, height + 1], [centre[0] - half, height + 1]])
    fill(image, polygon, colour)
    fill(mask, polygon, 1, antialias=False)
    if kind != 2 and rng.rand() < 0.5:                                 # a stripe, for texture
        striped = image.copy()
        cv2.line(striped, (int(centre[0] - size / 2), int(centre[1])),
                 (int(centre[0] + size / 2), int(centre[1])), random_colour(rng),
                 max(1, int(size / 8)))
        image[mask > 0] = striped[mask > 0]                            # kept inside the object
    return mask.astype(bool)


def sample_person_count(rng):
    return 1 + int(rng.choice(4, p=(0.3, 0.3, 0.25, 0.15)))


def render_scene(rng, height, width, unannotated_rate=0.15, crowd_rate=0.2, occluder_rate=0.3):
    """One picture with its people; all randomness comes from `rng` (a RandomState)."""
    background = draw_background(rng, height, width)
    image = background.copy()
    crowd_mask = draw_crowd(rng, image) if rng.rand() < crowd_rate else None

    bodies, annotated = [], []
    for _ in range(sample_person_count(rng)):
        is_annotated = rng.rand() >= unannotated_rate
        # people left unannotated are small ones, as in COCO
        fraction = rng.uniform(0.25, 0.9) if is_annotated else rng.uniform(0.2, 0.4)
        kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=POSE_WEIGHTS)]
        bodies.append(Body(rng, fraction * height, kind))
        annotated.append(is_annotated)
    place_bodies(rng, bodies, height, width)
    # larger people are nearer: drawn later, in front (with a little shuffling)
    order = np.argsort([b.height_px * rng.uniform(0.8, 1.25) for b in bodies], kind="stable")

    masks, polygons = [], []
    for index in order:
        mask = np.zeros((height, width), dtype=np.uint8)
        polygons.append(bodies[index].draw(image, mask))
        masks.append(mask.astype(bool))
    occluder = np.zeros((height, width), dtype=bool)
    targets = [bodies[i] for i in order if annotated[i]]
    if targets and rng.rand() < occluder_rate:
        occluder = draw_occluder(rng, image, targets[rng.randint(len(targets))])

    people = []
    covered = occluder.copy()               # what is drawn after the person being visited
    for position in range(len(order) - 1, -1, -1):
        body = bodies[order[position]]
        keypoints = label_visibility(body.keypoints(), covered, height, width)
        people.append(Person(keypoints, polygons[position], masks[position],
                             masks[position] & ~covered, annotated[order[position]],
                             body.pose_kind, body.height_px))
        covered = covered | masks[position]
    people.reverse()

    clean = image.copy()
    image = add_camera_noise(rng, image)
    return Scene(image, clean, background, people, crowd_mask, occluder)


def label_visibility(keypoints, covered, height, width):
    """v = 0 (and x = y = 0) outside the image, 1 where something in front covers the point."""
    out = keypoints.copy()
    for k in range(len(out)):
        x, y = out[k, :2]
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            out[k] = 0
        elif covered[int(round(y)), int(round(x))]:
            out[k, 2] = 1
    return out


# Standard normal quantiles of the 256 byte values: Gaussian noise from random bytes, which is
# several times faster than RandomState.normal for a whole picture.
NORMAL_QUANTILES = np.array([statistics.NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


def add_camera_noise(rng, image):
    """A little blur sometimes, and Gaussian luminance noise (sensor noise)."""
    if rng.rand() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
    table = np.round(NORMAL_QUANTILES * rng.uniform(0, 6)).astype(np.int16)
    noise = table[np.frombuffer(rng.bytes(image.shape[0] * image.shape[1]), dtype=np.uint8)]
    noisy = image.astype(np.int16) + noise.reshape(image.shape[:2] + (1,))
    return np.clip(noisy, 0, 255).astype(np.uint8)
