"""A blind preference study of inpainting results (the paper's Table 2 (c)): create, serve, tally.

    misato study create --runs RUNS --methods a,b,c --images 40 --seed 0 --out STUDY   (misato.jobs.study.create)
    misato study serve STUDY                                                            (misato.jobs.study.server)
    misato study tally STUDY --out RESULTS                                              (misato.jobs.study.tally)
    misato study agreement STUDY RESULTS... --out REPORT                                (misato.jobs.study.agreement)

A study folder holds `study.json` (the design and its secret: `misato.jobs.study.design`; never served), `media/` (the
web-size images, under random names, one size and one mtime: `misato.jobs.study.media`) and, once served,
`answers.sqlite` (`misato.jobs.study.store`). The web server needs the `study` extra
(`pip install -e ".[study]"`); creating and tallying do not.
"""
