"""DELT: BN-statistic matching recovery from real initialisations with EarlyLate rounds (arXiv 2411.19946).

One home for the method: selection of the initial images, the EarlyLate schedule, launch planning, the initial
images, the recover loop, and PDD's ``--base delt`` stages (:mod:`.stages`). The ``delt`` command runs it end to end
through :mod:`fastdistill.pipelines.delt` (teacher, checkpoints, outputs).
"""
