"""The ``delt`` pipeline: teacher, checkpointed recover of every launch, outputs (the method: methods/delt)."""
