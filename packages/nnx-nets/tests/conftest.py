"""Puts this folder on sys.path so that tests import ``nets_testlib`` by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
