"""nnx-nets' suite: 8 fake CPU devices and cheap compiles (``nnx_nets.testing``)."""

from nnx_nets.testing import configure_cpu_tests

configure_cpu_tests()
