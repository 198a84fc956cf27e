"""Stable Diffusion 1.5 inpainters of the paper's Table 1: `sd`, `sd-text`, `sd-prompt` (`inpainters`) and
`sd-repaint` (`repaint`), with shared loading and tiny test configurations in `components`."""
