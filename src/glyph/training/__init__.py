"""The training layer: ``config`` (TrainConfig) → ``data`` (examples, schedule, batches) →
``loss`` (the forward pass) → ``recipe`` (setup, step, loop, save) with ``checkpoint``s.
torch and peft are imported by ``loss`` and inside functions; ``config`` and ``data`` are light.
"""
