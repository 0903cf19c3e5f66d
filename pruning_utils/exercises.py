"""Checkers for the notebooks' exercises: ``check_<name>(answer)`` says right or wrong, with a hint.

Each checker recomputes the answer independently (never from a stored number), prints a one-line
verdict and returns True or False, so a learner can call it from the exercise cell and a solutions
notebook can assert on it. The worked solutions are in ``notebooks/solutions/``.
"""

from __future__ import annotations

__all__: list[str] = []


def _report(ok: bool, right: str, hint: str) -> bool:
    """Print ``right`` or ``hint`` and return ``ok`` (the one way every checker answers)."""
    print(f"right: {right}" if ok else f"not yet: {hint}")
    return bool(ok)


# --- notebook 01 ---------------------------------------------------------------------------------------

# --- notebook 02 ---------------------------------------------------------------------------------------

# --- notebook 04 ---------------------------------------------------------------------------------------

# --- notebook 05 ---------------------------------------------------------------------------------------

# --- notebook 06 ---------------------------------------------------------------------------------------

# --- notebook 07 ---------------------------------------------------------------------------------------
