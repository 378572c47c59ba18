"""Image quality metrics: PSNR / SSIM (BasicSR convention) and LPIPS."""
