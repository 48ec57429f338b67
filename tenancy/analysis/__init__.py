"""From samples to numbers: windows and slowdowns, statistics, rooflines, predictions, advice."""
