"""ROS-free core of the simulated DROID-like robot (mujoco + numpy only).

:class:`SimRobot` owns the physics: it loads the MJCF scene, steps it at the model's fixed
timestep, follows arm trajectories with joint_trajectory_controller semantics, handles the
normalised gripper command and resets to the home keyframe. :class:`CameraRenderer` renders the
scene's cameras offscreen from a snapshot of the joint positions, with its own ``MjData``, so it
can run on another thread than the physics.

Units: radians, rad/s and N·m for the arm; the ``gripper`` joint is normalised (0 = open,
1 = closed), its velocity in 1/s and its effort in N. Times are seconds on the sim clock
(``MjData.time``), which never goes backwards (reset keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamzero_sim.errors import CommandRejected, SceneError
from dreamzero_sim.gl_backend import GLBackend, select_gl_backend
from dreamzero_sim.trajectory_follower import JointTrajectoryFollower, TrajectoryPoint

# The GL backend must be exported before mujoco is imported (see gl_backend).
GL_BACKEND: GLBackend = select_gl_backend()

import mujoco  # noqa: E402

ARM_JOINT_NAMES: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
GRIPPER_JOINT_NAME = "gripper"
JOINT_NAMES: tuple[str, ...] = (*ARM_JOINT_NAMES, GRIPPER_JOINT_NAME)
CAMERA_NAMES: tuple[str, ...] = ("exterior_1", "exterior_2", "wrist")
FINGER_JOINT_NAMES = ("finger_joint1", "finger_joint2")
HOME_KEYFRAME = "home"
# Gripper commands a hair outside [0, 1] (float noise from a policy) are clipped, not rejected.
_GRIPPER_EPS = 1e-6


@dataclass(frozen=True)
class JointStateSample:
    """Joint state at ``time`` (s): names (8,) and position/velocity/effort arrays (8,)."""

    time: float
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class SimSnapshot:
    """What a renderer needs: sim ``time`` (s) and a copy of ``qpos`` (model.nq,)."""

    time: float
    qpos: np.ndarray


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics (pixels) of a rendered camera; square pixels, no distortion."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float


def default_scene_path() -> Path:
    """The packaged DROID-like scene: the source tree, else the colcon install's share folder."""
    candidates = [Path(__file__).resolve().parent.parent / "models" / "droid_scene.xml"]
    if candidates[0].is_file():
        return candidates[0]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("dreamzero_sim")) / "models" / "droid_scene.xml")
    except (ImportError, LookupError, OSError):  # plain-Python use, or no ament environment
        pass
    if candidates[-1].is_file():
        return candidates[-1]
    raise SceneError(f"droid_scene.xml not found; looked in {[str(p) for p in candidates]}")


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    idx = mujoco.mj_name2id(model, kind, name)
    if idx < 0:
        raise SceneError(f"the scene has no {kind.name.removeprefix('mjOBJ_').lower()} named {name!r}")
    return idx


class SimRobot:
    """The simulated arm + gripper; not thread-safe (the node serialises calls with a lock).

    Args:
        scene: MJCF path; None loads :func:`default_scene_path`.
        interpolate_from_desired_state / allow_nonzero_velocity_at_trajectory_end: passed to
            the :class:`JointTrajectoryFollower` (JTC parameters of the same names).
    """

    def __init__(
        self,
        scene: str | Path | None = None,
        *,
        interpolate_from_desired_state: bool = True,
        allow_nonzero_velocity_at_trajectory_end: bool = False,
    ) -> None:
        path = Path(scene) if scene else default_scene_path()
        try:
            self.model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as exc:  # mujoco reports parse/compile errors as ValueError
            raise SceneError(f"cannot load scene {path}: {exc}") from exc
        self.scene_path = path
        self.data = mujoco.MjData(self.model)
        m = self.model
        arm_joints = [_id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ARM_JOINT_NAMES]
        self._arm_qadr = np.array([m.jnt_qposadr[j] for j in arm_joints])
        self._arm_dadr = np.array([m.jnt_dofadr[j] for j in arm_joints])
        self._arm_act = np.array([_id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in ARM_JOINT_NAMES])
        fingers = [_id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in FINGER_JOINT_NAMES]
        self._finger_qadr = np.array([m.jnt_qposadr[j] for j in fingers])
        self._finger_dadr = np.array([m.jnt_dofadr[j] for j in fingers])
        self._gripper_act = _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, GRIPPER_JOINT_NAME)
        self._home = _id(m, mujoco.mjtObj.mjOBJ_KEY, HOME_KEYFRAME)
        for cam in CAMERA_NAMES:
            _id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam)
        self.max_finger_opening = float(m.numeric("gripper_max_opening").data[0])
        self.arm_velocity_limits = np.array(m.numeric("arm_velocity_limits").data, dtype=np.float64)
        # Velocity feed-forward: MuJoCo's servo is kp*(ctrl - q) - kv*qdot, which lags by kv*v/kp
        # while moving. Shifting ctrl by (kv/kp)*v_des gives kp*(q_des - q) + kv*(v_des - qdot),
        # the PD-with-feed-forward a real joint controller runs.
        self._arm_ff = -m.actuator_biasprm[self._arm_act, 2] / m.actuator_gainprm[self._arm_act, 0]
        lower = np.append(m.jnt_range[arm_joints, 0], 0.0)
        upper = np.append(m.jnt_range[arm_joints, 1], 1.0)
        self.position_limits = (lower, upper)
        home_qpos = m.key_qpos[self._home]
        self.home_positions = np.append(home_qpos[self._arm_qadr], 0.0)
        self.follower = JointTrajectoryFollower(
            ARM_JOINT_NAMES,
            self.home_positions[:7],
            interpolate_from_desired_state=interpolate_from_desired_state,
            allow_nonzero_velocity_at_trajectory_end=allow_nonzero_velocity_at_trajectory_end,
        )
        self._gripper_command = 0.0
        self.reset()

    # --- clock --------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        """Sim time (s)."""
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        """Physics step (s)."""
        return float(self.model.opt.timestep)

    # --- commands -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Home keyframe, gripper open, objects back in place, trajectory dropped; time kept."""
        t = self.data.time
        mujoco.mj_resetDataKeyframe(self.model, self.data, self._home)
        self.data.time = t
        self.follower.hold(self.home_positions[:7])
        self._gripper_command = 0.0
        self._apply_controls()
        mujoco.mj_forward(self.model, self.data)

    def submit_trajectory(
        self, joint_names: Sequence[str], points: Sequence[TrajectoryPoint], stamp: float = 0.0
    ) -> None:
        """Replace the arm trajectory; ``stamp`` on the sim clock (0 = start now).

        Raises:
            TrajectoryRejected: the trajectory is malformed (see the follower); nothing changes.
        """
        self.follower.set_trajectory(
            joint_names,
            points,
            stamp=stamp,
            now=self.time,
            measured_positions=self.data.qpos[self._arm_qadr],
        )

    def command_gripper(self, value: float) -> None:
        """Set the gripper target, normalised 0 = open .. 1 = closed.

        Raises:
            CommandRejected: ``value`` is not finite or outside [0, 1]; the old target stays.
        """
        v = float(value)
        if not np.isfinite(v) or v < -_GRIPPER_EPS or v > 1.0 + _GRIPPER_EPS:
            raise CommandRejected(f"gripper command must be a finite value in [0, 1], got {value}", "out_of_range")
        self._gripper_command = min(max(v, 0.0), 1.0)

    @property
    def gripper_command(self) -> float:
        """The current gripper target (0 = open .. 1 = closed)."""
        return self._gripper_command

    # --- physics ------------------------------------------------------------------------------

    def step(self, n_steps: int = 1) -> None:
        """Advance ``n_steps`` physics steps, updating the servo targets before each."""
        for _ in range(int(n_steps)):
            self._apply_controls()
            mujoco.mj_step(self.model, self.data)

    def advance_to(self, t: float, max_steps: int | None = None) -> int:
        """Step until the sim clock reaches ``t`` (s), at most ``max_steps``; returns steps taken."""
        n = int(np.floor((t - self.time) / self.timestep + 1e-9))
        if max_steps is not None:
            n = min(n, max_steps)
        if n > 0:
            self.step(n)
        return max(n, 0)

    def _apply_controls(self) -> None:
        q_des, v_des = self.follower.sample(self.time)
        self.data.ctrl[self._arm_act] = q_des + self._arm_ff * v_des
        self.data.ctrl[self._gripper_act] = (1.0 - self._gripper_command) * self.max_finger_opening

    # --- state --------------------------------------------------------------------------------

    def joint_state(self) -> JointStateSample:
        """Measured state of the 8 joints (:data:`JOINT_NAMES` order)."""
        d = self.data
        opening = float(np.mean(d.qpos[self._finger_qadr]))
        opening_rate = float(np.mean(d.qvel[self._finger_dadr]))
        position = np.append(d.qpos[self._arm_qadr], np.clip(1.0 - opening / self.max_finger_opening, 0.0, 1.0))
        velocity = np.append(d.qvel[self._arm_dadr], -opening_rate / self.max_finger_opening)
        effort = np.append(d.actuator_force[self._arm_act], d.actuator_force[self._gripper_act])
        return JointStateSample(self.time, JOINT_NAMES, position, velocity, effort)

    def desired_arm_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The follower's current (positions, velocities), each (7,)."""
        return self.follower.sample(self.time)

    def site_position(self, name: str) -> np.ndarray:
        """World position (3,) in metres of a site (e.g. ``tcp``, ``flange``)."""
        return self.data.site(name).xpos.copy()

    def snapshot(self) -> SimSnapshot:
        """A copy of the state a :class:`CameraRenderer` needs."""
        return SimSnapshot(self.time, self.data.qpos.copy())


class CameraRenderer:
    """Offscreen RGB rendering of named cameras; create and use it on one thread.

    Args:
        model: the sim's ``MjModel`` (read only; shared with the physics).
        width, height: image size in pixels.
        cameras: camera names in the scene.

    Raises:
        RenderingUnavailableError: no GL backend works (the message says how to fix it).
        SceneError / ValueError: unknown camera or a non-positive size.
    """

    def __init__(self, model: mujoco.MjModel, width: int, height: int, cameras: Sequence[str] = CAMERA_NAMES) -> None:
        from dreamzero_sim.errors import RenderingUnavailableError

        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.cameras = tuple(cameras)
        self._cam_ids = {c: _id(model, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in self.cameras}
        backend = GL_BACKEND.require()
        # The offscreen buffer bounds the image size; the size is configuration, so grow it.
        vis = model.vis.global_
        vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
        self.model = model
        self.width, self.height = int(width), int(height)
        self._data = mujoco.MjData(model)
        try:
            self._renderer = mujoco.Renderer(model, self.height, self.width)
        except Exception as exc:  # GL failures surface as various exception types
            raise RenderingUnavailableError(f"cannot create a {backend} rendering context: {exc}") from exc

    def render(self, snapshot: SimSnapshot) -> dict[str, np.ndarray]:
        """Images (height, width, 3) uint8 RGB, top row first, for each camera."""
        d = self._data
        d.qpos[:] = snapshot.qpos
        # Only poses are needed for drawing: skip collision and dynamics (cheaper than mj_forward).
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_comPos(self.model, d)
        mujoco.mj_camlight(self.model, d)
        images = {}
        for cam in self.cameras:
            self._renderer.update_scene(d, camera=self._cam_ids[cam])
            images[cam] = self._renderer.render()
        return images

    def intrinsics(self, camera: str) -> CameraIntrinsics:
        """Pinhole intrinsics from the camera's vertical field of view."""
        fovy = np.deg2rad(self.model.cam_fovy[self._cam_ids[camera]])
        f = 0.5 * self.height / np.tan(0.5 * fovy)
        return CameraIntrinsics(self.width, self.height, f, f, (self.width - 1) / 2.0, (self.height - 1) / 2.0)

    def close(self) -> None:
        """Free the GL context (call on the thread that rendered)."""
        self._renderer.close()
