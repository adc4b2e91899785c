"""The `study` command: the one module that wires the core, runners, analysis and report."""
