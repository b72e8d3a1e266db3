"""Offline evaluation: the prequential harness (`protocol`), neurogate behind it
(`engine_adapter`), the baselines (`baselines`, `registry`), the benchmarks (`nab` scorer and
`nab_eval` runs, `multivariate`, `creditcard`), metrics and report figures (`metrics`, `plots`).
See docs/evaluation.md."""
