"""Training for the Fashion-MNIST models and fine-tuning of the torchvision classifiers."""
