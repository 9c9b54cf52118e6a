"""Training: state, pure steps, optimizers, the training loops."""
