"""Building evaluation sets: MISATO from its four source datasets, Places2, and exports/loaders.

Modules: `sources` (adapters listing source images), `features` (CLIP / pixel features, shard cache),
`select` (BisectingKMeans representatives), `export` (layout, crops, manifest), `pipeline`
(`build_misato`), `places2`, `hf` (Hugging Face `datasets`), `released` (the published MISATO archive),
`verify` (check a folder against its manifest).
"""
