"""HTTP inference server for compiled pointkd students (issue #5)."""
