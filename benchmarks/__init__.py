"""The project's benchmarks. Run each from the repository root as a module, e.g.
`python -m benchmarks.quality --help`; `common` holds what they share (the tables, their
splits, the peers, printing) and `workspace` the repository copies and DVC commands that the
benchmarks and the test suite both use."""
