"""Diagnostics over the learner and the sim: what a policy's memory holds (probe), which privileged
signal is worth its sensor (informativeness), and whether a recurrent core keeps information (warmup).
Each is a subcommand of `aps-diagnose` (diagnostics.cli) that writes a short report into a run folder."""
