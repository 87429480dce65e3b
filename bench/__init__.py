"""freshrag benchmarks: every figure measured side by side in one run, printed as ratios."""
