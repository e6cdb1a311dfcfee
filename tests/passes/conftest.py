import sys
from pathlib import Path

# lowering_helpers.py lives in tests/lowering (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).parents[1] / "lowering"))
