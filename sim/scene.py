"""The robot scene from primitives: a 5-DoF arm with a parallel gripper and a wrist camera on a table.

Joints: base yaw, shoulder pitch, elbow pitch, wrist pitch, wrist roll, then two coupled finger
slides. All pitch joints turn about the body's y axis and all links point up at zero, so the arm is
planar once the base yaw is fixed and the inverse kinematics is closed-form (`ik`). The table top is
at z = 0 and the robot base at the origin; +x points away from the robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHOULDER_HEIGHT = 0.16  # base (0.06) + turret (0.10)
UPPER_ARM = 0.30
FOREARM = 0.28
HAND = 0.142  # wrist pitch axis -> grasp point, 2 cm inside the fingertips
FINGER_OPEN = 0.045  # each finger's travel: the gap is twice this when fully open
ARM_JOINTS = ("base_yaw", "shoulder", "elbow", "wrist_pitch", "wrist_roll")
FINGER_JOINTS = ("finger_left", "finger_right")
TIMESTEP = 0.002


def lookat_xyaxes(pos: np.ndarray, target: np.ndarray) -> str:
    """MJCF `xyaxes` of a camera at `pos` looking at `target`, level (MuJoCo cameras look along -z)."""
    up = np.array([0.0, 0.0, 1.0])
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return " ".join(f"{v:.5f}" for v in (*right, *cam_up))


def fmt(values: np.ndarray | tuple | list) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


SIDE_CAMERA_POS = np.array([0.62, -0.56, 0.40])
SIDE_CAMERA_TARGET = np.array([0.36, 0.0, 0.12])


def scene_xml(objects: str, assets: str = "", cameras: str = "", side_fovy: float = 45.0) -> str:
    """The full MJCF: robot, table and lights, plus a task's `objects` (bodies in the worldbody)."""
    side = lookat_xyaxes(SIDE_CAMERA_POS, SIDE_CAMERA_TARGET)
    return f"""
<mujoco model="aps-arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <global offwidth="512" offheight="512"/>
  </visual>
  <default>
    <geom solref="0.004 1" solimp="0.95 0.99 0.001"/>
    <joint armature="0.05" damping="1.0"/>
    <position kp="400" dampratio="1"/>
    <!-- The robot's links collide with the world (table, objects) but not with each other:
         contype 2 & conaffinity 1 never match between two robot geoms, always with a world geom
         (contype 1). A real arm's controller keeps its own links apart; MuJoCo's parent-child
         exclusion alone let the hand rest on the forearm when the wrist folds (shelf-search). -->
    <default class="robot">
      <geom contype="2" conaffinity="1"/>
      <default class="finger">
        <geom friction="1.5 0.02 0.001" condim="4" rgba="0.15 0.15 0.17 1"/>
      </default>
    </default>
    <default class="visual">
      <geom contype="0" conaffinity="0" group="1"/>
    </default>
  </default>
  <asset>
    <texture name="wood" type="2d" builtin="flat" width="64" height="64" rgb1="0.62 0.52 0.40"
             rgb2="0.5 0.4 0.3" mark="random" random="0.08" markrgb="0.55 0.45 0.34"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.6 0.66" rgb2="0.2 0.22 0.25" width="32"
             height="32"/>
    <material name="table" texture="wood" texrepeat="6 6" rgba="1 1 1 1"/>
    <material name="floor" rgba="0.32 0.33 0.36 1"/>
    <material name="arm" rgba="0.85 0.86 0.88 1"/>
    <material name="joint" rgba="0.25 0.27 0.30 1"/>
    {assets}
  </asset>
  <worldbody>
    <light name="top" pos="0.3 0.0 1.5" dir="0 0 -1" directional="true" diffuse="0.6 0.6 0.6"
           castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="0"
          conaffinity="0"/>
    <geom name="table" type="box" size="0.55 0.6 0.02" pos="0.35 0 -0.02" material="table"/>
    <geom name="table_leg" type="box" size="0.5 0.55 0.36" pos="0.35 0 -0.4" rgba="0.3 0.25 0.2 1"
          class="visual"/>
    <camera name="side" pos="{fmt(SIDE_CAMERA_POS)}" xyaxes="{side}" fovy="{side_fovy}"/>
    {cameras}
    <body name="base" childclass="robot">
      <geom type="cylinder" size="0.08 0.03" pos="0 0 0.03" material="joint"/>
      <body name="turret" pos="0 0 0.06" gravcomp="1">
        <joint name="base_yaw" axis="0 0 1" range="-2.5 2.5"/>
        <geom type="cylinder" size="0.05 0.05" pos="0 0 0.05" material="arm"/>
        <body name="upper_arm" pos="0 0 0.10" gravcomp="1">
          <joint name="shoulder" axis="0 1 0" range="-1.2 2.0"/>
          <geom type="cylinder" size="0.04 0.035" euler="1.5708 0 0" material="joint"/>
          <geom type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.03" material="arm"/>
          <body name="forearm" pos="0 0 {UPPER_ARM}" gravcomp="1">
            <joint name="elbow" axis="0 1 0" range="-0.3 2.8"/>
            <geom type="cylinder" size="0.035 0.03" euler="1.5708 0 0" material="joint"/>
            <geom type="capsule" fromto="0 0 0 0 0 {FOREARM}" size="0.025" material="arm"/>
            <body name="wrist" pos="0 0 {FOREARM}" gravcomp="1">
              <joint name="wrist_pitch" axis="0 1 0" range="-2.6 2.6"/>
              <geom type="cylinder" size="0.03 0.025" euler="1.5708 0 0" material="joint"/>
              <body name="hand" pos="0 0 0.03" gravcomp="1">
                <joint name="wrist_roll" axis="0 0 1" range="-3.0 3.0"/>
                <geom type="cylinder" size="0.025 0.02" pos="0 0 0.02" material="arm"/>
                <geom name="palm" type="box" size="0.022 0.06 0.012" pos="0 0 0.05" material="joint"/>
                <camera name="wrist" pos="-0.05 0 0.055" xyaxes="0 -1 0 -0.966 0 0.259" fovy="50"/>
                <geom type="box" size="0.02 0.012 0.01" pos="-0.05 0 0.04" material="joint"/>
                <site name="grasp" pos="0 0 {HAND - 0.03}" size="0.005" rgba="1 0 0 0" group="3"/>
                <body name="finger_left" pos="0 0 0.062" gravcomp="1">
                  <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}"
                         damping="5"/>
                  <geom name="finger_left" type="box" size="0.012 0.007 0.035" pos="0 0.007 0.035"
                        class="finger"/>
                </body>
                <body name="finger_right" pos="0 0 0.062" gravcomp="1">
                  <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}"
                         damping="5"/>
                  <geom name="finger_right" type="box" size="0.012 0.007 0.035" pos="0 -0.007 0.035"
                        class="finger"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    {objects}
  </worldbody>
  <equality>
    <joint joint1="finger_left" joint2="finger_right" polycoef="0 1 0 0 0" solref="0.005 1"/>
  </equality>
  <actuator>
    <position name="base_yaw" joint="base_yaw" ctrlrange="-2.5 2.5"/>
    <position name="shoulder" joint="shoulder" ctrlrange="-1.2 2.0"/>
    <position name="elbow" joint="elbow" ctrlrange="-0.3 2.8"/>
    <position name="wrist_pitch" joint="wrist_pitch" ctrlrange="-2.6 2.6" kp="200"/>
    <position name="wrist_roll" joint="wrist_roll" ctrlrange="-3.0 3.0" kp="100"/>
    <position name="gripper" joint="finger_left" ctrlrange="0 {FINGER_OPEN}" kp="300"
              forcerange="-8 8"/>
  </actuator>
</mujoco>
"""


@dataclass
class IKResult:
    qpos: np.ndarray  # the five arm joints
    reachable: bool  # False when the target was pulled back into the workspace


def ik(pos: np.ndarray, pitch: float, yaw: float | None = None) -> IKResult:
    """Closed-form IK for the grasp point at `pos`, approach elevation `pitch` (-pi/2 = straight down,
    0 = horizontal, pointing away from the base) and, for a downward approach, the world yaw of the
    finger axis (None: no wrist roll)."""
    x, y, z = (float(v) for v in pos)
    base = float(np.arctan2(y, x))
    radial, height = float(np.hypot(x, y)), z - SHOULDER_HEIGHT
    # The wrist-pitch axis sits HAND back from the grasp point along the approach direction.
    wrist_r = radial - HAND * np.cos(pitch)
    wrist_z = height - HAND * np.sin(pitch)
    dist = float(np.hypot(wrist_r, wrist_z))
    lo, hi = abs(UPPER_ARM - FOREARM) + 1e-3, UPPER_ARM + FOREARM - 1e-3
    reachable = lo <= dist <= hi
    dist = float(np.clip(dist, lo, hi))
    cos_elbow = (dist**2 - UPPER_ARM**2 - FOREARM**2) / (2 * UPPER_ARM * FOREARM)
    elbow = float(np.arccos(np.clip(cos_elbow, -1.0, 1.0)))  # > 0: elbow up
    # Link angles are measured from vertical, positive toward the target (rotation about +y).
    toward_wrist = float(np.arctan2(wrist_r, wrist_z))
    shoulder = toward_wrist - float(np.arctan2(FOREARM * np.sin(elbow), UPPER_ARM + FOREARM * np.cos(elbow)))
    hand_angle = np.pi / 2 - pitch
    wrist_pitch = hand_angle - shoulder - elbow
    # Pointing down, turning the wrist by +q turns the finger axis by -q in the world.
    roll = 0.0 if yaw is None else wrap_angle(base - yaw)
    return IKResult(np.array([base, shoulder, elbow, wrist_pitch, roll]), reachable)


def wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)
