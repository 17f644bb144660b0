"""ROS 2 nodes of the stack: thin adapters over pure-Python cores.

A node file is wiring (parameters -> config -> core -> QoS, publishers, subscriptions, timers); its
logic lives in a `*_core.py` module that imports no rclpy and is tested in-process. Shared pieces:
`params` (one ROS parameter per config leaf, loaded through apsconfig), `qos` (profiles by role),
`messages` (messages <-> numpy, no rclpy) and `entry` (the `main()` every node uses).
"""
