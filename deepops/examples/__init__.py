"""Worked examples from the lecture, runnable offline: ``python -m deepops.examples.transfer`` and
``python -m deepops.examples.svm_features`` (results committed under benchmarks/results/classifier/)."""
