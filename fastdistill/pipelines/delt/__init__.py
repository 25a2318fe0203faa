"""DELT: BN-statistic matching recovery from real initialisations with EarlyLate rounds (arXiv 2411.19946)."""
