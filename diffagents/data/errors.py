"""The one exception type for bad offline data."""

from __future__ import annotations


class DataError(ValueError):
    """Raised for invalid offline data: NaN/Inf values, length mismatches, empty datasets, zero-step
    episodes, or spaces that do not match the environment an agent is built for.

    The message always names the episode (when there is one), the field, the expected and the actual value.
    """


def episode_error(episode: int | None, field: str, expected: str, actual: str) -> DataError:
    """Build a :class:`DataError` whose message names the episode, the field, and what was expected.

    Args:
        episode: Episode id (``None`` for dataset-level problems).
        field: Name of the offending field, e.g. ``"observations['observation']"``.
        expected: What a valid value looks like.
        actual: What was found.

    Returns:
        The error, ready to raise.
    """
    where = f"episode {episode}" if episode is not None else "dataset"
    return DataError(f"{where}, field {field!r}: expected {expected}, got {actual}")
