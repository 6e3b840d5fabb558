"""Harnesses that drive poold from outside, kept out of the runtime package `poold`: the
seeded fault simulator (`faults`, `poold sim`), the several-daemons simulator (`daemons`,
`poold sim --nodes`), and a simulated ASIC fleet that mines over real Stratum sockets
(`fleet`, `poold simulate` and the demo's miners). The daemon never imports them; the CLI
imports them only inside the commands that run them.
"""
