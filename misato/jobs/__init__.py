"""Jobs: the multi-step work the commands start, above every other layer of the project.

`pipeline` (`misato run`: inpaint, score and tabulate several methods), `reproduce` (the paper's Tables 1 and 2),
`status` (what a run or output folder holds), `study` (the blind preference study), `weight_needs` (which weight
files each command needs). Only `misato.cli` imports these; the layers are declared in pyproject.toml
(`[tool.importlinter]`) and checked by `lint-imports` in the test suite.
"""
