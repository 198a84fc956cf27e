"""Co-Mod-GAN (Zhao et al., ICLR 2021): co-modulated StyleGAN2 inpainting, our PyTorch port."""
