"""Recording: per-stream files written by writer processes, and the mix of a recorded room.

See docs/recording.md for the design.
"""
