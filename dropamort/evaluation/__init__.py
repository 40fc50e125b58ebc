"""Evaluation: detection by radius and border, interval coverage, reliability of p, SBC."""
