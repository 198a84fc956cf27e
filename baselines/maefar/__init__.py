"""MAE-FAR (Cao et al., ECCV 2022): MAE prior features and attention for inpainting, our PyTorch port."""
