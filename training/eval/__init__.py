"""Evaluation: held-out tasks of real repositories, and HumanEval infilling, per condition."""
