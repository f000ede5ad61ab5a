"""Fine-tuning a (pretrained) ViT for segmentation, depth or classification with LoRA, full or frozen."""
