"""Policies (one file per paper; registered with the kernel)."""
