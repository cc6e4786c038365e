"""The chain of step notebooks: declared once, checked once, run in named phases.

- :mod:`~llmops_nb.chain.table`: the one :class:`Step` table (notebook, inputs, outputs with
  their types, timeout, retries, warm imports) every other reader derives from;
- :mod:`~llmops_nb.chain.inspect`: a notebook's parameters cell, read once (cached);
- :mod:`~llmops_nb.chain.check`: the one parameter check of the runner and the bundle validator;
- :mod:`~llmops_nb.chain.runner`: the runner (prepare -> check -> execute each step -> collect).
"""
