"""A blind preference study of inpainting results (the paper's Table 2 (c)): create, serve, tally.

    misato study create --runs RUNS --methods a,b,c --images 40 --seed 0 --out STUDY   (misato.study.create)
    misato study serve STUDY                                                            (misato.study.server)
    misato study tally STUDY --out RESULTS                                              (misato.study.tally)

A study folder holds `study.json` (the design: `misato.study.design`), `media/` (the web-size images, under random
names) and, once served, `answers.sqlite` (`misato.study.store`). The web server needs the `study` extra
(`pip install -e ".[study]"`); creating and tallying do not.
"""
