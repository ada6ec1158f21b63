"""The study runner: objectives x data variants, trained, probed, tabulated.

`runner.run_study(config, workdir)` is what `python -m audiopt.main` runs for
a config with `job = "study"`; `spec` parses its runs, `variants` derives
the pre-training data variants, `results` writes results.csv, the Markdown
tables and the plots.
"""
