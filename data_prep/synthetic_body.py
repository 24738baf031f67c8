"""A drawn person of the synthetic demo data: a posed 3-D capsule body (data_prep/SYNTHETIC.md).

The body is a small 3-D skeleton (torso, neck, head, upper/lower arms and legs) posed with joint
angles, turned about the vertical axis by at most YAW_LIMIT, rolled in the image plane and
projected orthographically. Everybody faces the viewer: that is the one left/right cue, and it
survives horizontal-flip augmentation (a mirrored front-facing person is a front-facing person
once left and right are swapped), where a side-specific mark (a watch on the left wrist) would
not. The face (eyes, nose) shows which way the head faces and the hair and the shoes show which
end is up, so "the person's right is on the left of the body's axis, seen head up" can be learnt.

Coordinates are pixels with pixel centres at integers, the project's convention (and what COCO's
keypoints are: pixel indices); x to the right, y down.
"""
import collections
import math

import cv2
import numpy as np

from conventions.keypoints import COCO_KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

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
        """The body's shapes in groups, back to front: a list of [(shape, colour), ...].

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
        ears = ("right_ear", "left_ear")
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
        """Eyes and nose: details inside the head, not part of the silhouette."""
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


