"""Evaluation: image and video metrics (PSNR, SSIM, colorfulness, warp error, LPIPS, FID)."""
