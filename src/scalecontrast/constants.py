"""Constants shared by the data, model and engine layers."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite (TF ports)
HALF_STD = (0.5, 0.5, 0.5)
