"""Training: the jitted step, the loop, checkpoints and reports."""
