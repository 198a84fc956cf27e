"""MAT (Li et al., CVPR 2022): mask-aware transformer inpainting, our PyTorch port."""
