"""Inpainters behind one contract (`baselines.base.Inpainter`); ASUKA's parts live in `baselines.asuka`."""
