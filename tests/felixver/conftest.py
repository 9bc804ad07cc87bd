"""The kernel tests' lab and agent fixtures, for test_kernel_streams.py."""

from tests.kernel.conftest import agent, lab  # noqa: F401
