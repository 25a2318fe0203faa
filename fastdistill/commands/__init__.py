"""CLI sub-commands, one module each (discovered by ``fastdistill.cli``)."""
