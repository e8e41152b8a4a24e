"""The Fashion-MNIST zoo pipeline: train, evaluate, summarise and publish the bundled weights."""
