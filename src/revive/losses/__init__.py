"""Loss functions: GAN (LSGAN, WGAN-GP), perceptual (VGG19), feature matching, segmentation, KL."""
