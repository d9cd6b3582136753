"""The serving layer: model lifecycle, weights, preprocessing, batching, inference."""
