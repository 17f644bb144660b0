"""The ROS-free cores and files of the graph (tier a): robot interface safety, kinematics on the
shipped URDF, weights packets, episode events, graphs and their parameter YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

import sim
from apsconfig import load_config, parse_yaml
from policies.config import NetworkConfig
from policies.networks import Actor, ObsSpec
from policies.weights import WeightsError, pack_actor_weights, unpack_actor_weights
from robot_nodes.graphs import CONFIG, GRAPHS, GraphError, resolve
from robot_nodes.kinematics import SIM_ARM_URDF, ArmKinematics, ee_rotation, ee_target_from_pose
from robot_nodes.messages import EpisodeEvent
from robot_nodes.params import ROS_OWN_PARAMETERS
from robot_nodes.robot_interface_core import Refused, RobotInterfaceConfig, RobotInterfaceCore
from robot_nodes.sim_robot_core import SimRobotConfig
from sim.scene import ARM_JOINTS, ik
from sim.urdf import sim_arm_urdf

MS = 1_000_000
LATER = 10**15  # ns: a stamp after every other stamp of these tests


@pytest.mark.parametrize(
    "module",
    ["robot_nodes.policy_core", "robot_nodes.robot_interface_core", "robot_nodes.sim_robot_core",
     "robot_nodes.kinematics", "robot_nodes.graphs", "policies.weights"],
)  # fmt: skip
def test_cores_import_no_rclpy(module: str) -> None:
    code = f"import sys, {module}; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the sim arm's URDF and pinocchio ------------------------------------------------------------


def test_shipped_urdf_is_the_generated_one() -> None:
    assert SIM_ARM_URDF.read_text() == sim_arm_urdf(), "regenerate: python -m sim.urdf > " + str(SIM_ARM_URDF)


def test_pinocchio_fk_is_mujocos_grasp_site() -> None:
    kinematics = ArmKinematics(SIM_ARM_URDF, ARM_JOINTS, "grasp")
    env = sim.make("search-pick", sim.TaskConfig(image_size=16, randomize=False))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        joints = rng.uniform(kinematics.lower, kinematics.upper)
        env.data.qpos[env._arm_qpos] = joints
        mujoco.mj_kinematics(env.model, env.data)
        position, _ = kinematics.fk(joints)
        np.testing.assert_allclose(position, env.grasp_point(), atol=1e-9)
    env.close()


def test_pinocchio_ik_agrees_with_the_sims_ik_within_1mm() -> None:
    kinematics = ArmKinematics(SIM_ARM_URDF, ARM_JOINTS, "grasp")
    rng = np.random.default_rng(1)
    checked = 0
    while checked < 100:
        pos, yaw = rng.uniform([0.2, -0.35, 0.015], [0.5, 0.35, 0.35]), rng.uniform(-1.5, 1.5)
        reference = ik(pos, -np.pi / 2, yaw)
        if not reference.reachable or np.any(np.abs(reference.qpos) > kinematics.upper):
            continue
        start = reference.qpos + rng.normal(0.0, 0.1, 5)  # near, as the arm's current joints are
        solution = kinematics.ik(pos, ee_rotation(pos, -np.pi / 2, yaw), start)
        assert solution.converged
        ours, theirs = kinematics.fk(solution.joints)[0], kinematics.fk(reference.qpos)[0]
        assert np.linalg.norm(ours - theirs) < 1e-3
        target = ee_target_from_pose(*kinematics.fk(solution.joints))
        assert abs(target[1] - yaw) < 1e-6 and abs(target[2] + np.pi / 2) < 1e-6
        checked += 1


# --- the robot interface's safety ------------------------------------------------------------


def interface(**overrides) -> RobotInterfaceCore:
    core = RobotInterfaceCore(load_config(RobotInterfaceConfig, overrides))
    home = ik(np.array([0.36, 0.0, 0.28]), -np.pi / 2, 0.0).qpos  # the sim's
    core.on_joint_states(home, LATER, 0)  # measured after every action of these tests: none waits
    return core


def test_twist_is_the_action_times_step_and_rate() -> None:
    core = interface()
    command = core.on_action(np.array([0.5, -0.25, 0.0, 1.0, 1.0]), 1000 * MS, 1010 * MS)
    np.testing.assert_allclose(command.linear, [0.5 * 0.04 * 10, -0.25 * 0.04 * 10, 0.0])
    np.testing.assert_allclose(command.angular, [0.0, 0.0, 0.25 * 10])
    assert command.gripper == 0.0 and command.stamp_ns == 1000 * MS  # closed, the observation's stamp


@pytest.mark.parametrize(
    ("action", "stamp", "message"),
    [
        ([np.nan, 0, 0, 0, 0], 1000, "NaN or inf"),
        ([1.5, 0, 0, 0, 0], 1000, r"outside \[-1, 1\]"),
        ([0, 0, 0, 0], 1000, "4 values, expected 5"),
        ([0, 0, 0, 0, 0], 700, "stale action: 310 ms old"),
    ],
)
def test_bad_actions_are_refused_never_clipped(action, stamp: int, message: str) -> None:
    core = interface()
    with pytest.raises(Refused, match=message):
        core.on_action(np.array(action, dtype=float), stamp * MS, 1010 * MS)
    assert core.last_stamp is None and core.holding


def test_out_of_order_actions_and_the_estop() -> None:
    core = interface()
    core.on_action(np.zeros(5), 1000 * MS, 1001 * MS)
    with pytest.raises(Refused, match="out-of-order"):
        core.on_action(np.zeros(5), 990 * MS, 1002 * MS)
    hold = core.on_estop(True)
    assert hold.hold and np.all(hold.linear == 0) and np.all(hold.angular == 0)
    with pytest.raises(Refused, match="e-stop engaged"):
        core.on_action(np.zeros(5), 1004 * MS, 1005 * MS)
    assert core.on_estop(False) is None
    assert not core.on_action(np.zeros(5), 1007 * MS, 1008 * MS).hold


def test_watchdog_holds_once_when_actions_stop() -> None:
    core = interface()
    core.on_action(np.full(5, 0.5), 1000 * MS, 1001 * MS)
    assert core.check_watchdog(1150 * MS) is None
    hold = core.check_watchdog(1201 * MS)
    assert hold is not None and hold.hold and np.all(hold.linear == 0)
    assert hold.stamp_ns == 0  # no observation's stamp: a lockstep sim never steps on a hold
    assert core.check_watchdog(1300 * MS) is None  # already holding: the node repeats it at the rate


def test_workspace_box_and_speed_limits() -> None:
    core = interface(**{"workspace": {"low": [0.15, -0.4, -0.035], "high": [0.37, 0.4, 0.4]}})
    command = core.on_action(np.array([1.0, 0.0, 0.0, 0.0, 0.0]), 1000 * MS, 1001 * MS)
    position = core.kinematics.fk(core.measured)[0]
    assert np.isclose(position[0] + command.linear[0] * 0.1, 0.37)  # stops at the wall, not 4 cm past it
    fast = interface(max_linear_speed=0.2)
    command = fast.on_action(np.array([1.0, 1.0, 0.0, 0.0, 0.0]), 1000 * MS, 1001 * MS)
    assert np.isclose(np.linalg.norm(command.linear), 0.2)


def test_joint_targets_follow_the_sims_integration_and_limits() -> None:
    core = interface(output="joint_trajectory", max_joint_speed=0.5)
    env = sim.make("search-pick", sim.TaskConfig(image_size=16, randomize=False))
    env.reset(seed=0)
    action = np.array([0.5, 0.5, -0.5, 0.4, 0.0])
    command = core.on_action(action, 1000 * MS, 1001 * MS)
    env.step(action.astype(np.float32))
    step = 0.5 * 0.1  # rad per control step at 0.5 rad/s
    assert np.all(np.abs(command.joints - core.measured) <= step + 1e-12)
    free = interface(output="joint_positions")
    command = free.on_action(action, 1000 * MS, 1001 * MS)
    np.testing.assert_allclose(command.joints, env._joint_target, atol=2e-3)  # same target, other IK
    env.close()


# --- weights packets ----------------------------------------------------------------------------


def small_actor(seed: int = 0, hidden: int = 16) -> tuple[Actor, ObsSpec]:
    torch.manual_seed(seed)
    spec = ObsSpec.from_arrays({"joints": np.zeros(6, np.float32)}, {"pos": np.zeros(3, np.float32)}, 5)
    return Actor(spec, NetworkConfig(core_hidden=hidden, head_hidden=hidden, vector_hidden=8)), spec


def test_weights_packets_are_checked() -> None:
    actor, spec = small_actor()
    newer, _ = small_actor(seed=1)
    packet = pack_actor_weights(newer, 3, "search-pick", spec)
    weights = unpack_actor_weights(packet, actor, "search-pick", current_version=2)
    assert weights.version == 3 and weights.spec == spec
    for name, tensor in newer.state_dict().items():
        assert torch.equal(weights.tensors[name], tensor)
    with pytest.raises(WeightsError, match="not newer than the running version 3"):
        unpack_actor_weights(packet, actor, "search-pick", current_version=3)
    with pytest.raises(WeightsError, match="for task 'search-pick', the policy runs 'tmaze'"):
        unpack_actor_weights(packet, actor, "tmaze", current_version=0)
    wide, _ = small_actor(hidden=32)
    with pytest.raises(WeightsError, match="do not fit the running actor"):
        unpack_actor_weights(pack_actor_weights(wide, 4, "search-pick", spec), actor, "search-pick", 0)
    with torch.no_grad():
        next(newer.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(WeightsError, match="non-finite values"):
        unpack_actor_weights(pack_actor_weights(newer, 4, "search-pick", spec), actor, "search-pick", 0)
    tampered = bytearray(packet)
    tampered[-1] ^= 0xFF  # a flipped bit in the last tensor's bytes
    with pytest.raises(WeightsError, match="checksum mismatch"):
        unpack_actor_weights(bytes(tampered), actor, "search-pick", 0)
    with pytest.raises(WeightsError, match="not a weights packet"):
        unpack_actor_weights(b"garbage", actor, "search-pick", 0)


def test_episode_events_round_trip() -> None:
    event = EpisodeEvent("end", 3, 1_000_003, 123, "search-pick", 17, True, False)
    assert EpisodeEvent.from_msg(event.to_msg()) == event


# --- graphs and their YAML ----------------------------------------------------------------------


def test_every_graph_resolves_and_its_yaml_loads_into_the_node_configs(tmp_path) -> None:
    from robot_nodes.action_mux_core import ActionMuxConfig
    from robot_nodes.camera_core import CameraNodeConfig
    from robot_nodes.policy_core import PolicyNodeConfig
    from robot_nodes.tracker_core import TrackerNodeConfig

    configs = {
        "sim_robot": SimRobotConfig,
        "robot_interface": RobotInterfaceConfig,
        "policy": PolicyNodeConfig,
        "action_mux": ActionMuxConfig,
        "wrist_camera": CameraNodeConfig,
        "side_camera": CameraNodeConfig,
        "privileged_tracker": TrackerNodeConfig,
    }
    for graph in GRAPHS.values():
        for robot in ("sim", "real"):
            if not (graph.sim_nodes if robot == "sim" else graph.real_nodes):
                continue
            values = {"robot": robot} if any(a.name == "robot" for a in graph.arguments) else {}
            values |= {"checkpoints": f"{tmp_path},{tmp_path}"} if graph.name == "eval" else {}
            for launch in resolve(graph, values):
                document = parse_yaml(Path(launch.params_file).read_text())
                section = document.get(launch.name, {}).get("ros__parameters", {})
                overrides = {
                    k: parse_yaml(v) for k, v in launch.overrides.items() if k not in ROS_OWN_PARAMETERS
                }
                if launch.name.startswith("policy_"):  # the eval graph's: the `policy` section, as overrides
                    assert not section and "checkpoint" in overrides
                    load_config(PolicyNodeConfig, overrides)
                elif launch.name in configs:
                    extra = {"checkpoint": str(tmp_path)} if launch.name == "policy" else {}
                    load_config(configs[launch.name], {**section, **overrides, **extra})
    evaluation = resolve(GRAPHS["eval"], {"checkpoints": "/a,/b", "task": "shelf-search"})
    assert [(n.name, n.executable) for n in evaluation] == [
        ("sim_robot", "aps-sim-robot"), ("policy_0", "aps-policy"), ("policy_1", "aps-policy"),
        ("action_mux", "aps-action-mux"), ("robot_interface", "aps-robot-interface"),
    ]  # fmt: skip
    first, second = evaluation[1], evaluation[2]
    assert first.overrides["checkpoint"] == "/a" and second.overrides["checkpoint"] == "/b"
    assert (
        first.overrides["task"]
        == second.overrides["task"]
        == evaluation[0].overrides["task"]
        == "shelf-search"
    )
    assert first.overrides["max_frame_age"] == "0.5"  # the YAML's `policy` section
    assert second.remaps == {"action": "policy_1/action", "policy_weights": "policy_1/policy_weights"}
    assert evaluation[3].overrides["sources"] == "[policy_0/action, policy_1/action]"
    with pytest.raises(GraphError, match="checkpoints:="):
        resolve(GRAPHS["eval"], {})
    sim_graph = resolve(GRAPHS["sim"], {"checkpoint": "/ck", "task": "blind-pick"})
    assert [n.executable for n in sim_graph] == ["aps-sim-robot", "aps-policy", "aps-robot-interface"]
    # sim.yaml's sim robot steps in lockstep: every node of the graph runs on its /clock
    assert sim_graph[0].overrides == {
        "use_sim_time": "true",
        "wait_for_readers": "[policy]",
        "task": "blind-pick",
    }
    assert sim_graph[1].overrides == {"use_sim_time": "true", "checkpoint": "/ck", "task": "blind-pick"}
    assert sim_graph[2].overrides == {"use_sim_time": "true"}
    # the lockstep sim waits until its policies and recorder read (a lost first observation stalls the loop)
    online = {n.name: n for n in resolve(GRAPHS["train_online"], {"demos": "/d"})}
    assert online["sim_robot"].overrides["wait_for_readers"] == "[policy, recorder]"
    assert evaluation[0].overrides["wait_for_readers"] == "[policy_0, policy_1]"
    assert "wait_for_readers" not in resolve(GRAPHS["record"], {})[0].overrides  # aps-record reads itself
    wall = tmp_path / "wall.yaml"
    wall.write_text((CONFIG / "sim.yaml").read_text().replace("lockstep: true", "lockstep: false"))
    assert all(n.overrides == {} for n in resolve(GRAPHS["sim"], {"params_file": str(wall)}))
    assert [(n.name, n.executable) for n in resolve(GRAPHS["robot"], {})] == [
        ("wrist_camera", "aps-camera"), ("side_camera", "aps-camera"),
        ("privileged_tracker", "aps-privileged-tracker"), ("robot_interface", "aps-robot-interface"),
    ]  # fmt: skip
    with pytest.raises(GraphError, match=r"no argument\(s\) \['checkpoint'\]"):
        resolve(GRAPHS["robot"], {"checkpoint": "x"})
    assert (CONFIG / "sim.yaml").is_file()


def test_the_real_graphs_topics_join_up() -> None:
    """On hardware, what each node reads is what another publishes: the policy's wrist camera, the
    tracker's side camera, the recorder's streams (the package's YAML as a user starts from it)."""
    from robot_nodes.camera_core import CameraNodeConfig
    from robot_nodes.recorder_streams import RecorderNodeConfig
    from robot_nodes.tracker_core import TrackerNodeConfig

    for graph in GRAPHS.values():
        if not graph.real_nodes:
            continue
        values = {"robot": "real"} if any(a.name == "robot" for a in graph.arguments) else {}
        values |= {"checkpoints": "/a"} if graph.name == "eval" else {}
        launches = resolve(graph, values)
        document = parse_yaml(Path(launches[0].params_file).read_text())

        def section(name: str, document: dict = document) -> dict:
            return document.get(name, {}).get("ros__parameters") or {}

        images = {
            f"{load_config(CameraNodeConfig, section(n.name)).camera_name}/color/image_raw"
            for n in launches
            if n.executable == "aps-camera"
        }
        names = {n.name for n in launches}
        if names & {"policy", "policy_0"}:
            assert "wrist/color/image_raw" in images, (graph.name, images)  # search-pick's onboard camera
        published = images | {"joint_states"}
        if "privileged_tracker" in names:
            tracker = load_config(TrackerNodeConfig, section("privileged_tracker"))
            assert tracker.image_topic in images, (graph.name, tracker.image_topic)
            published |= {tracker.vector_topic, tracker.pose_topic}
        if "recorder" in names:
            recorder = load_config(RecorderNodeConfig, section("recorder"))
            assert set(recorder.onboard_streams + recorder.privileged_streams) <= published, graph.name


def test_aps_launch_refuses_unknown_arguments() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "robot_nodes.launch_cli", "sim", "chekpoint:=x"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no argument(s) ['chekpoint']" in out.stderr


# --- episode boundaries: frames, actions and events on different topics ---------------------------


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """An untrained search-pick policy at 16x16 (which episode acts does not depend on the weights)."""
    from policies.checkpoint import save_checkpoint
    from policies.config import LearnerConfig
    from policies.learner import Learner

    env = sim.make("search-pick", sim.TaskConfig(image_size=16))
    obs, _ = env.reset(seed=0)
    spec = ObsSpec.from_arrays(obs["onboard"], obs["privileged"], env.action_space.shape[0])
    env.close()
    torch.manual_seed(0)  # the Learner no longer seeds torch (main): the test does, as entry points do
    learner = Learner(spec, LearnerConfig(algorithm="bc"))
    return save_checkpoint(learner, tmp_path_factory.mktemp("checkpoint"), "search-pick", 1)


def test_a_new_episodes_frames_wait_for_its_start_event(small_checkpoint: Path) -> None:
    """Episode 1's first frames come before episode 0's end event and episode 1's start event (they
    travel on other topics): the policy must not act on them with episode 0's recurrent state and
    draws, and must act on them as episode 1's first frames once its start event comes."""
    from policies.checkpoint import load_policy
    from robot_nodes.policy_core import PolicyCore, PolicyNodeConfig, draw_seed

    core = PolicyCore(load_config(PolicyNodeConfig, {"checkpoint": str(small_checkpoint)}))
    rng = np.random.default_rng(0)
    frames = [
        {"wrist": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "joints": rng.standard_normal(6, "f4")}
        for _ in range(2)
    ]  # fmt: skip
    step = 100 * MS
    core.on_episode_start(0, 7, step, until_ns=3 * step)  # episode 0 owns stamps 100..300 ms
    for k in (1, 2):
        assert core.ready(k * step, k * step) is None
        core.act(k * step, frames[k - 1])
    assert core.ready(4 * step, 4 * step) == ""  # after episode 0's horizon: another episode's frames
    core.on_episode_end(0, 3 * step)
    assert core.ready(4 * step, 4 * step) == ""  # episode 0 is over, episode 1 not yet started
    core.on_episode_start(1, 8, 4 * step, until_ns=6 * step)
    acted = []
    for k in (4, 5):
        assert core.ready(k * step, k * step) is None
        acted.append(core.act(k * step, frames[k - 4]))
        core.on_episode_start(1, 8, 4 * step, until_ns=6 * step)  # a repeated event restarts nothing
    reference = load_policy(small_checkpoint)
    reference.reset()
    reference.generator.manual_seed(draw_seed(0, 8))
    np.testing.assert_array_equal(acted, [reference.act(frames[0]), reference.act(frames[1])])
    assert core.ready(int(2.5 * step), 6 * step) == ""  # a late frame of episode 0 is not acted on


def test_open_ended_episodes_follow_the_events() -> None:
    from robot_nodes.policy_core import Episode

    episode = Episode(0, 0, start_ns=100)
    assert episode.acts_on(100) and episode.acts_on(10**12) and not episode.acts_on(99)
    episode.end_ns = 500
    assert episode.acts_on(499) and not episode.acts_on(500)  # its last observation needs no action


def test_lockstep_episodes_own_disjoint_stamp_ranges() -> None:
    from robot_nodes.sim_robot_core import SimRobotCore

    core = SimRobotCore(load_config(SimRobotConfig, {"env": {"image_size": 16, "max_episode_steps": 5}}))
    first = core.reset(0, core.sim_stamp(new_episode=True)).stamp_ns
    assert core.until_ns == first + 5 * core.dt_ns
    core.on_arm_command(first, np.zeros(6))
    stamps = [core.step(core.sim_stamp()).observation.stamp_ns for _ in range(2)]  # ends early (reset)
    assert stamps == [first + core.dt_ns, first + 2 * core.dt_ns]
    until = core.until_ns
    second = core.reset(1, core.sim_stamp(new_episode=True)).stamp_ns
    assert second == until + core.dt_ns  # after every stamp episode 0 could have reached
    core.close()


def test_an_action_waits_for_the_pose_of_its_observation_and_a_new_episode_rereads_the_target() -> None:
    """Joint-target path. Episode 0 moves the arm; episode 1 starts at another pose. Its first action
    comes before its joint state and before its start event (other topics): the command must wait
    for the joint state and then integrate from episode 1's pose, not from episode 0's target."""
    ms = MS
    core = interface(output="joint_positions")
    home = core.measured.copy()
    core.on_episode_start(100 * ms, until_ns=300 * ms)
    core.on_joint_states(home, 100 * ms, 100 * ms)
    for stamp in (100 * ms, 200 * ms):
        assert core.on_action(np.array([1.0, 0.0, 0.0, 0.0, -1.0]), stamp, stamp).joints is not None
        core.on_joint_states(core.commanded, stamp + 100 * ms, stamp + 100 * ms)
    other = ik(np.array([0.3, 0.15, 0.2]), -np.pi / 2, 0.3).qpos  # episode 1's reset pose
    action = np.array([0.0, 0.5, 0.0, 0.0, -1.0])
    assert core.on_action(action, 400 * ms, 400 * ms) is None  # no joint state that new yet
    command = core.on_joint_states(other, 400 * ms, 401 * ms)
    fresh = interface(output="joint_positions")
    fresh.on_joint_states(other, 400 * ms, 400 * ms)
    np.testing.assert_allclose(command.joints, fresh.on_action(action, 400 * ms, 401 * ms).joints)
    # the start event coming late changes nothing: the target is already episode 1's
    core.on_episode_start(400 * ms, until_ns=600 * ms)
    core.on_joint_states(command.joints, 500 * ms, 500 * ms)
    fresh.on_joint_states(command.joints, 500 * ms, 500 * ms)
    np.testing.assert_allclose(
        core.on_action(action, 500 * ms, 501 * ms).joints, fresh.on_action(action, 500 * ms, 501 * ms).joints
    )


def test_the_policy_acts_on_640x480_camera_frames(small_checkpoint: Path) -> None:
    from policies.checkpoint import load_policy
    from policies.images import fit_image
    from robot_nodes.messages import MessageError
    from robot_nodes.policy_core import PolicyCore, PolicyNodeConfig, draw_seed

    settings = {"checkpoint": str(small_checkpoint)}
    core = PolicyCore(load_config(PolicyNodeConfig, settings))
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)  # a RealSense colour frame
    joints = rng.standard_normal(6, "f4")
    core.on_episode_start(0, 1, 100 * MS)
    assert core.ready(100 * MS, 100 * MS) is None
    action = core.act(100 * MS, {"wrist": core.fit("wrist", frame), "joints": core.fit("joints", joints)})
    reference = load_policy(small_checkpoint)
    reference.reset()
    reference.generator.manual_seed(draw_seed(0, 1))
    expected = reference.act({"wrist": fit_image(frame, (16, 16)), "joints": joints})
    np.testing.assert_array_equal(action, expected)
    exact = PolicyCore(load_config(PolicyNodeConfig, {**settings, "image_fit": "exact"}))
    with pytest.raises(MessageError, match=r"wrist has shape \(480, 640, 3\), the policy needs \(16, 16"):
        exact.fit("wrist", frame)
    with pytest.raises(MessageError, match="joints has shape"):
        core.fit("joints", np.zeros(7, np.float32))


def test_policy_settings_changed_at_run_time_reach_the_core(small_checkpoint: Path) -> None:
    from robot_nodes.policy_core import PolicyCore, PolicyNodeConfig

    settings = {"checkpoint": str(small_checkpoint)}
    core = PolicyCore(load_config(PolicyNodeConfig, settings))
    core.on_episode_start(0, 1, 100 * MS)
    assert "stale frames" in core.ready(100 * MS, 400 * MS)  # 300 ms old, limit 200 ms
    core.on_config(load_config(PolicyNodeConfig, {**settings, "max_frame_age": 0.5, "sampling": "mode"}))
    assert core.ready(100 * MS, 400 * MS) is None and core.runner.sampling == "mode"
    assert {"control_hz", "startup_timeout"} <= set(PolicyNodeConfig.READ_ONLY)  # used at start only
