"""Tools on top of everything else: benchmarks, model summaries, the demo and prediction pictures."""
