"""Network blocks shared by the encoder families (the same math in the original DepthSplat, MVSplat and
pixelSplat): UniMatch's CNN, window position code, multi-view transformer, plane-sweep cost volume,
cross-view U-Net, DINOv2 ViT, DPT refinement head."""
