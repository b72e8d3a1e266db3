"""Offline evaluation of detectors against labelled benchmarks (NAB scoring in `evaluation.nab`)."""
